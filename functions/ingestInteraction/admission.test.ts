import type { Request } from '@google-cloud/functions-framework';
import { describe, expect, it } from 'vitest';
import type { Principal, RevocationState, Verifier } from '../../shared/auth.ts';
import type { Bus } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import { HttpError, unauthorized } from '../../shared/errors.ts';
import type { Reply, RouteContext } from '../../shared/http.ts';
import { createLogger } from '../../shared/log.ts';
import type { Admission, AdmissionGate, DedupWindow, Quota } from '../../shared/ports.ts';
import { createIngest } from './handler.ts';

/** The handler with a verifier that leaves the deny-list to the admission round trip (as in production). */
const EXP = Math.floor(Date.now() / 1000) + 3600;
const principals: Record<string, Principal> = {
  student: {
    sub: 'stu-1',
    role: 'student',
    permissions: ['interaction:write'],
    instance: 'inst-a',
    jti: 'j-s',
    exp: EXP,
  },
  teacher: {
    sub: 't-1',
    role: 'teacher',
    permissions: ['interaction:write'],
    instance: 'inst-a',
    jti: 'j-t',
    exp: EXP,
  },
};

function setup(gate: (q: { jti?: string; quotas: Quota[]; claim: string[] }) => Admission) {
  const revoked = new Set<string>();
  const calls: Array<{ jti?: string; quotas: Quota[]; claim: string[] }> = [];
  const authenticate = async (h?: string) => {
    const p = principals[(h ?? '').replace(/^Bearer /, '')];
    if (!p) throw unauthorized('invalid token');
    return p;
  };
  const settleRevocation = (p: Principal, s: RevocationState) => {
    if (s === 'revoked') throw unauthorized('token has been revoked');
    if (s === 'unavailable' && p.role !== 'student' && p.role !== 'app')
      throw new HttpError(503, 'Service Unavailable', 'revocation list unreachable');
  };
  const verifier: Verifier = {
    authenticate,
    settleRevocation,
    async verify(h) {
      const p = await authenticate(h);
      settleRevocation(p, p.jti && revoked.has(p.jti) ? 'revoked' : 'ok');
      return p;
    },
  };
  const published: LdrEvent[] = [];
  const bus: Bus = {
    publish: async (_t, e) => {
      published.push(e);
      return '1';
    },
    publishRaw: async () => '1',
  };
  const dedup: DedupWindow = {
    claim: async (ids) => new Map(ids.map((id) => [id, 'new' as const])),
    confirm: async () => {},
    release: async () => {},
  };
  const admission: AdmissionGate = {
    admit: async (q) => {
      calls.push(q);
      return gate(q);
    },
  };
  const ingest = createIngest({
    verifier,
    bus,
    admission,
    dedup,
    artifacts: { get: async () => undefined },
    sponsors: { at: async () => new Set() },
    log: createLogger('admission-test', 'silent'),
    limits: { studentRequestsPerMin: 100, studentEventsPerMin: 1000, instanceEventsPerMin: 1000 },
    newId: () => crypto.randomUUID(),
  });
  const call = async (token: string): Promise<Reply> => {
    const body = {
      id: `e-${Math.random().toString(36).slice(2)}`,
      studentId: 'stu-1',
      instanceId: 'inst-a',
      kind: 'exercise_attempt',
      occurredAt: new Date(Date.now() - 1000).toISOString(),
      payload: { exerciseId: 'ex-1', passed: true, score: 0.8 },
    };
    const raw = Buffer.from(JSON.stringify(body));
    const req = {
      method: 'POST',
      url: '/',
      headers: {
        'content-type': 'application/json',
        'content-length': String(raw.length),
        authorization: `Bearer ${token}`,
      },
      body,
      rawBody: raw,
    } as unknown as Request;
    const ctx: RouteContext = { req, params: {}, query: new URLSearchParams() };
    try {
      return await ingest(ctx);
    } catch (err) {
      if (err instanceof HttpError)
        return { status: err.status, body: err.toProblem(), headers: err.extra.headers };
      throw err;
    }
  };
  return { call, calls, published, revoked };
}

const ok = (q: { quotas: Quota[]; claim: string[] }): Admission => ({
  revocation: 'ok',
  limits: q.quotas.map((x) => ({
    success: true,
    limit: x.perMinute,
    remaining: x.perMinute - x.cost,
    reset: Date.now() + 60_000,
  })),
  claims: new Map(q.claim.map((id) => [id, 'new' as const])),
});

describe('ingest admission: the deny-list inside the one round trip', () => {
  it('one admission per request, carrying the jti, the quotas and the claims', async () => {
    const { call, calls, published } = setup(ok);
    const first = await call('student');
    expect(first.body).toMatchObject({ accepted: 1 });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.jti).toBe('j-s');
    expect(calls[0]!.quotas.map((q) => q.key)).toEqual(['student:stu-1', 'student-events:stu-1']);
    expect(calls[0]!.claim).toHaveLength(1);
    expect(published).toHaveLength(1);
  });

  it('revoked → 401, nothing published', async () => {
    const { call, published } = setup(() => ({ revocation: 'revoked', limits: [], claims: new Map() }));
    expect((await call('student')).status).toBe(401);
    expect(published).toHaveLength(0);
  });

  it('a revoked token of a role that cannot post is 401, not 403 (checked on that path)', async () => {
    const s = setup(ok);
    expect((await s.call('teacher')).status).toBe(403);
    s.revoked.add('j-t');
    expect((await s.call('teacher')).status).toBe(401);
    expect(s.calls).toHaveLength(0);
  });

  it('Redis down: a student is accepted without headers and its event published', async () => {
    const { call, published } = setup((q) => ({
      revocation: 'unavailable',
      limits: q.quotas.map(() => 'unavailable' as const),
      claims: 'unavailable',
    }));
    const r = await call('student');
    expect(r.status).toBe(202);
    expect(r.headers?.['RateLimit-Limit']).toBeUndefined();
    expect(published).toHaveLength(1);
  });

  it('a refused quota is 429 with RateLimit-* and nothing published', async () => {
    const { call, published } = setup((q) => ({
      revocation: 'ok',
      limits: q.quotas.map((x, i) => ({
        success: i !== 0,
        limit: x.perMinute,
        remaining: i === 0 ? -1 : 5,
        reset: Date.now() + 30_000,
      })),
      claims: new Map(),
    }));
    const r = await call('student');
    expect(r.status).toBe(429);
    expect(r.headers?.['RateLimit-Limit']).toBe('100');
    expect(r.headers?.['Retry-After']).toBeDefined();
    expect(published).toHaveLength(0);
  });
});
