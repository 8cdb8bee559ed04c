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

/**
 * The history in PostgreSQL is the ledger that makes progress exactly-once: inside one transaction the
 * learner's topic row is locked, the interaction (keyed by learner and id: ids are scoped to the learner,
 * SPEC §3) is inserted only if new, the state advances, the
 * daily snapshot and struggle alerts (once per learner, topic, reason and day) are written, and the
 * events to announce go to the outbox. A duplicate, concurrent or replayed delivery finds the id and
 * changes nothing.
 */
export async function applyInteraction(
  pool: pg.Pool,
  i: Interaction,
  /** the interaction's ce-id (unique across learners); the events it causes derive their ids from it */
  ceId: string,
): Promise<{ applied: boolean; row: TopicRow }> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO topic_state (student_id, topic, instance_id, state, mastery, level, components, version, updated_at)
       VALUES ($1, $2, $3, $4, 0, 'beginner', $5, 0, now()) ON CONFLICT DO NOTHING`,
      [i.studentId, i.topic, i.instanceId, emptyState(), mastery(emptyState()).components],
    );
    const locked = await client.query(
      'SELECT state, mastery, level, version FROM topic_state WHERE student_id = $1 AND topic = $2 FOR UPDATE',
      [i.studentId, i.topic],
    );
    const before = locked.rows[0] as { state: TopicState; mastery: string; level: string; version: string };
    const dup = await client.query('SELECT 1 FROM interactions WHERE student_id = $1 AND event_id = $2', [
      i.studentId,
      i.id,
    ]);
    if (dup.rowCount) {
      await client.query('ROLLBACK');
      // read on the connection already held: asking the pool for a second one can exhaust it
      return { applied: false, row: await readRow(client, i.studentId, i.topic) };
    }
    const { state, struggles } = apply(before.state, i);
    const m = mastery(state);
    const version = Number(before.version) + 1;
    const day = new Date(i.occurredAt).toISOString().slice(0, 10);
    await client.query(
      `INSERT INTO interactions (event_id, student_id, instance_id, topic, kind, sponsor, occurred_at, payload, artifacts, mastery_after, ce_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [
        i.id,
        i.studentId,
        i.instanceId,
        i.topic,
        i.kind,
        i.sponsor ?? null,
        i.occurredAt,
        i.payload,
        i.artifacts ?? [],
        m.mastery,
        ceId,
      ],
    );
    const updated = await client.query(
      `UPDATE topic_state SET state = $3, mastery = $4, level = $5, components = $6, version = $7, instance_id = $8, updated_at = now()
       WHERE student_id = $1 AND topic = $2 RETURNING updated_at`,
      [i.studentId, i.topic, state, m.mastery, m.level, m.components, version, i.instanceId],
    );
    await client.query(
      `INSERT INTO mastery_snapshots (student_id, topic, day, mastery, level, components) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (student_id, topic, day) DO UPDATE SET mastery = excluded.mastery, level = excluded.level, components = excluded.components`,
      [i.studentId, i.topic, day, m.mastery, m.level, m.components],
    );
    const outbox: OutboxRow[] = [];
    const ext = { 'ldr-instance': i.instanceId, 'ldr-sponsor': i.sponsor, 'ldr-kind': i.kind };
    const time = new Date().toISOString();
    if (Number(before.mastery) !== m.mastery || before.level !== m.level || Number(before.version) === 0) {
      outbox.push({
        topic: TOPICS.progress,
        orderingKey: i.studentId,
        event: {
          id: `${ceId}.progress`,
          source: '/ldr/functions/updateProgress',
          type: TYPES.progress,
          time,
          subject: subjectOf(i.studentId),
          data: progressData(i, m, Number(before.mastery), version),
          extensions: ext,
        },
      });
    }
    for (const s of struggles) {
      const inserted = await client.query(
        `INSERT INTO struggle_alerts (student_id, topic, reason, day, detail, event_id) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING RETURNING 1`,
        [i.studentId, i.topic, s.reason, day, s.detail, i.id],
      );
      if (!inserted.rowCount) continue;
      outbox.push({
        topic: TOPICS.struggle,
        orderingKey: i.studentId,
        event: {
          id: `${ceId}.struggle.${s.reason}`,
          source: '/ldr/functions/updateProgress',
          type: TYPES.struggle,
          time,
          subject: subjectOf(i.studentId),
          data: struggleData(i, s, day),
          extensions: ext,
        },
      });
    }
    for (const o of outbox) {
      await client.query(
        'INSERT INTO outbox (event_id, topic, ordering_key, attributes, data) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING',
        [o.event.id, o.topic, o.orderingKey, { ...o.event, data: undefined }, JSON.stringify(o.event.data)],
      );
    }
    await client.query('COMMIT');
    return {
      applied: true,
      row: {
        studentId: i.studentId,
        topic: i.topic,
        instanceId: i.instanceId,
        version,
        interactions: state.interactions,
        updatedAt: new Date(updated.rows[0].updated_at).toISOString(),
        ...m,
      },
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

export async function readRow(
  db: pg.Pool | pg.PoolClient,
  studentId: string,
  topic: string,
): Promise<TopicRow> {
  const { rows } = await db.query(
    'SELECT instance_id, state, mastery, level, components, version, updated_at FROM topic_state WHERE student_id = $1 AND topic = $2',
    [studentId, topic],
  );
  const r = rows[0];
  return {
    studentId,
    topic,
    instanceId: r.instance_id,
    mastery: Number(r.mastery),
    level: r.level,
    components: r.components,
    version: Number(r.version),
    interactions: (r.state as TopicState).interactions,
    updatedAt: new Date(r.updated_at).toISOString(),
  };
}

/** Unsent outbox events of one learner, oldest first. */
export async function pendingOutbox(pool: pg.Pool, orderingKey: string): Promise<OutboxRow[]> {
  const { rows } = await pool.query(
    'SELECT topic, ordering_key, attributes, data FROM outbox WHERE ordering_key = $1 AND sent_at IS NULL ORDER BY created_at, event_id',
    [orderingKey],
  );
  return rows.map((r) => ({
    topic: r.topic,
    orderingKey: r.ordering_key,
    event: { ...r.attributes, data: r.data },
  }));
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
