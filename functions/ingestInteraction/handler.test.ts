import type { Request } from '@google-cloud/functions-framework';
import { describe, expect, it } from 'vitest';
import type { Principal, Verifier } from '../../shared/auth.ts';
import type { Bus } from '../../shared/clients.ts';
import { BusUnavailable } from '../../shared/clients.ts';
import { type LdrEvent, type PubsubMessage, toMessage } from '../../shared/cloudevents.ts';
import { HttpError, unauthorized } from '../../shared/errors.ts';
import { clientEventId, TOPICS } from '../../shared/events.ts';
import type { Reply, RouteContext } from '../../shared/http.ts';
import { createLogger } from '../../shared/log.ts';
import { portsAdmission } from '../../shared/ports.ts';
import type { InstanceSponsors } from '../../shared/registry.ts';
import {
  type ArtifactRecord,
  type Artifacts,
  createIngest,
  type DedupWindow,
  MAX_BODY_BYTES,
  type RateDecision,
  type RateLimiter,
} from './handler.ts';

// ---------------------------------------------------------------------------------------------
// In-memory fakes of the handler's ports
// ---------------------------------------------------------------------------------------------

const NOW = new Date('2025-03-10T12:00:00Z');
const EXP = Math.floor(NOW.getTime() / 1000) + 3600;

/** Tokens are opaque strings mapped to principals; anything else is a 401 as the real verifier says. */
function fakeVerifier(principals: Record<string, Omit<Principal, 'exp'>>): Verifier {
  return {
    async verify(authorization) {
      const m = /^Bearer (.+)$/.exec(authorization ?? '');
      if (!m) throw unauthorized('missing bearer token');
      const p = principals[m[1]!];
      if (!p) throw unauthorized('invalid token');
      return { ...p, exp: EXP };
    },
  };
}

interface Published {
  topic: string;
  event: LdrEvent;
  orderingKey?: string;
}

class FakeBus implements Bus {
  published: Published[] = [];
  down = false;
  /** the next n publishes fail as unavailable */
  failNext = 0;
  /** when set, publishes wait for it (a publish in flight) */
  gate: Promise<void> | undefined;
  /** publishes fail with this ce-id */
  failIds = new Set<string>();
  async publish(topic: string, event: LdrEvent, orderingKey?: string) {
    if (this.gate) await this.gate;
    if (this.down || this.failIds.has(event.id))
      throw new BusUnavailable(`publish to ${topic} failed: UNAVAILABLE`);
    if (this.failNext > 0) {
      this.failNext--;
      throw new BusUnavailable(`publish to ${topic} failed: UNAVAILABLE`);
    }
    this.published.push({ topic, event, orderingKey });
    return String(this.published.length);
  }
  async publishRaw(_topic: string, _message: PubsubMessage): Promise<string> {
    throw new Error('ingest publishes CloudEvents, not raw messages');
  }
}

/** Same semantics as the Redis window: SET NX 'pending' on claim, 'done' on confirm, DEL on release. */
class FakeDedup implements DedupWindow {
  state = new Map<string, 'pending' | 'done'>();
  broken = false;
  released: string[] = [];
  async claim(ids: string[]) {
    if (this.broken) throw new Error('ECONNREFUSED');
    const out = new Map<string, 'new' | 'pending' | 'done'>();
    for (const id of ids) {
      const s = this.state.get(id);
      if (s) out.set(id, s);
      else {
        this.state.set(id, 'pending');
        out.set(id, 'new');
      }
    }
    return out;
  }
  async confirm(ids: string[]) {
    if (this.broken) throw new Error('ECONNREFUSED');
    for (const id of ids) this.state.set(id, 'done');
  }
  async release(ids: string[]) {
    if (this.broken) throw new Error('ECONNREFUSED');
    this.released.push(...ids);
    for (const id of ids) this.state.delete(id);
  }
}

class FakeLimiter implements RateLimiter {
  calls: Array<{ key: string; cost: number; perMinute: number }> = [];
  decide: (key: string, cost: number, perMinute: number) => RateDecision | 'unavailable' = (
    _k,
    cost,
    perMinute,
  ) => ({
    success: true,
    limit: perMinute,
    remaining: perMinute - cost,
    reset: NOW.getTime() + 60_000,
  });
  async limit(key: string, cost: number, perMinute: number) {
    this.calls.push({ key, cost, perMinute });
    return this.decide(key, cost, perMinute);
  }
}

/** Sponsors present at each instance (owned by a partner that runs it). */
class FakeSponsors implements InstanceSponsors {
  byInstance: Record<string, string[]> = { [INSTANCE]: ['acme-edu'] };
  down = false;
  async at(instance: string) {
    if (this.down) throw new Error('firestore unavailable');
    return new Set(this.byInstance[instance] ?? []);
  }
}

class FakeArtifacts implements Artifacts {
  records = new Map<string, ArtifactRecord>();
  async get(id: string) {
    return this.records.get(id);
  }
}

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

const STUDENT = 'stu-1';
const INSTANCE = 'inst-berlin';

/** The ce-id published for a client id (scoped to the learner). */
const ce = (id: string, studentId = STUDENT) => clientEventId(studentId, id);

const principals: Record<string, Omit<Principal, 'exp'>> = {
  student: { sub: STUDENT, role: 'student', permissions: ['interaction:write'], instance: INSTANCE },
  'student-no-instance': { sub: STUDENT, role: 'student', permissions: ['interaction:write'] },
  'student-b': { sub: 'stu-b', role: 'student', permissions: ['interaction:write'], instance: INSTANCE },
  'student-of-instance': {
    sub: STUDENT,
    role: 'student',
    permissions: ['interaction:write'],
    instance: INSTANCE,
  },
  app: { sub: 'app-berlin', role: 'app', permissions: ['interaction:write'], instance: INSTANCE },
  'app-other': {
    sub: 'app-hamburg',
    role: 'app',
    permissions: ['interaction:write'],
    instance: 'inst-hamburg',
  },
  'app-no-instance': { sub: 'app-x', role: 'app', permissions: ['interaction:write'] },
  'student-no-perm': { sub: STUDENT, role: 'student', permissions: ['progress:read'] },
  teacher: { sub: 'teach-1', role: 'teacher', permissions: ['interaction:write'], instance: INSTANCE },
  partner: { sub: 'partner-1', role: 'partner', permissions: ['interaction:write'], partner: 'acme' },
  platform: { sub: 'svc', role: 'platform', permissions: ['interaction:write'] },
};

function setup(opts: { concurrentWaitMs?: number } = {}) {
  const bus = new FakeBus();
  const dedup = new FakeDedup();
  const limiter = new FakeLimiter();
  const artifacts = new FakeArtifacts();
  const sponsors = new FakeSponsors();
  let seq = 0;
  const ingest = createIngest({
    verifier: fakeVerifier(principals),
    bus,
    admission: portsAdmission(limiter, dedup),
    dedup,
    artifacts,
    sponsors,
    log: createLogger('ingest-test', 'silent'),
    limits: { studentRequestsPerMin: 100, studentEventsPerMin: 1000, instanceEventsPerMin: 6000 },
    now: () => NOW,
    newId: () => `0195-gen-${++seq}`,
    concurrentWait: { timeoutMs: opts.concurrentWaitMs ?? 50, pollMs: 1 },
  });
  return { ingest, bus, dedup, limiter, artifacts, sponsors };
}

/** A request shaped like what the functions framework and the router hand to a route handler. */
function ctx(
  body: unknown,
  opts: { token?: string; contentType?: string; rawBody?: Buffer } = {},
): RouteContext {
  const raw = opts.rawBody ?? Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const headers: Record<string, string> = {
    'content-type': opts.contentType ?? 'application/json',
    'content-length': String(raw.length),
  };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  const req = { method: 'POST', url: '/', headers, body, rawBody: raw } as unknown as Request;
  return { req, params: {}, query: new URLSearchParams() };
}

const interaction = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  studentId: STUDENT,
  instanceId: INSTANCE,
  kind: 'exercise_attempt',
  occurredAt: '2025-03-10T11:59:00Z',
  payload: { exerciseId: 'ex-1', passed: true, score: 0.8 },
  ...over,
});

/** Runs the handler and returns its reply, or the HttpError it threw as the router would see it. */
async function call(ingest: ReturnType<typeof setup>['ingest'], c: RouteContext): Promise<Reply> {
  try {
    return await ingest(c);
  } catch (err) {
    if (err instanceof HttpError) {
      return { status: err.status, body: err.toProblem(), headers: err.extra.headers };
    }
    throw err;
  }
}

type Body = { accepted: number; duplicates: number; results: Array<{ id: string; status: string }> };
type Problem = {
  status: number;
  title: string;
  detail?: string;
  errors?: Array<{ path: string; message: string }>;
};
const body = (r: Reply) => r.body as Body;
const problem = (r: Reply) => r.body as Problem;

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe('createIngest: accepted', () => {
  it('accepts one interaction from the student, publishes it once with ordering key and ce-* attributes', async () => {
    const { ingest, bus, dedup } = setup();
    const r = await call(
      ingest,
      ctx(interaction({ id: 'evt-1', topic: 'python.loops' }), { token: 'student' }),
    );
    expect(r.status).toBe(202);
    expect(r.body).toEqual({ accepted: 1, duplicates: 0, results: [{ id: 'evt-1', status: 'accepted' }] });
    expect(bus.published).toHaveLength(1);
    const [p] = bus.published;
    expect(p!.topic).toBe(TOPICS.interaction);
    expect(p!.orderingKey).toBe(STUDENT);
    const msg = toMessage(p!.event, p!.orderingKey);
    expect(msg.orderingKey).toBe(STUDENT);
    expect(msg.attributes).toEqual({
      'ce-specversion': '1.0',
      'ce-id': ce('evt-1'),
      'ce-source': `/ldr/instances/${INSTANCE}`,
      'ce-type': 'learnflow.interaction.v1',
      'ce-time': NOW.toISOString(),
      'ce-subject': `students/${STUDENT}`,
      'content-type': 'application/json',
      'ldr-instance': INSTANCE,
      'ldr-kind': 'exercise_attempt',
    });
    expect(JSON.parse(msg.data.toString())).toEqual(interaction({ id: 'evt-1', topic: 'python.loops' }));
    expect(dedup.state.get(ce('evt-1'))).toBe('done');
  });

  it('adds ldr-sponsor when the app-instance attributes a sponsor and defaults the topic', async () => {
    const { ingest, bus } = setup();
    const r = await call(ingest, ctx(interaction({ id: 'evt-sp', sponsor: 'acme-edu' }), { token: 'app' }));
    expect(r.status).toBe(202);
    const msg = toMessage(bus.published[0]!.event);
    expect(msg.attributes['ldr-sponsor']).toBe('acme-edu');
    expect(JSON.parse(msg.data.toString()).topic).toBe('general');
  });

  it('assigns a server id when the client sends none', async () => {
    const { ingest, bus } = setup();
    const r = await call(ingest, ctx(interaction(), { token: 'student' }));
    expect(r.status).toBe(202);
    expect(body(r).results).toEqual([{ id: '0195-gen-1', status: 'accepted' }]);
    expect(bus.published[0]!.event.id).toBe('0195-gen-1');
    expect((bus.published[0]!.event.data as { id: string }).id).toBe('0195-gen-1');
  });

  it('accepts a batch from an app token, one message per event, each keyed by its student', async () => {
    const { ingest, bus, limiter } = setup();
    const events = Array.from({ length: 5 }, (_, i) =>
      interaction({ id: `b-${i}`, studentId: `stu-${i % 2}`, kind: 'session', payload: { action: 'start' } }),
    );
    const r = await call(ingest, ctx({ events }, { token: 'app' }));
    expect(r.status).toBe(202);
    expect(body(r)).toEqual({
      accepted: 5,
      duplicates: 0,
      results: events.map((e) => ({ id: e.id, status: 'accepted' })),
    });
    expect(bus.published.map((p) => [p.event.id, p.orderingKey])).toEqual(
      events.map((e) => [ce(e.id as string, e.studentId as string), e.studentId]),
    );
    expect(bus.published.every((p) => p.event.subject === `students/${p.orderingKey}`)).toBe(true);
    // an app-instance is limited per event, on its instance
    expect(limiter.calls).toEqual([{ key: `instance:${INSTANCE}`, cost: 5, perMinute: 6000 }]);
  });

  it('limits a student per request and per event and returns the RateLimit headers on success', async () => {
    const { ingest, limiter } = setup();
    const r = await call(ingest, ctx(interaction(), { token: 'student' }));
    expect(limiter.calls).toEqual([
      { key: `student:${STUDENT}`, cost: 1, perMinute: 100 },
      { key: `student-events:${STUDENT}`, cost: 1, perMinute: 1000 },
    ]);
    expect(r.headers).toEqual({
      'RateLimit-Limit': '100',
      'RateLimit-Remaining': '99',
      'RateLimit-Reset': '60',
      'RateLimit-Policy': '100;w=60, 1000;w=60',
    });
  });

  it('accepts a student token bound to an instance for that instance', async () => {
    const { ingest } = setup();
    const r = await call(ingest, ctx(interaction(), { token: 'student-of-instance' }));
    expect(r.status).toBe(202);
  });
});

describe('createIngest: de-duplication', () => {
  it('answers duplicate for an id already published and does not publish it again', async () => {
    const { ingest, bus } = setup();
    const first = await call(ingest, ctx(interaction({ id: 'dup-1' }), { token: 'student' }));
    const second = await call(ingest, ctx(interaction({ id: 'dup-1' }), { token: 'student' }));
    expect(body(first).results).toEqual([{ id: 'dup-1', status: 'accepted' }]);
    expect(second.status).toBe(202);
    expect(body(second)).toEqual({
      accepted: 0,
      duplicates: 1,
      results: [{ id: 'dup-1', status: 'duplicate' }],
    });
    expect(bus.published.map((p) => p.event.id)).toEqual([ce('dup-1')]);
  });

  it('scopes ids to the learner: students A and B posting the same id are both accepted and published', async () => {
    const { ingest, bus } = setup();
    const a = await call(ingest, ctx(interaction({ id: 'shared-X' }), { token: 'student' }));
    const b = await call(
      ingest,
      ctx(
        interaction({ id: 'shared-X', studentId: 'stu-b', kind: 'help_request', payload: { text: 'help' } }),
        {
          token: 'student-b',
        },
      ),
    );
    expect(body(a).results).toEqual([{ id: 'shared-X', status: 'accepted' }]);
    expect(body(b).results).toEqual([{ id: 'shared-X', status: 'accepted' }]);
    const ids = bus.published.map((p) => p.event.id);
    expect(ids).toEqual([ce('shared-X'), ce('shared-X', 'stu-b')]);
    expect(new Set(ids).size).toBe(2);
    // the data keeps the client's id; the ce-id is a UUID that is the same on every retry
    expect(bus.published.map((p) => (p.event.data as { id: string }).id)).toEqual(['shared-X', 'shared-X']);
    expect(ids[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('accepts one app batch naming the same id for two learners', async () => {
    const { ingest, bus } = setup();
    const events = [interaction({ id: 'same' }), interaction({ id: 'same', studentId: 'stu-b' })];
    const r = await call(ingest, ctx({ events }, { token: 'app' }));
    expect(body(r).accepted).toBe(2);
    expect(bus.published.map((p) => p.event.id)).toEqual([ce('same'), ce('same', 'stu-b')]);
  });

  it('publishes only the new ids of a batch that repeats some', async () => {
    const { ingest, bus } = setup();
    await call(ingest, ctx(interaction({ id: 'a' }), { token: 'app' }));
    const r = await call(
      ingest,
      ctx({ events: [interaction({ id: 'a' }), interaction({ id: 'b' })] }, { token: 'app' }),
    );
    expect(body(r)).toEqual({
      accepted: 1,
      duplicates: 1,
      results: [
        { id: 'a', status: 'duplicate' },
        { id: 'b', status: 'accepted' },
      ],
    });
    expect(bus.published.map((p) => p.event.id)).toEqual([ce('a'), ce('b')]);
  });

  it('of three identical posts at once exactly one is accepted, the others wait for it and are duplicates', async () => {
    const { ingest, bus } = setup({ concurrentWaitMs: 5_000 });
    let open!: () => void;
    bus.gate = new Promise((r) => {
      open = r;
    });
    const posts = Array.from({ length: 3 }, () =>
      call(ingest, ctx(interaction({ id: 'same-time' }), { token: 'student' })),
    );
    setTimeout(open, 20);
    const replies = await Promise.all(posts);
    expect(replies.map((r) => r.status)).toEqual([202, 202, 202]);
    expect(replies.map((r) => body(r).results[0]!.status).sort()).toEqual([
      'accepted',
      'duplicate',
      'duplicate',
    ]);
    expect(bus.published).toHaveLength(1);
  });

  it('when the first of concurrent posts fails to publish, a waiting one publishes: the event is not lost', async () => {
    const { ingest, bus, dedup } = setup({ concurrentWaitMs: 5_000 });
    let open!: () => void;
    bus.gate = new Promise((r) => {
      open = r;
    });
    bus.failNext = 1;
    const posts = Array.from({ length: 3 }, () =>
      call(ingest, ctx(interaction({ id: 'first-fails' }), { token: 'student' })),
    );
    setTimeout(open, 20);
    const replies = await Promise.all(posts);
    const outcome = replies.map((r) => (r.status === 202 ? body(r).results[0]!.status : r.status));
    expect(outcome.sort()).toEqual([503, 'accepted', 'duplicate'].sort());
    expect(bus.published.map((p) => p.event.id)).toEqual([ce('first-fails')]);
    expect(dedup.state.get(ce('first-fails'))).toBe('done');
  });

  it('publishes after the wait when a claim stays pending (its holder crashed), at least once', async () => {
    const { ingest, bus, dedup } = setup({ concurrentWaitMs: 30 });
    dedup.state.set(ce('inflight'), 'pending');
    const r = await call(ingest, ctx(interaction({ id: 'inflight' }), { token: 'student' }));
    expect(body(r).results).toEqual([{ id: 'inflight', status: 'accepted' }]);
    expect(bus.published.map((p) => p.event.id)).toEqual([ce('inflight')]);
    expect(dedup.state.get(ce('inflight'))).toBe('done');
  });

  it('publishes anyway when the de-duplication store is down', async () => {
    const { ingest, bus, dedup } = setup();
    dedup.broken = true;
    const r = await call(ingest, ctx(interaction({ id: 'no-redis' }), { token: 'student' }));
    expect(r.status).toBe(202);
    expect(body(r).results).toEqual([{ id: 'no-redis', status: 'accepted' }]);
    expect(bus.published.map((p) => p.event.id)).toEqual([ce('no-redis')]);
  });
});

describe('createIngest: bus unavailable', () => {
  it('answers 503 with Retry-After, releases its claims, and a retry with the same ids publishes', async () => {
    const { ingest, bus, dedup } = setup();
    dedup.state.set(ce('other-pending'), 'pending');
    bus.down = true;
    const events = [
      interaction({ id: 'r-1' }),
      interaction({ id: 'r-2' }),
      interaction({ id: 'other-pending' }),
    ];
    const r = await call(ingest, ctx({ events }, { token: 'student' }));
    expect(r.status).toBe(503);
    expect(r.headers?.['Retry-After']).toMatch(/^\d+$/);
    expect(r.headers?.['RateLimit-Limit']).toBe('100');
    expect(problem(r).detail).toMatch(/retry/i);
    expect(bus.published).toEqual([]);
    // only this request's own claims are released; a claim held by someone else stays
    expect(dedup.released.sort()).toEqual([ce('r-1'), ce('r-2')].sort());
    expect(dedup.state.has(ce('r-1'))).toBe(false);
    expect(dedup.state.get(ce('other-pending'))).toBe('pending');

    bus.down = false;
    const retry = await call(ingest, ctx({ events }, { token: 'student' }));
    expect(retry.status).toBe(202);
    expect(body(retry).results.map((x) => x.status)).toEqual(['accepted', 'accepted', 'accepted']);
    expect(bus.published.map((p) => p.event.id).sort()).toEqual(
      [ce('other-pending'), ce('r-1'), ce('r-2')].sort(),
    );
  });

  it('on a partial failure confirms what went out, releases the rest, and a retry publishes only the rest', async () => {
    const { ingest, bus, dedup } = setup();
    bus.failIds.add(ce('p-2'));
    const events = [interaction({ id: 'p-1' }), interaction({ id: 'p-2' })];
    expect((await call(ingest, ctx({ events }, { token: 'student' }))).status).toBe(503);
    expect(dedup.state.get(ce('p-1'))).toBe('done');
    expect(dedup.state.has(ce('p-2'))).toBe(false);
    bus.failIds.clear();
    const retry = await call(ingest, ctx({ events }, { token: 'student' }));
    expect(body(retry).results).toEqual([
      { id: 'p-1', status: 'duplicate' },
      { id: 'p-2', status: 'accepted' },
    ]);
    expect(bus.published.map((p) => p.event.id)).toEqual([ce('p-1'), ce('p-2')]);
  });

  it('still answers 503 (not 500) when the dedup store is down as well', async () => {
    const { ingest, bus, dedup } = setup();
    bus.down = true;
    dedup.broken = true;
    const r = await call(ingest, ctx(interaction({ id: 'both-down' }), { token: 'student' }));
    expect(r.status).toBe(503);
    expect(r.headers?.['Retry-After']).toBeDefined();
  });
});

describe('createIngest: rate limits', () => {
  it('lets the request through when the limiter is unavailable', async () => {
    const { ingest, bus, limiter } = setup();
    limiter.decide = () => 'unavailable';
    const r = await call(ingest, ctx(interaction({ id: 'rl-down' }), { token: 'student' }));
    expect(r.status).toBe(202);
    expect(r.headers).toEqual({});
    expect(bus.published).toHaveLength(1);
  });

  it('answers 429 with Retry-After and RateLimit-* headers when denied, and publishes nothing', async () => {
    const { ingest, bus, dedup, limiter } = setup();
    limiter.decide = (_k, _c, perMinute) => ({
      success: false,
      limit: perMinute,
      remaining: 0,
      reset: NOW.getTime() + 12_300,
    });
    const r = await call(ingest, ctx(interaction({ id: 'rl-deny' }), { token: 'student' }));
    expect(r.status).toBe(429);
    expect(r.headers).toEqual({
      'Retry-After': '13',
      'RateLimit-Limit': '100',
      'RateLimit-Remaining': '0',
      'RateLimit-Reset': '13',
      'RateLimit-Policy': '100;w=60, 1000;w=60',
    });
    expect(problem(r).detail).toContain('100 requests per minute');
    expect(bus.published).toEqual([]);
    expect(dedup.state.size).toBe(0);
  });

  it('caps a student token at its events per minute (batches count each event): 429 naming the event limit', async () => {
    const { ingest, bus, limiter } = setup();
    limiter.decide = (key, cost, perMinute) =>
      key.startsWith('student-events:')
        ? { success: false, limit: perMinute, remaining: 0, reset: NOW.getTime() + 30_000 }
        : { success: true, limit: perMinute, remaining: perMinute - cost, reset: NOW.getTime() + 60_000 };
    const events = Array.from({ length: 500 }, (_, i) => interaction({ id: `cap-${i}` }));
    const r = await call(ingest, ctx({ events }, { token: 'student' }));
    expect(r.status).toBe(429);
    expect(limiter.calls).toContainEqual({ key: `student-events:${STUDENT}`, cost: 500, perMinute: 1000 });
    expect(problem(r).detail).toContain('1000 events per minute');
    expect(r.headers).toMatchObject({
      'Retry-After': '30',
      'RateLimit-Limit': '1000',
      'RateLimit-Remaining': '0',
    });
    expect(bus.published).toEqual([]);
  });

  it('says Retry-After of at least 1 s even when the window resets now', async () => {
    const { ingest, limiter } = setup();
    limiter.decide = () => ({ success: false, limit: 6000, remaining: 0, reset: NOW.getTime() });
    const r = await call(ingest, ctx({ events: [interaction()] }, { token: 'app' }));
    expect(r.status).toBe(429);
    expect(r.headers?.['Retry-After']).toBe('1');
    expect(problem(r).detail).toContain('6000 events per minute');
  });
});

describe('createIngest: authentication and authorisation', () => {
  it.each([
    ['no authorization header', undefined],
    ['an unknown token', 'forged'],
  ])('401 for %s', async (_name, token) => {
    const { ingest, bus } = setup();
    const r = await call(ingest, ctx(interaction(), { token }));
    expect(r.status).toBe(401);
    expect(r.headers?.['WWW-Authenticate']).toMatch(/^Bearer error="invalid_token"/);
    expect(bus.published).toEqual([]);
  });

  it.each<[string, string, Record<string, unknown>, RegExp]>([
    ['app token for another instance', 'app-other', {}, /instanceId/],
    ['app token without an instance', 'app-no-instance', {}, /without an instance claim/],
    ['student token for another student', 'student', { studentId: 'stu-2' }, /studentId/],
    [
      'student token bound to another instance',
      'student-of-instance',
      { instanceId: 'inst-other' },
      /instanceId/,
    ],
    // SPEC §5: a student cannot choose the instance or the sponsor its events are attributed to
    ['student token without an instance claim', 'student-no-instance', {}, /without an instance claim/],
    [
      'student token naming a sponsor absent from its instance',
      'student',
      { sponsor: 'rival' },
      /\/sponsor: .*not present/,
    ],
    ['teacher token', 'teacher', {}, /teacher/],
    ['partner token', 'partner', {}, /partner/],
    ['platform token', 'platform', {}, /platform/],
    ['token without interaction:write', 'student-no-perm', {}, /interaction:write/],
  ])('403 for %s, nothing published', async (_name, token, over, detail) => {
    const { ingest, bus, limiter } = setup();
    const r = await call(ingest, ctx(interaction(over), { token }));
    expect(r.status).toBe(403);
    expect(problem(r).detail).toMatch(detail);
    expect(bus.published).toEqual([]);
    if (['teacher', 'partner', 'student-no-perm', 'student-no-instance'].includes(token))
      expect(limiter.calls).toEqual([]);
  });

  it('lets a student name a sponsor present at its instance, and only that one', async () => {
    const { ingest, bus } = setup();
    const ok = await call(
      ingest,
      ctx(interaction({ id: 'sp-ok', sponsor: 'acme-edu' }), { token: 'student' }),
    );
    expect(ok.status).toBe(202);
    expect(toMessage(bus.published[0]!.event).attributes['ldr-sponsor']).toBe('acme-edu');
    const events = [interaction({ sponsor: 'acme-edu' }), interaction({ sponsor: 'rival' })];
    const r = await call(ingest, ctx({ events }, { token: 'student' }));
    expect(r.status).toBe(403);
    expect(problem(r).detail).toContain('/events/1/sponsor');
    expect(bus.published).toHaveLength(1);
  });

  it('answers 503 (not 500) when the partner registry cannot be read for a student naming a sponsor', async () => {
    const { ingest, bus, sponsors } = setup();
    sponsors.down = true;
    const r = await call(ingest, ctx(interaction({ sponsor: 'acme-edu' }), { token: 'student' }));
    expect(r.status).toBe(503);
    expect(r.headers?.['Retry-After']).toBeDefined();
    expect(bus.published).toEqual([]);
    // without a sponsor the registry is not needed
    expect((await call(ingest, ctx(interaction(), { token: 'student' }))).status).toBe(202);
  });

  it('403 names the offending index of a batch', async () => {
    const { ingest, bus } = setup();
    const events = [interaction(), interaction(), interaction({ studentId: 'stu-9' })];
    const r = await call(ingest, ctx({ events }, { token: 'student' }));
    expect(r.status).toBe(403);
    expect(problem(r).detail).toContain('/events/2/studentId');
    expect(bus.published).toEqual([]);
  });
});

describe('createIngest: validation', () => {
  it('rejects a batch with one invalid event with 400 listing the bad index, nothing published', async () => {
    const { ingest, bus, dedup } = setup();
    const events = Array.from({ length: 5 }, (_, i) => interaction({ id: `v-${i}` }));
    events[3] = interaction({ id: 'v-3', payload: { exerciseId: 'ex', passed: 'yes' } });
    const r = await call(ingest, ctx({ events }, { token: 'app' }));
    expect(r.status).toBe(400);
    expect(problem(r).errors).toEqual([{ path: '/events/3/payload/passed', message: expect.any(String) }]);
    expect(bus.published).toEqual([]);
    expect(dedup.state.size).toBe(0);
  });

  it('a 400 still says how much of the rate limit is left (RateLimit-* headers)', async () => {
    const { ingest } = setup();
    const r = await call(ingest, ctx(interaction({ kind: 'nope' }), { token: 'student' }));
    expect(r.status).toBe(400);
    expect(r.headers?.['RateLimit-Limit']).toBeDefined();
    expect(r.headers?.['RateLimit-Remaining']).toBeDefined();
  });

  it('lists every bad index of a batch', async () => {
    const { ingest } = setup();
    const events = [interaction({ kind: 'nope' }), interaction(), interaction({ occurredAt: 'today' })];
    const r = await call(ingest, ctx({ events }, { token: 'app' }));
    expect(problem(r).errors?.map((e) => e.path)).toEqual(['/events/0/kind', '/events/2/occurredAt']);
  });

  it('413 for a payload over 32 KiB, telling the client to use lfsProxy', async () => {
    const { ingest, bus } = setup();
    const r = await call(
      ingest,
      ctx(interaction({ kind: 'help_request', payload: { text: 'x'.repeat(33 * 1024) } }), {
        token: 'student',
      }),
    );
    expect(r.status).toBe(413);
    expect(problem(r).detail).toContain('lfsProxy');
    expect(problem(r).errors?.map((e) => e.path)).toEqual(['/payload']);
    expect(bus.published).toEqual([]);
  });

  it('413 for a body over 1 MiB, also pointing to lfsProxy', async () => {
    const { ingest, bus, limiter } = setup();
    const r = await call(
      ingest,
      ctx(interaction(), { token: 'student', rawBody: Buffer.alloc(MAX_BODY_BYTES + 1, 32) }),
    );
    expect(r.status).toBe(413);
    expect(problem(r).detail).toContain('lfsProxy');
    expect(bus.published).toEqual([]);
    expect(limiter.calls).toEqual([]);
  });

  it('415 for a body that is not JSON', async () => {
    const { ingest } = setup();
    const r = await call(ingest, ctx('studentId=stu-1', { token: 'student', contentType: 'text/plain' }));
    expect(r.status).toBe(415);
  });
});

describe('createIngest: artifacts', () => {
  const withArtifacts = (...ids: string[]) => interaction({ artifacts: ids.map((id) => `lfs://${id}`) });

  function seeded() {
    const s = setup();
    const learner = { ownerKind: 'student', instanceId: INSTANCE } as const;
    s.artifacts.records.set('pend', { ...learner, state: 'pending', ownerId: STUDENT });
    s.artifacts.records.set('rej', { ...learner, state: 'rejected', ownerId: STUDENT });
    s.artifacts.records.set('foreign', {
      ...learner,
      state: 'stored',
      ownerId: 'stu-other',
      instanceId: 'inst-other',
    });
    s.artifacts.records.set('mine', { ...learner, state: 'stored', ownerId: STUDENT });
    // another learner's artifact, uploaded through the same instance
    s.artifacts.records.set('instance', { ...learner, state: 'stored', ownerId: 'stu-other' });
    // content the platform uploaded (ownerId a platform principal)
    s.artifacts.records.set('content', { state: 'stored', ownerId: STUDENT, ownerKind: 'platform' });
    return s;
  }

  it.each([
    ['unknown', 'missing', /no such artifact/],
    ['pending', 'pend', /pending/],
    ['rejected', 'rej', /rejected/],
    ['foreign (readable only by another learner)', 'foreign', /no such artifact/],
  ])('400 naming /artifacts/0 for a %s artifact', async (_name, id, message) => {
    const { ingest, bus } = seeded();
    const r = await call(ingest, ctx(withArtifacts(id), { token: 'student' }));
    expect(r.status).toBe(400);
    expect(problem(r).errors).toEqual([{ path: '/artifacts/0', message: expect.stringMatching(message) }]);
    expect(bus.published).toEqual([]);
  });

  it('names /events/i/artifacts/j in a batch', async () => {
    const { ingest, bus } = seeded();
    const events = [withArtifacts('mine'), withArtifacts('mine', 'pend'), withArtifacts('missing')];
    const r = await call(ingest, ctx({ events }, { token: 'student' }));
    expect(r.status).toBe(400);
    expect(
      problem(r)
        .errors?.map((e) => e.path)
        .sort(),
    ).toEqual(['/events/1/artifacts/1', '/events/2/artifacts/0']);
    expect(bus.published).toEqual([]);
  });

  it('accepts a stored artifact the student owns', async () => {
    const { ingest, bus } = seeded();
    const r = await call(ingest, ctx(withArtifacts('mine'), { token: 'student' }));
    expect(r.status).toBe(202);
    expect((bus.published[0]!.event.data as { artifacts: string[] }).artifacts).toEqual(['lfs://mine']);
  });

  // issue 11 #3: ingest applies exactly lfsProxy's read rule (GET /objects/<id> answers 404 for these)
  it.each([
    ["another learner's artifact of the same instance", 'instance'],
    ['a platform artifact whose owner id equals the student id', 'content'],
  ])('400 for a student referencing %s', async (_name, id) => {
    const { ingest, bus } = seeded();
    const r = await call(ingest, ctx(withArtifacts(id), { token: 'student' }));
    expect(r.status).toBe(400);
    expect(problem(r).errors).toEqual([{ path: '/artifacts/0', message: 'no such artifact' }]);
    expect(bus.published).toEqual([]);
  });

  it('lets an app token reference any artifact of its instance, as GET /objects lets it read them', async () => {
    const { ingest } = seeded();
    const r = await call(ingest, ctx(withArtifacts('mine', 'instance'), { token: 'app' }));
    expect(r.status).toBe(202);
  });

  it("does not let an app token reach another instance's shared artifact", async () => {
    const { ingest, artifacts } = seeded();
    artifacts.records.set('hh', {
      state: 'stored',
      ownerId: STUDENT,
      ownerKind: 'student',
      instanceId: 'inst-hamburg',
    });
    const r = await call(ingest, ctx(withArtifacts('hh'), { token: 'app' }));
    expect(r.status).toBe(400);
    expect(problem(r).errors?.map((e) => e.path)).toEqual(['/artifacts/0']);
  });

  it('accepts a stored artifact an app token uploads for its learner', async () => {
    const { ingest } = seeded();
    const r = await call(ingest, ctx(withArtifacts('mine'), { token: 'app' }));
    expect(r.status).toBe(202);
  });
});
