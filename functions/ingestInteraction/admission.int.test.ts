import type { Request } from '@google-cloud/functions-framework';
import type { Redis } from '@upstash/redis';
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalUpstash } from '../../emulators/redis/local.ts';
import type { UpstashRest } from '../../emulators/redis/upstash-rest.ts';
import { createVerifier } from '../../shared/auth.ts';
import { type Bus, PipelinedRedis } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import { HttpError } from '../../shared/errors.ts';
import { clientEventId } from '../../shared/events.ts';
import type { Reply, RouteContext } from '../../shared/http.ts';
import { createLogger } from '../../shared/log.ts';
import { redisAdmission, redisDedupWindow, tickPipeline } from '../../shared/redis-ports.ts';
import { upstashRequester } from '../../shared/upstash-http.ts';
import { createIngest } from './handler.ts';

/**
 * The ingest hot path against the real Redis commands (redis-server behind the local Upstash REST endpoint,
 * whose counters say how many round trips and commands each request cost).
 */

const TOKEN = 'admission-test-token';
const INSTANCE = 'inst-a';
const ISSUER = 'https://identity.test';
const AUDIENCE = 'ldr-test';

let local: Awaited<ReturnType<typeof startLocalUpstash>>;
let rest: UpstashRest;
let redis: Redis;
let sign: (claims: Record<string, unknown>) => Promise<string>;
let jwks: ReturnType<typeof createLocalJWKSet>;

beforeAll(async () => {
  local = await startLocalUpstash(TOKEN);
  ({ rest, redis } = local);
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  jwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] });
  sign = (claims) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey);
});

afterAll(() => local?.stop());

class CountingBus implements Bus {
  published: LdrEvent[] = [];
  async publish(_topic: string, event: LdrEvent) {
    this.published.push(event);
    return String(this.published.length);
  }
  async publishRaw(): Promise<string> {
    throw new Error('not used');
  }
}

function setup(
  limits = { studentRequestsPerMin: 1000, studentEventsPerMin: 1000, instanceEventsPerMin: 1000 },
) {
  let jwksCalls = 0;
  const verifier = createVerifier({
    jwks: (...a: Parameters<typeof jwks>) => {
      jwksCalls++;
      return jwks(...a);
    },
    issuer: ISSUER,
    audience: AUDIENCE,
    revocations: { isRevoked: async (jti) => (await redis.exists(`revoked:jti:${jti}`)) === 1 },
  });
  const bus = new CountingBus();
  const dedup = redisDedupWindow(redis, 3600);
  const ingest = createIngest({
    verifier,
    bus,
    admission: redisAdmission(redis),
    dedup,
    artifacts: { get: async () => undefined },
    sponsors: { at: async () => new Set<string>() },
    log: createLogger('admission-test', 'silent'),
    limits,
    newId: () => crypto.randomUUID(),
    concurrentWait: { timeoutMs: 2000, pollMs: 5 },
  });
  return { ingest, bus, jwksCalls: () => jwksCalls };
}

const uid = () => Math.random().toString(36).slice(2);

function ctx(body: unknown, token: string): RouteContext {
  const raw = Buffer.from(JSON.stringify(body));
  const headers = {
    'content-type': 'application/json',
    'content-length': String(raw.length),
    authorization: `Bearer ${token}`,
  };
  const req = { method: 'POST', url: '/', headers, body, rawBody: raw } as unknown as Request;
  return { req, params: {}, query: new URLSearchParams() };
}

async function call(ingest: ReturnType<typeof setup>['ingest'], c: RouteContext): Promise<Reply> {
  try {
    return await ingest(c);
  } catch (err) {
    if (err instanceof HttpError)
      return { status: err.status, body: err.toProblem(), headers: err.extra.headers };
    throw err;
  }
}

const event = (studentId: string, id = uid()) => ({
  id,
  studentId,
  instanceId: INSTANCE,
  kind: 'exercise_attempt',
  occurredAt: new Date(Date.now() - 1000).toISOString(),
  payload: { exerciseId: 'ex-1', passed: true, score: 0.5 },
});

const snapshot = () => ({ ...rest.stats, byCommand: { ...rest.stats.byCommand } });
/** Waits (with a deadline) until the endpoint has seen `n` SET commands (claims and confirmations): the confirmations are not awaited. */
async function confirmed(n: number) {
  const deadline = Date.now() + 5000;
  while ((rest.stats.byCommand.set ?? 0) < n && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 5));
  expect(rest.stats.byCommand.set ?? 0).toBe(n);
}

describe('ingest admission: one Redis round trip per request', () => {
  it('a student post costs one round trip (one pipeline, no script) before its answer; confirmations are batched', async () => {
    const { ingest, bus, jwksCalls } = setup();
    const student = `stu-${uid()}`;
    const token = await sign({
      sub: student,
      role: 'student',
      instance: INSTANCE,
      jti: `j-${uid()}`,
      permissions: ['interaction:write'],
    });
    // warm-up: the first post of a minute creates its windows (their TTL is set behind the answer)
    const sets = rest.stats.byCommand.set ?? 0;
    expect((await call(ingest, ctx(event(student), token))).status).toBe(202);
    await confirmed(sets + 2); // the claim's SET NX and the confirmation's SET

    const billedBefore = await rest.billed();
    const before = snapshot();
    const r = await call(ingest, ctx(event(student), token));
    const answeredAt = snapshot();
    expect(r.status).toBe(202);
    expect(r.headers?.['RateLimit-Limit']).toBeDefined();
    await confirmed(sets + 4);
    const after = snapshot();
    // a new minute's windows get their TTL in a round trip of their own (at most once a minute per key)
    const ttlTrips = after.byCommand.pexpire! > (before.byCommand.pexpire ?? 0) ? 1 : 0;
    expect(answeredAt.requests - before.requests - ttlTrips).toBe(1);
    expect(answeredAt.byCommand.mget! - (before.byCommand.mget ?? 0)).toBe(1);
    // the confirmation (SET done) follows, off the answer's path
    expect(after.requests - before.requests - ttlTrips).toBe(2);
    // as Upstash bills it: MGET (deny-list, both quotas' previous windows), INCRBY of both current windows,
    // SET NX of the claim, then the confirmation's SET; no script, so no EVALSHA on top
    const billed = await rest.billed();
    const d = (c: string) => (billed.byCommand[c] ?? 0) - (billedBefore.byCommand[c] ?? 0);
    expect(after.commands - before.commands - d('pexpire')).toBe(5);
    expect(billed.total - billedBefore.total - d('pexpire')).toBe(5);
    expect([d('evalsha') + d('eval'), d('mget'), d('incrby'), d('set'), d('get'), d('exists')]).toEqual([
      0, 1, 2, 2, 0, 0,
    ]);

    // 20 concurrent posts: 20 admissions; their 20 confirmations and the TTLs of their 40 new windows go
    // in shared pipelines (one request each would be 40 more)
    const before20 = snapshot();
    const sets20 = before20.byCommand.set ?? 0;
    const students = Array.from({ length: 20 }, () => `stu-${uid()}`);
    const tokens = await Promise.all(
      students.map((s) =>
        sign({
          sub: s,
          role: 'student',
          instance: INSTANCE,
          jti: `j-${uid()}`,
          permissions: ['interaction:write'],
        }),
      ),
    );
    const replies = await Promise.all(students.map((s, i) => call(ingest, ctx(event(s), tokens[i]!))));
    expect(replies.every((x) => x.status === 202)).toBe(true);
    await confirmed(sets20 + 40);
    const after20 = snapshot();
    expect(after20.byCommand.mget! - before20.byCommand.mget!).toBe(20);
    expect(after20.byCommand.pexpire! - before20.byCommand.pexpire!).toBe(40);
    expect(after20.requests - before20.requests - 20).toBeLessThan(40);
    expect(bus.published.length).toBe(22);

    // the verified token is cached: the signature key was looked up once for the first token
    const keyLookups = jwksCalls();
    await call(ingest, ctx(event(student), token));
    expect(jwksCalls()).toBe(keyLookups);
  });

  it('a revoked token is refused by the same round trip; what it counted and claimed is given back before the answer', async () => {
    const { ingest, bus } = setup();
    const student = `stu-${uid()}`;
    const jti = `j-${uid()}`;
    const token = await sign({
      sub: student,
      role: 'student',
      instance: INSTANCE,
      jti,
      permissions: ['interaction:write'],
    });
    expect((await call(ingest, ctx(event(student), token))).status).toBe(202);
    await redis.set(`revoked:jti:${jti}`, '1', { ex: 3600 });
    const windows = async () => {
      const keys = (await redis.keys(`rl:*:student*:${student}:*`)).sort();
      const values = keys.length ? await redis.mget<Array<string | number | null>>(...keys) : [];
      // a window this request opened and gave back holds 0
      return Object.fromEntries(keys.map((k, i) => [k, Number(values[i])]).filter(([, v]) => v !== 0));
    };
    const countedBefore = await windows();
    expect(Object.values(countedBefore)).toEqual([1, 1]);
    const before = snapshot();
    const e = event(student);
    const r = await call(ingest, ctx(e, token));
    expect(r.status).toBe(401);
    // the admission pipeline, then the DECRBYs and the DEL of the claim, both before the answer
    expect(snapshot().requests - before.requests).toBe(2);
    expect(snapshot().byCommand.decrby! - (before.byCommand.decrby ?? 0)).toBe(2);
    expect(bus.published).toHaveLength(1);
    expect(await redis.exists(`dedup:${clientEventId(student, e.id)}`)).toBe(0);
    expect(await windows()).toEqual(countedBefore);
  });

  it('quotas: the request over the limit is 429 with RateLimit-* headers, and nothing of it is claimed', async () => {
    const { ingest, bus } = setup({
      studentRequestsPerMin: 3,
      studentEventsPerMin: 1000,
      instanceEventsPerMin: 1000,
    });
    const student = `stu-${uid()}`;
    const token = await sign({
      sub: student,
      role: 'student',
      instance: INSTANCE,
      jti: `j-${uid()}`,
      permissions: ['interaction:write'],
    });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await call(ingest, ctx(event(student), token))).status);
    expect(statuses).toEqual([202, 202, 202, 429]);
    const refusedEvent = event(student);
    const r = await call(ingest, ctx(refusedEvent, token));
    expect(r.status).toBe(429);
    expect(r.headers?.['RateLimit-Limit']).toBe('3');
    expect(r.headers?.['RateLimit-Remaining']).toBe('0');
    expect(Number(r.headers?.['Retry-After'])).toBeGreaterThanOrEqual(1);
    expect(bus.published).toHaveLength(3);
    // the refused requests were counted and taken back: the requests quota's windows hold the 3 admitted
    const keys = await redis.keys(`rl:3:student:${student}:*`);
    const counted = keys.length ? await redis.mget<Array<number | string | null>>(...keys) : [];
    expect(counted.reduce<number>((a, v) => a + Number(v), 0)).toBe(3);
    expect(await redis.exists(`dedup:${clientEventId(student, refusedEvent.id)}`)).toBe(0);
  });

  it('app quota counts events: a batch over what is left is refused whole', async () => {
    const { ingest, bus } = setup({
      studentRequestsPerMin: 1000,
      studentEventsPerMin: 1000,
      instanceEventsPerMin: 15,
    });
    const app = await sign({
      sub: `app-${uid()}`,
      role: 'app',
      instance: `${INSTANCE}-${uid()}`,
      permissions: ['interaction:write'],
    });
    const claims = JSON.parse(Buffer.from(app.split('.')[1]!, 'base64url').toString()) as {
      instance: string;
    };
    const batch = (n: number) => ({
      events: Array.from({ length: n }, () => ({ ...event(`stu-${uid()}`), instanceId: claims.instance })),
    });
    expect((await call(ingest, ctx(batch(10), app))).status).toBe(202);
    expect((await call(ingest, ctx(batch(10), app))).status).toBe(429);
    expect((await call(ingest, ctx(batch(5), app))).status).toBe(202);
    expect(bus.published).toHaveLength(15);
  });

  it('concurrent duplicates: exactly one accepted, the others duplicate', async () => {
    const { ingest, bus } = setup();
    const student = `stu-${uid()}`;
    const token = await sign({
      sub: student,
      role: 'student',
      instance: INSTANCE,
      jti: `j-${uid()}`,
      permissions: ['interaction:write'],
    });
    const e = event(student);
    const replies = await Promise.all(Array.from({ length: 5 }, () => call(ingest, ctx(e, token))));
    const statuses = replies.map(
      (r) => (r.body as { results: Array<{ status: string }> }).results[0]!.status,
    );
    expect(statuses.filter((s) => s === 'accepted')).toHaveLength(1);
    expect(statuses.filter((s) => s === 'duplicate')).toHaveLength(4);
    expect(bus.published).toHaveLength(1);
  });
});

describe('tickPipeline', () => {
  it('calls made in one turn share one /pipeline request; each gets its own results, and its own error', async () => {
    const send = tickPipeline(redis);
    const k = `tick-${uid()}`;
    await redis.set(`${k}:text`, 'not a number');
    const before = snapshot();
    const [a, b, c] = await Promise.allSettled([
      send((p) => {
        p.incrby(`${k}:a`, 2);
        p.get(`${k}:a`);
      }),
      send((p) => {
        p.incrby(`${k}:text`, 1);
      }),
      send((p) => {
        p.set(`${k}:c`, 'x', { nx: true });
        p.set(`${k}:c`, 'y', { nx: true });
      }),
    ]);
    expect(snapshot().requests - before.requests).toBe(1);
    // replies as Redis gives them (createRedis turns the library's JSON parsing off): INCRBY an integer,
    // GET a string
    expect(a).toEqual({ status: 'fulfilled', value: [2, '2'] });
    expect(b.status).toBe('rejected');
    expect(String((b as PromiseRejectedResult).reason)).toMatch(/not an integer/);
    expect(c).toEqual({ status: 'fulfilled', value: ['OK', null] });
    // the next turn opens a new request
    expect(await send((p) => p.get(`${k}:c`))).toEqual(['x']);
    expect(snapshot().requests - before.requests).toBe(2);
  });
});

describe('redisAdmission: the duplicate path', () => {
  it('an id another request holds is resolved in a second round trip; if that fails, the claims are unavailable', async () => {
    const admission = redisAdmission(redis);
    const quotas = [{ key: `student:${uid()}`, cost: 1, perMinute: 1000 }];
    const held = `held-${uid()}`;
    const first = await admission.admit({ quotas, claim: [held] });
    expect(first.claims).toEqual(new Map([[held, 'new']]));
    const before = snapshot();
    const again = await admission.admit({ quotas, claim: [held] });
    expect(again.claims).toEqual(new Map([[held, 'pending']]));
    // the admission pipeline, then the CLAIM script for the id it found taken
    const after = snapshot();
    expect((after.byCommand.mget ?? 0) - (before.byCommand.mget ?? 0)).toBe(1);
    expect((after.byCommand.eval ?? 0) - (before.byCommand.eval ?? 0)).toBe(1);

    // the claim script fails on this key (not a string): the admission says it cannot tell, it does not guess
    const broken = `broken-${uid()}`;
    await redis.hset(`dedup:${broken}`, { x: 1 });
    const r = await admission.admit({ quotas, claim: [broken] });
    expect(r.revocation).toBe('ok');
    expect(r.limits[0]).toMatchObject({ success: true });
    expect(r.claims).toBe('unavailable');
  });
});

describe('redisAdmission: the give-back of a refused request', () => {
  it('if it fails, the request is still refused, the failure is reported with what stays, and what stays expires', async () => {
    // the room's Redis client (as createRedis builds it) on the real endpoint, with the give-back's request
    // (the one carrying DECRBY) lost on the way
    const inner = upstashRequester({ url: rest.url, token: TOKEN });
    let lost = 0;
    const lossy = new PipelinedRedis({
      request: (req) => {
        if (JSON.stringify(req.body).toLowerCase().includes('"decrby"')) {
          lost++;
          return Promise.reject(new Error('connection reset'));
        }
        return inner.request(req);
      },
    });
    const reports: Array<{ err: unknown; kept: { windows: string[]; claims: string[] } }> = [];
    const admission = redisAdmission(lossy, {
      pendingSeconds: 120,
      onGiveBackFailed: (err, kept) => reports.push({ err, kept }),
    });
    const quotas = [{ key: `student:${uid()}`, cost: 1, perMinute: 1 }];
    expect((await admission.admit({ quotas, claim: [] })).limits[0]).toMatchObject({ success: true });
    const id = `refused-${uid()}`;
    const r = await admission.admit({ quotas, claim: [id] });
    expect(r.limits[0]).toMatchObject({ success: false });
    expect(r.claims).toEqual(new Map());
    expect(lost).toBe(1);
    expect(reports).toHaveLength(1);
    expect(String(reports[0]!.err)).toMatch(/connection reset/);
    const window = reports[0]!.kept.windows[0]!;
    expect(reports[0]!.kept).toEqual({ windows: [window], claims: [`dedup:${id}`] });
    expect(window).toMatch(new RegExp(`^rl:1:${quotas[0]!.key}:\\d+$`));
    // what stays: the refused request's count and its claim, each with a TTL (nothing is kept for ever)
    expect(Number(await redis.get(window))).toBe(2);
    expect(await redis.get(`dedup:${id}`)).toBe('pending');
    const claimTtl = await redis.ttl(`dedup:${id}`);
    expect(claimTtl).toBeGreaterThan(0);
    expect(claimTtl).toBeLessThanOrEqual(120);
    const deadline = Date.now() + 5000;
    while ((await redis.pttl(window)) < 0 && Date.now() < deadline)
      await new Promise((s) => setTimeout(s, 10));
    expect(await redis.pttl(window)).toBeGreaterThan(0);
  });
});
