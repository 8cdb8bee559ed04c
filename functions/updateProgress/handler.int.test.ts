import { randomUUID } from 'node:crypto';
import { Firestore } from '@google-cloud/firestore';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bus } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import { clientEventId, interactionEvent } from '../../shared/events.ts';
import { suite } from '../../tests/helpers.ts';
import { createUpdateProgress } from './handler.ts';
import { firestoreProgressView, type ProgressView } from './projection.ts';

/** The handler against the suite's real PostgreSQL and Firestore, with faults injected at its ports. */
let pool: pg.Pool;
let db: Firestore;
const published: Array<{ topic: string; event: LdrEvent }> = [];
const bus: Bus = {
  async publish(topic, event) {
    published.push({ topic, event });
    return 'm';
  },
  async publishRaw() {
    return 'm';
  },
};

beforeAll(() => {
  pool = new pg.Pool({ connectionString: suite().env.DATABASE_URL, max: 4 });
  db = new Firestore({ projectId: suite().projectId, host: suite().env.FIRESTORE_EMULATOR_HOST, ssl: false });
});
afterAll(async () => {
  await pool.end();
  await db.terminate();
});

const quiz = (
  studentId: string,
  score: number,
  id = `q-${randomUUID()}`,
  occurredAt = new Date().toISOString(),
) =>
  interactionEvent(
    {
      id,
      studentId,
      instanceId: 'inst-a',
      kind: 'quiz_answer',
      occurredAt,
      topic: 'general',
      payload: { quizId: 'q', correct: score >= 0.5, score },
    } as never,
    new Date(),
    clientEventId(studentId, id),
  );

describe('updateProgress handler', () => {
  it('heals a crash between the PostgreSQL commit and the Firestore write on redelivery', async () => {
    const student = `s-${randomUUID()}`;
    const real = firestoreProgressView(db);
    let crash = true;
    const flaky: ProgressView = {
      async project(row) {
        if (crash) {
          crash = false;
          throw new Error('instance died after the commit');
        }
        return real.project(row);
      },
    };
    const handle = createUpdateProgress({ pool, view: flaky, bus });
    const ev = quiz(student, 0.4);
    await expect(handle(ev)).rejects.toThrow('instance died');
    const doc = db.collection('students').doc(student).collection('topics').doc('general');
    expect((await doc.get()).exists).toBe(false); // the view lags: exactly the crash window
    const again = await handle(ev); // the redelivery
    expect(again.applied).toBe(false);
    const snap = await doc.get();
    // 100 × (0.3 × 0.4 + 0.1 × 1/7) = 12 + 1.43 = 13.4
    expect(snap.get('mastery')).toBe(13.4);
    expect(snap.get('interactions')).toBe(1);
    const rows = await pool.query('SELECT count(*) FROM interactions WHERE student_id = $1', [student]);
    expect(Number(rows.rows[0].count)).toBe(1);
    // the progress event and the low-score struggle decided in the ledger go out once the flush runs
    const ids = published.filter((p) => p.event.subject === `students/${student}`).map((p) => p.event.id);
    expect(ids.sort()).toEqual([`${ev.id}.progress`, `${ev.id}.struggle.low_quiz_score`].sort());
  });

  it('applies concurrent duplicate deliveries once', async () => {
    const student = `s-${randomUUID()}`;
    const handle = createUpdateProgress({ pool, view: firestoreProgressView(db), bus });
    const ev = quiz(student, 1);
    const results = await Promise.all(Array.from({ length: 8 }, () => handle(ev)));
    expect(results.filter((r) => r.applied)).toHaveLength(1);
    const snap = await db.collection('students').doc(student).collection('topics').doc('general').get();
    expect(snap.get('interactions')).toBe(1);
    expect(snap.get('version')).toBe(1);
  });

  it('concurrent deliveries of different interactions of one learner each count once, computed in turn', async () => {
    // each is computed from the version this process last saw; all but one find the row moved on and
    // compute again from the row the ledger answers with
    const student = `s-${randomUUID()}`;
    const handle = createUpdateProgress({ pool, view: firestoreProgressView(db), bus });
    const events = [0.2, 0.9, 0.7, 0.4, 1].map((s) => quiz(student, s));
    const results = await Promise.all(events.map((ev) => handle(ev)));
    expect(results.every((r) => r.applied)).toBe(true);
    expect(results.map((r) => r.row.version).sort()).toEqual([1, 2, 3, 4, 5]);
    const snap = await db.collection('students').doc(student).collection('topics').doc('general').get();
    expect(snap.get('interactions')).toBe(5);
    expect(snap.get('version')).toBe(5);
    // 100 × (0.3 × mean(0.2, 0.9, 0.7, 0.4, 1) + 0.1 × 1/7) = 19.2 + 1.43 = 20.6: every score counted once
    expect(snap.get('mastery')).toBe(20.6);
  });

  it('applies on top of a row another instance advanced since this one last saw it', async () => {
    const student = `s-${randomUUID()}`;
    const handle = createUpdateProgress({ pool, view: firestoreProgressView(db), bus });
    await handle(quiz(student, 0.2));
    // another instance applies two interactions: this process's remembered version is now stale
    await pool.query(
      `UPDATE topic_state SET version = version + 2, state = jsonb_set(state, '{interactions}', '3'),
       updated_at = now() WHERE student_id = $1`,
      [student],
    );
    const r = await handle(quiz(student, 0.9));
    expect(r.applied).toBe(true);
    expect(r.row.version).toBe(4);
    expect(r.row.interactions).toBe(4);
  });

  it('the view never goes back, whichever instance last wrote the document', async () => {
    // each view writes without a read when it can (create; update on its own last write's update time)
    const student = `s-${randomUUID()}`;
    const a = firestoreProgressView(db);
    const b = firestoreProgressView(db);
    const row = (version: number) => ({
      studentId: student,
      topic: 'general',
      instanceId: 'inst-a',
      version,
      interactions: version,
      mastery: version,
      level: 'beginner' as const,
      components: { exercise: 0, quiz: version, quality: 0, consistency: 0 },
      updatedAt: new Date().toISOString(),
    });
    const doc = db.collection('students').doc(student).collection('topics').doc('general');
    const version = async () => (await doc.get()).get('version');
    await a.project(row(1));
    await b.project(row(2)); // b has not written it: its create fails, it reads and updates
    expect(await version()).toBe(2);
    await a.project(row(3)); // a's last write is not the document's: its update fails, it reads
    expect(await version()).toBe(3);
    await b.project(row(2)); // a redelivery of an older row
    await a.project(row(2));
    expect(await version()).toBe(3);
    await b.project(row(4));
    await a.project(row(3));
    expect(await version()).toBe(4);
    await a.project(row(5)); // stale again, and newer: applied after a read
    expect(await version()).toBe(5);
  });

  it('a replay of a learner’s whole history changes nothing', async () => {
    const student = `s-${randomUUID()}`;
    const handle = createUpdateProgress({ pool, view: firestoreProgressView(db), bus });
    const events = [0.2, 0.9, 0.7].map((s) => quiz(student, s));
    for (const ev of events) await handle(ev);
    const before = (
      await db.collection('students').doc(student).collection('topics').doc('general').get()
    ).data();
    for (const ev of events) expect((await handle(ev)).applied).toBe(false);
    const after = (
      await db.collection('students').doc(student).collection('topics').doc('general').get()
    ).data();
    expect(after).toEqual(before);
    // 100 × (0.3 × 0.6 + 0.1 × 1/7) = 18 + 1.43 = 19.4
    expect(after?.mastery).toBe(19.4);
  });

  it('counts the same client id once per learner: two learners, two interactions, distinct derived ce-ids', async () => {
    const [a, b] = [`s-${randomUUID()}`, `s-${randomUUID()}`];
    const shared = `shared-${randomUUID().slice(0, 8)}`;
    const handle = createUpdateProgress({ pool, view: firestoreProgressView(db), bus });
    const [evA, evB] = [quiz(a, 0.9, shared), quiz(b, 0.3, shared)];
    expect(evA.id).not.toBe(evB.id);
    expect((await handle(evA)).applied).toBe(true);
    expect((await handle(evB)).applied).toBe(true);
    expect((await handle(evB)).applied).toBe(false);
    const rows = await pool.query(
      'SELECT student_id, ce_id FROM interactions WHERE event_id = $1 ORDER BY ce_id',
      [shared],
    );
    expect(rows.rows.map((r) => [r.student_id, r.ce_id]).sort()).toEqual(
      [
        [a, evA.id],
        [b, evB.id],
      ].sort(),
    );
    for (const [s, ev] of [
      [a, evA],
      [b, evB],
    ] as const) {
      const snap = await db.collection('students').doc(s).collection('topics').doc('general').get();
      expect(snap.get('interactions')).toBe(1);
      const ids = published.filter((p) => p.event.subject === `students/${s}`).map((p) => p.event.id);
      expect(ids).toContain(`${ev.id}.progress`);
    }
  });

  it('records the earliest and latest occurredAt ingest accepts (year 2000, a +14:00 offset)', async () => {
    const student = `s-${randomUUID()}`;
    const handle = createUpdateProgress({ pool, view: firestoreProgressView(db), bus });
    for (const at of ['2000-01-01T00:00:00Z', '2000-01-01T14:00:00+14:00', '2024-02-29T23:59:59.999-12:00'])
      expect((await handle(quiz(student, 0.8, `t-${randomUUID()}`, at))).applied).toBe(true);
  });
});
