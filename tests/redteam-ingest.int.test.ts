import { randomUUID } from 'node:crypto';
import { Firestore } from '@google-cloud/firestore';
import { Redis } from '@upstash/redis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, type ArtifactDoc } from '../shared/artifacts.ts';
import { clientEventId, TOPICS } from '../shared/events.ts';
import { control, eventually, fnUrl, pubsubClient, suite, tap, token } from './helpers.ts';

/**
 * Issue 11, the ingest / auth / ledger findings, replayed over HTTP against the running suite:
 * #3 foreign artifacts, #5 occurredAt before 2000, #6 student tokens choosing instance or sponsor,
 * #7 ids scoped to the learner, #8 revocations across a Redis restart and while it is down,
 * #11 concurrent duplicates, #13 the per-student event cap.
 */

type Json = Record<string, unknown>;
const uid = () => randomUUID().replace(/-/g, '').slice(0, 16);

async function call(url: string, opts: { method?: string; token?: string; body?: unknown } = {}) {
  const headers: Record<string, string> = {};
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(url, {
    method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'),
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body: body as Json };
}
const ingest = (body: unknown, t: string) => call(fnUrl('ingestInteraction'), { body, token: t });

const event = (studentId: string, instanceId: string, over: Json = {}): Json => ({
  id: `e-${uid()}`,
  studentId,
  instanceId,
  kind: 'quiz_answer',
  occurredAt: new Date(Date.now() - 60_000).toISOString(),
  payload: { quizId: 'q1', correct: true, score: 0.9 },
  ...over,
});

const expectProblem = (r: Awaited<ReturnType<typeof call>>, status: number) => {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.headers.get('content-type')).toContain('application/problem+json');
  expect(r.body).toMatchObject({ status, title: expect.any(String), detail: expect.any(String) });
  return r.body as { detail: string; errors?: Array<{ path: string; message: string }> };
};

const pubsub = pubsubClient();
let db: Firestore;
let pool: pg.Pool;
beforeAll(() => {
  db = new Firestore({ projectId: suite().projectId, host: suite().env.FIRESTORE_EMULATOR_HOST, ssl: false });
  pool = new pg.Pool({ connectionString: suite().env.DATABASE_URL, max: 2 });
});
afterAll(async () => {
  await pubsub.close();
  await db.terminate();
  await pool.end();
});

describe('#3 artifacts: ingest applies exactly the read rule of lfsProxy GET /objects', () => {
  it('a reference is accepted exactly when GET /objects/<id> lets the same token read it', async () => {
    const [instA, instB] = [`inst-${uid()}`, `inst-${uid()}`];
    const [alice, bob] = [`stu-${uid()}`, `stu-${uid()}`];
    const seed = async (over: Partial<ArtifactDoc>) => {
      const id = `a${uid()}`;
      const doc: ArtifactDoc = {
        state: 'stored',
        ownerId: alice,
        ownerKind: 'student',
        instanceId: instA,
        uploaderSub: alice,
        uploaderRole: 'student',
        bucket: suite().env.LFS_BUCKET ?? 'ldr-artifacts',
        objectName: `artifacts/${id}/notes.pdf`,
        contentType: 'application/pdf',
        size: 10,
        sha256: 'a'.repeat(64),
        filename: 'notes.pdf',
        createdAt: new Date().toISOString(),
        storedAt: new Date().toISOString(),
        ...over,
      };
      await db
        .collection(ARTIFACTS)
        .doc(id)
        .set(JSON.parse(JSON.stringify(doc))); // without undefined fields
      return id;
    };
    const artifacts = {
      alicesInA: await seed({}),
      bobsInA: await seed({ ownerId: bob, uploaderSub: bob }),
      alicesInB: await seed({ instanceId: instB }),
      platformNamedAlice: await seed({
        ownerKind: 'platform',
        uploaderRole: 'platform',
        instanceId: undefined,
      }),
    };
    const tokens = {
      aliceA: {
        t: await token({ sub: alice, role: 'student', instance: instA }),
        student: alice,
        inst: instA,
      },
      appA: {
        t: await token({ sub: `app-${uid()}`, role: 'app', instance: instA }),
        student: bob,
        inst: instA,
      },
      appB: {
        t: await token({ sub: `app-${uid()}`, role: 'app', instance: instB }),
        student: bob,
        inst: instB,
      },
    };
    const table: string[] = [];
    for (const [who, k] of Object.entries(tokens)) {
      for (const [what, id] of Object.entries(artifacts)) {
        const read = await call(fnUrl('lfsProxy', `/objects/${id}`), { token: k.t });
        expect([200, 404], `${who} GET ${what}`).toContain(read.status);
        const post = await ingest(event(k.student, k.inst, { artifacts: [`lfs://${id}`] }), k.t);
        expect([202, 400], `${who} posts ${what}`).toContain(post.status);
        if (post.status === 400)
          expect(post.body.errors).toEqual([{ path: '/artifacts/0', message: 'no such artifact' }]);
        table.push(`${who} ${what}: read ${read.status === 200} reference ${post.status === 202}`);
      }
    }
    expect(table).toEqual([
      'aliceA alicesInA: read true reference true',
      'aliceA bobsInA: read false reference false', // issue 11 #3: a student referenced another's artifact
      'aliceA alicesInB: read true reference true',
      'aliceA platformNamedAlice: read false reference false',
      'appA alicesInA: read true reference true',
      'appA bobsInA: read true reference true',
      'appA alicesInB: read false reference false',
      'appA platformNamedAlice: read false reference false',
      'appB alicesInA: read false reference false', // issue 11 #3: an app of inst-b referenced an inst-a artifact
      'appB bobsInA: read false reference false',
      'appB alicesInB: read true reference true',
      'appB platformNamedAlice: read false reference false',
    ]);
  });
});

describe('#5 occurredAt: only what the history can record is accepted', () => {
  it('year 0000 and a non-existent date are 400 naming the field; year 2000 is 202 and recorded', async () => {
    const instance = `inst-${uid()}`;
    const student = `stu-${uid()}`;
    const t = await token({ sub: student, role: 'student', instance });
    const single = expectProblem(
      await ingest(event(student, instance, { occurredAt: '0000-01-01T00:00:00Z' }), t),
      400,
    );
    expect(single.errors?.map((e) => e.path)).toEqual(['/occurredAt']);
    const batch = expectProblem(
      await ingest(
        {
          events: [
            event(student, instance),
            event(student, instance, { occurredAt: '2026-02-30T00:00:00Z' }),
          ],
        },
        t,
      ),
      400,
    );
    expect(batch.errors?.map((e) => e.path)).toEqual(['/events/1/occurredAt']);

    const earliest = event(student, instance, { occurredAt: '2000-01-01T00:00:00Z' });
    expect((await ingest(earliest, t)).status).toBe(202);
    const row = await eventually(
      async () =>
        (
          await pool.query('SELECT occurred_at FROM interactions WHERE student_id = $1 AND event_id = $2', [
            student,
            earliest.id,
          ])
        ).rows[0] as { occurred_at: Date } | undefined,
      30_000,
      'the year-2000 event in the history',
    );
    expect(row.occurred_at.toISOString()).toBe('2000-01-01T00:00:00.000Z');
  });
});

describe('#6 a student cannot choose the instance or sponsor of its events', () => {
  it('a student token without `instance` is 403 explaining why; with it, only its instance and no sponsor', async () => {
    const instance = `inst-${uid()}`;
    const student = `stu-${uid()}`;
    const bare = await token({ sub: student, role: 'student' });
    const p = expectProblem(await ingest(event(student, instance), bare), 403);
    expect(p.detail).toMatch(/instance claim/);

    const bound = await token({ sub: student, role: 'student', instance });
    expect(expectProblem(await ingest(event(student, `inst-${uid()}`), bound), 403).detail).toMatch(
      /instanceId/,
    );
    expect(
      expectProblem(await ingest(event(student, instance, { sponsor: 'acme-edu' }), bound), 403).detail,
    ).toMatch(/\/sponsor/);
    expect((await ingest(event(student, instance), bound)).status).toBe(202);
  });
});

describe('#7 + #11 event ids are scoped to the learner; concurrent duplicates are accepted once', () => {
  it('students A and B posting the same id are both accepted, published under distinct ce-ids and recorded', async () => {
    const instance = `inst-${uid()}`;
    const [a, b] = [`stu-${uid()}`, `stu-${uid()}`];
    const shared = `shared-${uid()}`;
    const tapped = await tap(pubsub, TOPICS.interaction);
    try {
      const replies = await Promise.all(
        [a, b].map(async (s) =>
          ingest(
            event(s, instance, { id: shared, kind: 'help_request', payload: { text: 'I am stuck' } }),
            await token({ sub: s, role: 'student', instance }),
          ),
        ),
      );
      for (const r of replies)
        expect(r.body).toMatchObject({ accepted: 1, results: [{ id: shared, status: 'accepted' }] });
      const want = [clientEventId(a, shared), clientEventId(b, shared)];
      expect(want[0]).not.toBe(want[1]);
      await eventually(
        async () =>
          want.every((id) => tapped.received.some((m) => m.attributes['ce-id'] === id)) ? true : undefined,
        20_000,
        'both interactions published',
      );
      const rows = await eventually(
        async () => {
          const r = await pool.query('SELECT student_id, ce_id FROM interactions WHERE event_id = $1', [
            shared,
          ]);
          return r.rowCount === 2 ? r.rows : undefined;
        },
        30_000,
        'both interactions in the history',
      );
      expect(rows.map((r) => `${r.student_id} ${r.ce_id}`).sort()).toEqual(
        [`${a} ${want[0]}`, `${b} ${want[1]}`].sort(),
      );
    } finally {
      await tapped.close();
    }
  });

  it('of three identical posts at once exactly one is accepted and one message is published', async () => {
    const instance = `inst-${uid()}`;
    const student = `stu-${uid()}`;
    const t = await token({ sub: student, role: 'student', instance });
    const tapped = await tap(pubsub, TOPICS.interaction, { ordered: true });
    try {
      const e = event(student, instance);
      const replies = await Promise.all([0, 1, 2].map(() => ingest(e, t)));
      expect(replies.map((r) => r.status)).toEqual([202, 202, 202]);
      const statuses = replies.map((r) => (r.body.results as Array<{ status: string }>)[0]!.status);
      expect(statuses.sort()).toEqual(['accepted', 'duplicate', 'duplicate']);
      // a later marker on the same ordering key arrives after any second copy would have
      const marker = event(student, instance, { kind: 'session', payload: { action: 'end' } });
      expect((await ingest(marker, t)).status).toBe(202);
      const markerId = clientEventId(student, marker.id as string);
      await eventually(
        async () => tapped.received.find((m) => m.attributes['ce-id'] === markerId),
        20_000,
        'the marker',
      );
      const ceId = clientEventId(student, e.id as string);
      expect(tapped.received.filter((m) => m.attributes['ce-id'] === ceId)).toHaveLength(1);
    } finally {
      await tapped.close();
    }
  });
});

describe('#13 per-student event cap (RATE_STUDENT_EVENTS_PER_MIN, 1,000 by default)', () => {
  it('1,000 events in a minute from one student token, then 429 with Retry-After and RateLimit-*', async () => {
    const instance = `inst-${uid()}`;
    const student = `stu-${uid()}`;
    const t = await token({ sub: student, role: 'student', instance });
    // the limit is taken before validation (validating costs too): invalid batches count, and publish nothing
    const invalid = () => ({
      events: Array.from({ length: 500 }, () => event(student, instance, { kind: 'not-a-kind' })),
    });
    expect((await ingest(invalid(), t)).status).toBe(400);
    expect((await ingest(invalid(), t)).status).toBe(400);
    const r = await ingest(event(student, instance), t);
    expect(expectProblem(r, 429).detail).toContain('1000 events per minute');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(r.headers.get('ratelimit-limit')).toBe('1000');
    expect(r.headers.get('ratelimit-remaining')).toBe('0');
    // 3 requests: far below the 100 requests/min, so it is the event cap that answered
    const other = `stu-${uid()}`;
    expect(
      (await ingest(event(other, instance), await token({ sub: other, role: 'student', instance }))).status,
    ).toBe(202);
  });
});

describe('#8 revocation survives a Redis restart; platform and partner tokens fail closed while it is down', () => {
  it('revoked stays revoked after a restart; while down: platform/partner 503 + Retry-After, student accepted', async () => {
    const env = suite().env;
    const redis = new Redis({ url: env.UPSTASH_REDIS_REST_URL!, token: env.UPSTASH_REDIS_REST_TOKEN! });
    const instance = `inst-${uid()}`;
    const student = `stu-${uid()}`;
    const jti = randomUUID();
    const revoked = await token({ sub: student, role: 'student', instance, jti });
    // not presented before the restart: a worker that saw it revoked would remember it without Redis
    await redis.set(`revoked:jti:${jti}`, '1', { ex: 3600 });

    const platform = await token({ sub: `svc-${uid()}`, role: 'platform' });
    const partner = await token({ sub: `p-${uid()}`, role: 'partner', partner: 'acme' });
    const fresh = await token({ sub: student, role: 'student', instance });
    await control('redis', 'stop');
    try {
      for (const [name, r] of [
        [
          'platform → progressApi',
          await call(fnUrl('progressApi', `/students/${student}`), { token: platform }),
        ],
        ['partner → partnerRoom', await call(fnUrl('partnerRoom', '/p/acme'), { token: partner })],
      ] as const) {
        expect(r.status, name).toBe(503);
        expect(r.headers.get('content-type'), name).toContain('application/problem+json');
        expect(Number(r.headers.get('retry-after')), name).toBeGreaterThanOrEqual(1);
        expect((r.body as { detail: string }).detail, name).toMatch(/revocation list/);
      }
      // student (and app) tokens fail open: the learning traffic goes on (see shared/auth.ts)
      expect((await ingest(event(student, instance), fresh)).status).toBe(202);
    } finally {
      await control('redis', 'start');
    }
    // the deny-list kept the jti across the restart (issue 11 #8: it came back empty)
    await eventually(async () => ((await redis.ping()) === 'PONG' ? true : undefined), 15_000, 'Redis back');
    expect(await redis.exists(`revoked:jti:${jti}`)).toBe(1);
    expect((await ingest(event(student, instance), revoked)).status).toBe(401);
  });
});
