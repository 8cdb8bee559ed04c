import { randomUUID } from 'node:crypto';
import { Firestore } from '@google-cloud/firestore';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  control,
  eventually,
  fnUrl,
  iso,
  learnersSharingAKey,
  localOrderingKey,
  postJson,
  pubsubClient,
  suite,
  tap,
  token,
  workers,
} from './helpers.ts';

const pubsub = pubsubClient();
let db: pg.Pool;
let fs: Firestore;

beforeAll(() => {
  db = new pg.Pool({ connectionString: suite().env.DATABASE_URL, max: 3 });
  fs = new Firestore({ projectId: suite().projectId, host: suite().env.FIRESTORE_EMULATOR_HOST, ssl: false });
});
afterAll(async () => {
  await db.end();
  await fs.terminate();
  await pubsub.close();
});

const ingest = (body: unknown, t: string) => postJson(fnUrl('ingestInteraction'), body, t);
const topicDoc = (student: string, topic: string) =>
  fs.collection('students').doc(student).collection('topics').doc(topic).get();
const historyCount = async (student: string) =>
  Number(
    (await db.query('SELECT count(*) FROM interactions WHERE student_id = $1', [student])).rows[0].count,
  );

function quiz(student: string, score: number, extra: Record<string, unknown> = {}) {
  return {
    id: `q-${randomUUID()}`,
    studentId: student,
    instanceId: 'inst-a',
    kind: 'quiz_answer',
    occurredAt: iso(),
    topic: 'python.loops',
    payload: { quizId: 'quiz-1', correct: score >= 0.5, score },
    ...extra,
  };
}

/** SPEC §7 by hand for quiz-only learners active on one day: 100 × (0.3 × mean + 0.1 × 1/7), one decimal. */
const quizOnlyMastery = (scores: number[]) =>
  Math.round(10 * 100 * (0.3 * (scores.reduce((a, b) => a + b, 0) / scores.length) + 0.1 / 7)) / 10;

describe('interaction → triage → progress → history', () => {
  it('routes each interaction to its agent once and updates progress and history', async () => {
    const student = `s-${randomUUID()}`;
    const t = await token({ sub: student, role: 'student', instance: 'inst-a' });
    const taps = Object.fromEntries(
      await Promise.all(
        ['debug', 'code-review', 'exercise', 'progress', 'concepts'].map(
          async (a) => [a, await tap(pubsub, `learnflow.agent.${a}`)] as const,
        ),
      ),
    );
    const audit = await tap(pubsub, 'learnflow.triage.routed');
    const progress = await tap(pubsub, 'learnflow.progress.updated');
    const struggle = await tap(pubsub, 'learnflow.struggle.detected');
    try {
      const base = { studentId: student, instanceId: 'inst-a', occurredAt: iso(), topic: 'python.loops' };
      const events = [
        {
          ...base,
          id: `e-${randomUUID()}`,
          kind: 'code_execution',
          payload: { ok: false, errorType: 'TypeError', errorMessage: 'x is undefined' },
        },
        {
          ...base,
          id: `e-${randomUUID()}`,
          kind: 'code_submission',
          payload: { exerciseId: 'ex-1', code: 'print(1)', codeQuality: 0.9 },
        },
        {
          ...base,
          id: `e-${randomUUID()}`,
          kind: 'exercise_attempt',
          payload: { exerciseId: 'ex-1', passed: true },
        },
        {
          ...base,
          id: `e-${randomUUID()}`,
          kind: 'exercise_attempt',
          payload: { exerciseId: 'ex-2', passed: false },
        },
        {
          ...base,
          id: `e-${randomUUID()}`,
          kind: 'quiz_answer',
          payload: { quizId: 'qz', correct: true, score: 0.8 },
        },
        {
          ...base,
          id: `e-${randomUUID()}`,
          kind: 'help_request',
          payload: { text: 'Ich komme nicht weiter mit den Schleifen' },
        },
        { ...base, id: `e-${randomUUID()}`, kind: 'session', payload: { action: 'start' } },
      ];
      const res = await ingest({ events }, t);
      expect(res.status).toBe(202);
      expect(res.body.accepted).toBe(7);
      const expectedAgent = ['debug', 'code-review', 'exercise', 'exercise', 'progress', 'concepts', 'none'];

      await eventually(
        async () => (audit.received.length >= 7 ? true : undefined),
        20_000,
        'seven triage decisions',
      );
      const decisions = audit.json().map((m) => m.body);
      events.forEach((e, i) => {
        const d = decisions.filter((x) => x.interactionId === e.id);
        expect(d, e.kind).toHaveLength(1);
        expect(d[0].agent).toBe(expectedAgent[i]);
        expect(d[0].reason).toBeTruthy();
        expect(d[0].confidence).toBeGreaterThan(0);
      });
      for (const [agent, tp] of Object.entries(taps)) {
        const want = events.filter((_, i) => expectedAgent[i] === agent).map((e) => e.id);
        await eventually(
          async () => (tp.received.length >= want.length ? true : undefined),
          10_000,
          `${agent} topic`,
        );
        expect(
          tp
            .json()
            .map((m) => m.body.interactionId)
            .sort(),
        ).toEqual(want.sort());
        expect(
          tp.received.every((m) => m.orderingKey === localOrderingKey(`learnflow.agent.${agent}`, student)),
        ).toBe(true);
      }

      // progress: exercise 1/2 passed, quiz 0.8, quality 0.9, one-day streak:
      // 100 × (0.4 × 0.5 + 0.3 × 0.8 + 0.2 × 0.9 + 0.1 × 1/7) = 20 + 24 + 18 + 1.43 = 63.4 → learning
      const doc = await eventually(
        async () => {
          const d = await topicDoc(student, 'python.loops');
          return d.exists && d.get('interactions') === 7 ? d : undefined;
        },
        20_000,
        'progress in Firestore',
      );
      expect(doc.get('mastery')).toBe(63.4);
      expect(doc.get('level')).toBe('learning');
      expect(await historyCount(student)).toBe(7);
      const snap = await db.query('SELECT mastery, level FROM mastery_snapshots WHERE student_id = $1', [
        student,
      ]);
      expect(snap.rows).toEqual([{ mastery: '63.4', level: 'learning' }]);

      const api = await fetch(fnUrl('progressApi', `/students/${student}`), {
        headers: { authorization: `Bearer ${t}` },
      });
      expect(api.status).toBe(200);
      expect((await api.json()).topics[0].mastery).toBe(63.4);
      await eventually(
        async () =>
          progress.received.some((m) => JSON.parse(m.data.toString()).mastery === 63.4) ? true : undefined,
        10_000,
        'progress event',
      );
      await eventually(async () => (struggle.received.length ? true : undefined), 10_000, 'struggle event');
      const s = struggle.json().map((m) => m.body);
      expect(s.map((x) => x.reason)).toEqual(['stuck']);
      expect(struggle.received[0]!.attributes['ce-type']).toBe('learnflow.struggle.detected.v1');
    } finally {
      await Promise.all([...Object.values(taps), audit, progress, struggle].map((x) => x.close()));
    }
  });

  it('a duplicate post is answered as duplicate and counted once', async () => {
    const student = `s-${randomUUID()}`;
    const t = await token({ sub: student, role: 'student', instance: 'inst-a' });
    const ev = quiz(student, 0.6);
    const first = await ingest(ev, t);
    const second = await ingest(ev, t);
    expect(first.body.results).toEqual([{ id: ev.id, status: 'accepted' }]);
    expect(second.body.results).toEqual([{ id: ev.id, status: 'duplicate' }]);
    await eventually(
      async () => ((await historyCount(student)) === 1 ? true : undefined),
      15_000,
      'history row',
    );
    const doc = await eventually(async () => {
      const d = await topicDoc(student, 'python.loops');
      return d.exists ? d : undefined;
    });
    expect(doc.get('interactions')).toBe(1);
    expect(doc.get('mastery')).toBe(quizOnlyMastery([0.6]));
  });

  it('the same message delivered concurrently to updateProgress changes progress once', async () => {
    const student = `s-${randomUUID()}`;
    const ev = quiz(student, 0.9);
    const attributes = {
      'ce-specversion': '1.0',
      'ce-id': ev.id,
      'ce-source': '/test',
      'ce-type': 'learnflow.interaction.v1',
      'ce-time': iso(),
      'ce-subject': `students/${student}`,
      'content-type': 'application/json',
    };
    const { updateProgress } = await workers();
    const deliver = (attempt: number) =>
      fetch(`http://127.0.0.1:${updateProgress!.port}/`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'ce-specversion': '1.0',
          'ce-id': `m-${attempt}`,
          'ce-source': '//pubsub.googleapis.com/projects/demo-ldr/topics/learnflow.interaction.received',
          'ce-type': 'google.cloud.pubsub.topic.v1.messagePublished',
          'ce-time': iso(),
        },
        body: JSON.stringify({
          message: {
            data: Buffer.from(JSON.stringify(ev)).toString('base64'),
            attributes,
            messageId: `m-${attempt}`,
            publishTime: iso(),
            orderingKey: student,
          },
          subscription: 'projects/demo-ldr/subscriptions/fn.updateProgress.interaction',
          deliveryAttempt: attempt,
        }),
      });
    const statuses = await Promise.all([1, 2, 3, 4, 5, 6].map((a) => deliver(a).then((r) => r.status)));
    expect(statuses.every((s) => s < 300)).toBe(true);
    expect(await historyCount(student)).toBe(1);
    const doc = await topicDoc(student, 'python.loops');
    expect(doc.get('interactions')).toBe(1);
    expect(doc.get('version')).toBe(1);
    expect(doc.get('mastery')).toBe(quizOnlyMastery([0.9]));
  });

  it('interleaved students sharing one ordering key each get exactly their own events applied, in order', async () => {
    const app = await token({ sub: 'app-inst-a', role: 'app', instance: 'inst-a' });
    // all on one shard of the interaction topic (the local suite shards learner keys, shared/ordering.ts):
    // their events are one ordered stream, and each learner's must still be applied in its own order
    const students = learnersSharingAKey('learnflow.interaction.received', 5);
    expect(new Set(students.map((s) => localOrderingKey('learnflow.interaction.received', s))).size).toBe(1);
    const scores = new Map(students.map((s) => [s, [] as number[]]));
    const events = [];
    for (let round = 0; round < 12; round++) {
      for (const s of students) {
        const score = Math.round(Math.random() * 100) / 100;
        scores.get(s)!.push(score);
        events.push(quiz(s, score, { occurredAt: new Date(Date.now() - (12 - round) * 1000).toISOString() }));
      }
    }
    const res = await ingest({ events }, app);
    expect(res.status).toBe(202);
    // one ordered stream of 60 messages per subscription: allow for a busy machine
    const docs = await eventually(
      async () => {
        const ds = await Promise.all(students.map((s) => topicDoc(s, 'python.loops')));
        return ds.every((d) => d.exists && d.get('interactions') === 12) ? ds : undefined;
      },
      100_000,
      '12 interactions of each learner',
    );
    for (const [i, s] of students.entries()) {
      expect(docs[i]!.get('mastery')).toBe(quizOnlyMastery(scores.get(s)!));
      const rows = await db.query(
        'SELECT payload FROM interactions WHERE student_id = $1 ORDER BY applied_at, event_id',
        [s],
      );
      expect(rows.rows.map((r) => r.payload.score)).toEqual(scores.get(s));
    }
  }, 150_000);

  it('a worker killed mid-stream loses nothing and counts nothing twice', async () => {
    const student = `s-${randomUUID()}`;
    const t = await token({ sub: 'app-inst-a', role: 'app', instance: 'inst-a' });
    const scores = Array.from({ length: 60 }, (_, i) => ((i * 37) % 100) / 100);
    const events = scores.map((s) => quiz(student, s));
    const before = (await workers()).updateProgress!.pid;
    const res = await ingest({ events }, t);
    expect(res.status).toBe(202);
    await eventually(
      async () => ((await historyCount(student)) >= 5 ? true : undefined),
      20_000,
      'first applications',
    );
    process.kill(before, 'SIGKILL');
    await eventually(
      async () => ((await workers()).updateProgress!.pid !== before ? true : undefined),
      10_000,
      'worker restart',
    );
    const doc = await eventually(
      async () => {
        const d = await topicDoc(student, 'python.loops');
        return d.exists && d.get('interactions') === 60 ? d : undefined;
      },
      60_000,
      'all 60 interactions applied',
    );
    expect(await historyCount(student)).toBe(60);
    expect(doc.get('mastery')).toBe(quizOnlyMastery(scores));
    // every progress event decided in the ledger is eventually published (the outbox drains)
    await eventually(
      async () => {
        const outbox = await db.query(
          `SELECT count(*) FROM outbox WHERE ordering_key = $1 AND sent_at IS NULL`,
          [student],
        );
        return Number(outbox.rows[0].count) === 0 ? true : undefined;
      },
      20_000,
      'the outbox to drain',
    );
  }, 120_000);
});

describe('degraded dependencies', () => {
  it('Redis down: valid events are still accepted and applied', async () => {
    const student = `s-${randomUUID()}`;
    const t = await token({ sub: student, role: 'student', instance: 'inst-a' });
    await control('redis', 'stop');
    try {
      const res = await ingest(quiz(student, 0.7), t);
      expect(res.status).toBe(202);
      expect(res.body.accepted).toBe(1);
    } finally {
      await control('redis', 'start');
    }
    await eventually(async () => ((await historyCount(student)) === 1 ? true : undefined), 15_000, 'applied');
  });

  it('Pub/Sub down: 503 with Retry-After; the same ids succeed once it is back', async () => {
    const student = `s-${randomUUID()}`;
    const t = await token({ sub: student, role: 'student', instance: 'inst-a' });
    const ev = quiz(student, 0.5);
    await control('pubsub', 'stop');
    let down;
    try {
      down = await ingest(ev, t);
    } finally {
      await control('pubsub', 'start');
    }
    expect(down.status).toBe(503);
    expect(down.headers.get('retry-after')).toBeTruthy();
    expect(down.headers.get('content-type')).toContain('application/problem+json');
    const retry = await eventually(
      async () => {
        const r = await ingest(ev, t);
        return r.status === 202 ? r : undefined;
      },
      30_000,
      'ingest after Pub/Sub is back',
    );
    expect(retry.body.results).toEqual([{ id: ev.id, status: 'accepted' }]);
    await eventually(
      async () => ((await historyCount(student)) === 1 ? true : undefined),
      20_000,
      'applied once',
    );
  });
});

describe('poison messages', () => {
  it('go to the dead-letter topic with a reason and the stream goes on', async () => {
    const dl = await tap(pubsub, 'learnflow.deadletter');
    const student = `s-${randomUUID()}`;
    try {
      const topic = pubsub.topic('learnflow.interaction.received', { messageOrdering: true });
      await topic.publishMessage({
        data: Buffer.from('{not json'),
        orderingKey: student,
        attributes: { 'ce-id': 'p1', 'ce-type': 'learnflow.interaction.v1', 'ce-source': '/x' },
      });
      const invalid = { id: `bad-${randomUUID()}`, studentId: student, kind: 'quiz_answer', payload: {} };
      await topic.publishMessage({
        data: Buffer.from(JSON.stringify(invalid)),
        orderingKey: student,
        attributes: {
          'ce-id': invalid.id,
          'ce-type': 'learnflow.interaction.v1',
          'ce-source': '/x',
          'ce-specversion': '1.0',
        },
      });
      const t = await token({ sub: student, role: 'student', instance: 'inst-a' });
      expect((await ingest(quiz(student, 1), t)).status).toBe(202);
      await eventually(
        async () => ((await historyCount(student)) === 1 ? true : undefined),
        20_000,
        'the good event after the poison',
      );
      const fromUpdate = await eventually(
        async () => {
          const m = dl.received.filter((x) => x.attributes['ldr-deadletter-function'] === 'updateProgress');
          return m.length >= 2 ? m : undefined;
        },
        20_000,
        'dead-lettered poison',
      );
      expect(fromUpdate.map((m) => m.attributes['ldr-deadletter-reason'])).toEqual(
        expect.arrayContaining([
          expect.stringContaining('not JSON'),
          expect.stringContaining('invalid interaction'),
        ]),
      );
      expect(fromUpdate.some((m) => m.attributes['ldr-deadletter-reason']!.includes('/occurredAt'))).toBe(
        true,
      );
    } finally {
      await dl.close();
    }
  });
});
