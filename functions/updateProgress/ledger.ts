import type pg from 'pg';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import type { Interaction } from '../../shared/domain/interaction.ts';
import {
  apply,
  emptyState,
  type Mastery,
  mastery,
  type Struggle,
  type TopicState,
} from '../../shared/domain/mastery.ts';
import { subjectOf, TOPICS, TYPES } from '../../shared/events.ts';

export interface TopicRow extends Mastery {
  studentId: string;
  topic: string;
  instanceId: string;
  version: number;
  interactions: number;
  updatedAt: string;
}

export interface OutboxRow {
  topic: string;
  orderingKey: string;
  event: LdrEvent;
}

/** The data of `learnflow.progress.updated.v1` (shared/event-schemas.ts describes it). */
export const progressData = (i: Interaction, m: Mastery, previousMastery: number, version: number) => ({
  studentId: i.studentId,
  instanceId: i.instanceId,
  topic: i.topic,
  mastery: m.mastery,
  previousMastery,
  level: m.level,
  components: m.components,
  interactionId: i.id,
  version,
});

/** The data of `learnflow.struggle.detected.v1`. */
export const struggleData = (i: Interaction, s: Struggle, day: string) => ({
  studentId: i.studentId,
  instanceId: i.instanceId,
  topic: i.topic,
  reason: s.reason,
  detail: s.detail,
  day,
  interactionId: i.id,
});

/** What the ledger holds for one learner and topic: the state the next interaction is applied to. */
interface Known {
  state: TopicState;
  mastery: number;
  level: string;
  version: number;
}

const NONE: Known = { state: emptyState(), mastery: 0, level: 'beginner', version: 0 };

/**
 * The last row this process wrote or saw per learner and topic, so the next interaction of a learner
 * usually needs no read: a stale entry only costs a conflict answer (which carries the current row).
 * Rows are never deleted while functions run (`npm run reset` refuses a running room), so an entry at the
 * row's version holds the row's state. Bounded: emptied when it reaches MAX_KNOWN entries.
 */
const known = new Map<string, Known>();
const MAX_KNOWN = 20_000;
const remember = (key: string, k: Known) => {
  if (known.size >= MAX_KNOWN) known.clear();
  known.set(key, k);
};

interface CurrentRow {
  instance_id: string;
  state: TopicState;
  mastery: number;
  level: string;
  components: Mastery['components'];
  version: number;
  updated_at: string;
}

/**
 * The events one applied interaction announces: its progress event when mastery or level change (and on the
 * learner's first interaction of the topic), and a struggle event per detected struggle (the ledger keeps
 * only those whose alert is new for the day, by `reason`). Ids derive from the interaction's ce-id. Pure:
 * the bus ceiling (bench/ceiling.ts) announces exactly these too.
 */
export function derivedEvents(
  ceId: string,
  i: Interaction,
  before: { mastery: number; level: string; version: number },
  m: Mastery,
  version: number,
  struggles: Struggle[],
  day: string,
): Array<OutboxRow & { reason?: string }> {
  const out: Array<OutboxRow & { reason?: string }> = [];
  const ext = { 'ldr-instance': i.instanceId, 'ldr-sponsor': i.sponsor, 'ldr-kind': i.kind };
  const time = new Date().toISOString();
  const event = (id: string, type: string, data: unknown): LdrEvent => ({
    id,
    source: '/ldr/functions/updateProgress',
    type,
    time,
    subject: subjectOf(i.studentId),
    data,
    extensions: ext,
  });
  if (before.mastery !== m.mastery || before.level !== m.level || before.version === 0) {
    out.push({
      topic: TOPICS.progress,
      orderingKey: i.studentId,
      event: event(`${ceId}.progress`, TYPES.progress, progressData(i, m, before.mastery, version)),
    });
  }
  for (const s of struggles) {
    out.push({
      reason: s.reason,
      topic: TOPICS.struggle,
      orderingKey: i.studentId,
      event: event(`${ceId}.struggle.${s.reason}`, TYPES.struggle, struggleData(i, s, day)),
    });
  }
  return out;
}

interface ApplyAnswer {
  status: 'applied' | 'duplicate' | 'conflict';
  current: CurrentRow | null;
  pending: Array<{ topic: string; ordering_key: string; attributes: Omit<LdrEvent, 'data'>; data: unknown }>;
}

/**
 * The history in PostgreSQL is the ledger that makes progress exactly-once. One statement
 * (`ldr_apply_interaction`, migration 004) does it all in one transaction: the interaction (keyed by learner
 * and id: ids are scoped to the learner, SPEC §3) is inserted only if new, the learner's topic row advances
 * only if it is still at the version the new state was computed from (else the current row comes back and
 * the state is computed again), the daily snapshot and struggle alerts (once per learner, topic, reason and
 * day) are written, and the events to announce go to the outbox. A duplicate, concurrent or replayed
 * delivery finds the id and changes nothing. The answer also carries the learner's unsent outbox rows.
 */
export async function applyInteraction(
  pool: pg.Pool,
  i: Interaction,
  /** the interaction's ce-id (unique across learners); the events it causes derive their ids from it */
  ceId: string,
): Promise<{ applied: boolean; row: TopicRow; pending: OutboxRow[] }> {
  const key = `${i.studentId}\u0000${i.topic}`;
  const day = new Date(i.occurredAt).toISOString().slice(0, 10);
  const interaction = JSON.stringify({
    event_id: i.id,
    student_id: i.studentId,
    instance_id: i.instanceId,
    topic: i.topic,
    kind: i.kind,
    sponsor: i.sponsor ?? null,
    occurred_at: i.occurredAt,
    payload: i.payload,
    artifacts: i.artifacts ?? [],
    ce_id: ceId,
  });
  let before = known.get(key) ?? NONE;
  for (let attempt = 0; ; attempt++) {
    const { state, struggles } = apply(before.state, i);
    const m = mastery(state);
    const version = before.version + 1;
    const outbox = derivedEvents(ceId, i, before, m, version, struggles, day);
    const { rows } = await pool.query(
      'SELECT ldr_apply_interaction($1, $2, $3, $4, $5, $6, $7, $8, $9) AS r',
      [
        before.version,
        interaction,
        JSON.stringify(state),
        m.mastery,
        m.level,
        JSON.stringify(m.components),
        day,
        JSON.stringify(struggles),
        JSON.stringify(
          outbox.map((o) => ({
            event_id: o.event.id,
            topic: o.topic,
            ordering_key: o.orderingKey,
            attributes: { ...o.event, data: undefined },
            data: o.event.data,
            reason: o.reason ?? null,
          })),
        ),
      ],
    );
    const r = rows[0].r as ApplyAnswer;
    const cur = r.current;
    if (cur) {
      remember(key, {
        state: cur.state,
        mastery: Number(cur.mastery),
        level: cur.level,
        version: Number(cur.version),
      });
    }
    if (r.status === 'conflict') {
      // another delivery advanced the row (or this process had not seen it): compute again from it
      if (!cur || attempt >= 20) throw new Error(`could not apply ${i.id}: topic row keeps changing`);
      before = known.get(key)!;
      continue;
    }
    if (!cur) throw new Error(`no topic row for ${i.studentId}/${i.topic} after ${r.status}`);
    return {
      applied: r.status === 'applied',
      row: {
        studentId: i.studentId,
        topic: i.topic,
        instanceId: cur.instance_id,
        mastery: Number(cur.mastery),
        level: cur.level as Mastery['level'],
        components: cur.components,
        version: Number(cur.version),
        interactions: cur.state.interactions,
        updatedAt: new Date(cur.updated_at).toISOString(),
      },
      pending: r.pending.map((o) => ({
        topic: o.topic,
        orderingKey: o.ordering_key,
        event: { ...o.attributes, data: o.data },
      })),
    };
  }
}

export async function markSent(pool: pg.Pool, eventIds: string[]) {
  if (eventIds.length)
    await pool.query('UPDATE outbox SET sent_at = now() WHERE event_id = ANY($1)', [eventIds]);
}

/**
 * The relay's claim: up to `limit` unsent rows created more than `olderThanMs` ago, oldest first, locked
 * FOR UPDATE SKIP LOCKED (concurrent relays take disjoint rows and never wait for each other). `publish`
 * returns the event ids it published; those are marked sent in the same transaction, which also
 * releases the locks. Rows it did not publish stay unsent for the next run.
 */
export async function relayUnsent(
  pool: pg.Pool,
  opts: { limit: number; olderThanMs: number },
  publish: (rows: OutboxRow[]) => Promise<string[]>,
): Promise<{ claimed: number; sent: number }> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query(
      `SELECT event_id, topic, ordering_key, attributes, data FROM outbox
       WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $1::double precision / 1000)
       ORDER BY created_at, event_id LIMIT $2 FOR UPDATE SKIP LOCKED`,
      [opts.olderThanMs, opts.limit],
    );
    const claimed: OutboxRow[] = rows.map((r) => ({
      topic: r.topic,
      orderingKey: r.ordering_key,
      event: { ...r.attributes, data: r.data },
    }));
    const sent = claimed.length ? await publish(claimed) : [];
    if (sent.length)
      await client.query('UPDATE outbox SET sent_at = now() WHERE event_id = ANY($1) AND sent_at IS NULL', [
        sent,
      ]);
    await client.query('COMMIT');
    return { claimed: claimed.length, sent: sent.length };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** Deletes up to `limit` rows sent more than `retentionMs` ago; returns how many. Never touches unsent rows. */
export async function pruneSent(
  pool: pg.Pool,
  opts: { retentionMs: number; limit: number },
): Promise<number> {
  const { rowCount } = await pool.query(
    `DELETE FROM outbox WHERE event_id IN (
       SELECT event_id FROM outbox
       WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => $1::double precision / 1000)
       LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    [opts.retentionMs, opts.limit],
  );
  return rowCount ?? 0;
}
