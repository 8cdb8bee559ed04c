import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Bus, BusUnavailable, createBus } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import { interactionEvent } from '../../shared/events.ts';
import { pubsubClient, suite } from '../../tests/helpers.ts';
import { createOutboxRelay, createUpdateProgress } from './handler.ts';
import type { ProgressView } from './projection.ts';

/**
 * The outbox relay against the suite's real PostgreSQL. Rows are left unsent by a bus that fails after
 * the ledger commit. The relay sees the whole shared outbox: rows of other tests go on to the suite's
 * real Pub/Sub (as the relay would publish them), rows of this file are only recorded.
 */
const run = `ob-${randomUUID().slice(0, 8)}`;
const mine = (id: string) => id.startsWith(run);

let pool: pg.Pool;
let realBus: Bus;
const pubsub = pubsubClient();
const view: ProgressView = { project: async () => {} };

/** Records this file's publishes; `failing` ids (or all of this file's, when `down`) throw. */
class RecordingBus implements Bus {
  published: Array<{ topic: string; id: string; orderingKey?: string }> = [];
  failing = new Set<string>();
  down = false;
  async publish(topic: string, event: LdrEvent, orderingKey?: string) {
    if (!mine(event.id)) return realBus.publish(topic, event, orderingKey);
    if (this.down || this.failing.has(event.id))
      throw new BusUnavailable(`publish to ${topic} failed: 14 UNAVAILABLE`);
    this.published.push({ topic, id: event.id, orderingKey });
    return 'm';
  }
  async publishRaw(): Promise<string> {
    throw new Error('not used');
  }
  ids() {
    return this.published.map((p) => p.id);
  }
}

beforeAll(() => {
  pool = new pg.Pool({ connectionString: suite().env.DATABASE_URL, max: 6 });
  realBus = createBus(pubsub);
});
afterAll(async () => {
  await pool.end();
  await pubsub.close();
});

let seq = 0;
/** A low quiz score: its ledger transaction writes two outbox rows, progress then struggle. */
const quiz = (studentId: string, id = `${run}-${++seq}`) =>
  interactionEvent(
    {
      id,
      studentId,
      instanceId: 'inst-a',
      kind: 'quiz_answer',
      occurredAt: new Date().toISOString(),
      topic: 'general',
      payload: { quizId: 'q', correct: false, score: 0.2 },
    } as never,
    new Date(),
    // a ce-id equal to the id (as for server-assigned ids), so this file's events are recognisable
    id,
  );
const rowsOf = (ev: LdrEvent) => [`${ev.id}.progress`, `${ev.id}.struggle.low_quiz_score`];

/** Applies the interactions with the bus down after the commit: their outbox rows stay unsent. */
async function leaveUnsent(bus: RecordingBus, events: LdrEvent[]) {
  bus.down = true;
  const handle = createUpdateProgress({ pool, view, bus });
  for (const ev of events) await expect(handle(ev)).rejects.toBeInstanceOf(BusUnavailable);
  bus.down = false;
  expect((await unsentOf(events.flatMap(rowsOf))).sort()).toEqual(events.flatMap(rowsOf).sort());
}

const unsentOf = async (ids: string[]) =>
  (
    await pool.query('SELECT event_id FROM outbox WHERE event_id = ANY($1) AND sent_at IS NULL', [ids])
  ).rows.map((r) => r.event_id as string);

/** Runs rounds of the relays side by side until none of `ids` is unsent (the shared outbox may hold a backlog). */
async function untilSent(
  relays: Array<ReturnType<typeof createOutboxRelay>>,
  ids: string[],
  timeoutMs = 20_000,
) {
  const deadline = Date.now() + timeoutMs;
  while ((await unsentOf(ids)).length) {
    if (Date.now() > deadline) throw new Error(`still unsent: ${(await unsentOf(ids)).join(', ')}`);
    await Promise.all(relays.map((relay) => relay({ olderThanMs: 0, limit: 5 })));
  }
}

describe('outbox relay', () => {
  it('publishes rows left unsent with their ce-ids, once, and only when old enough', async () => {
    const bus = new RecordingBus();
    const relay = createOutboxRelay({ pool, bus });
    const student = `s-${randomUUID()}`;
    const ev = quiz(student);
    await leaveUnsent(bus, [ev]);

    // too young: their own delivery may still be publishing them
    await relay({ olderThanMs: 60_000 });
    expect(bus.ids()).toEqual([]);

    await untilSent([relay], rowsOf(ev));
    expect(bus.published).toEqual([
      { topic: 'learnflow.progress.updated', id: `${ev.id}.progress`, orderingKey: student },
      { topic: 'learnflow.struggle.detected', id: `${ev.id}.struggle.low_quiz_score`, orderingKey: student },
    ]);

    // a second run has nothing of ours left to publish
    await relay({ olderThanMs: 0 });
    expect(bus.ids()).toHaveLength(2);
  });

  it('keeps a learner’s order: a failed row holds back that learner’s later rows, not other learners’', async () => {
    const bus = new RecordingBus();
    const relay = createOutboxRelay({ pool, bus });
    const [a, b] = [quiz(`s-${randomUUID()}`), quiz(`s-${randomUUID()}`)];
    await leaveUnsent(bus, [a, b]);
    bus.failing.add(`${a.id}.progress`);
    const first = await relay({ olderThanMs: 0, limit: 10_000 });
    expect(first.failed).toBeGreaterThanOrEqual(2); // a's progress failed; a's struggle was not tried
    expect(bus.ids()).toEqual(rowsOf(b));
    expect(await unsentOf(rowsOf(a))).toHaveLength(2);
    bus.failing.clear();
    await untilSent([relay], rowsOf(a));
    expect(bus.ids()).toEqual([...rowsOf(b), ...rowsOf(a)]); // each learner's progress before its struggle
  });

  it('concurrent relays publish each row once', async () => {
    const bus = new RecordingBus();
    const events = Array.from({ length: 6 }, () => quiz(`s-${randomUUID()}`));
    await leaveUnsent(bus, events);
    const want = events.flatMap(rowsOf);
    await untilSent(
      Array.from({ length: 3 }, () => createOutboxRelay({ pool, bus })),
      want,
    );
    expect(bus.ids().sort()).toEqual([...want].sort());
  });

  it('prunes sent rows past the retention, and never an unsent row', async () => {
    const bus = new RecordingBus();
    const relay = createOutboxRelay({ pool, bus });
    const [old, recent, unsent] = [
      quiz(`s-${randomUUID()}`),
      quiz(`s-${randomUUID()}`),
      quiz(`s-${randomUUID()}`),
    ];
    await leaveUnsent(bus, [old, recent, unsent]);
    await pool.query(
      `UPDATE outbox SET sent_at = now() - interval '8 days', created_at = now() - interval '8 days' WHERE event_id = ANY($1)`,
      [rowsOf(old)],
    );
    // written 8 days ago but sent only 6 days ago: within the retention, which counts from sending
    await pool.query(
      `UPDATE outbox SET sent_at = now() - interval '6 days', created_at = now() - interval '8 days' WHERE event_id = ANY($1)`,
      [rowsOf(recent)],
    );
    // a relay part that takes nothing, so the unsent rows are still unsent while pruning runs
    const r = await relay({ olderThanMs: 365 * 86_400_000 });
    expect(r.pruned).toBeGreaterThanOrEqual(2);
    const { rows } = await pool.query('SELECT event_id, sent_at FROM outbox WHERE event_id = ANY($1)', [
      [old, recent, unsent].flatMap(rowsOf),
    ]);
    expect(rows.map((x) => x.event_id).sort()).toEqual([...rowsOf(recent), ...rowsOf(unsent)].sort());
    expect(
      rows
        .filter((x) => x.sent_at === null)
        .map((x) => x.event_id)
        .sort(),
    ).toEqual(rowsOf(unsent).sort());
    expect(bus.ids()).toEqual([]);
  });
});
