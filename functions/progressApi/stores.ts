import type { Firestore } from '@google-cloud/firestore';
import type pg from 'pg';
import type { Kind } from '../../shared/domain/interaction.ts';
import type { Level } from '../../shared/domain/mastery.ts';
import {
  type Alert,
  type HistoryItem,
  type HistoryQuery,
  type LearnerPresence,
  type ProgressReader,
  StoreUnavailable,
  type TopicProgress,
} from './handler.ts';
import type { LedgerEntry } from './instance-view.ts';

/**
 * Adapters of the ProgressReader port: the current-state view in Firestore (written by updateProgress'
 * projection) and the ledger in PostgreSQL (shared/migrations/001_init.sql).
 */
export function progressReader(db: Firestore, pool: pg.Pool): ProgressReader {
  return { ...firestoreTopics(db), ...pgLedger(pool) };
}

/** Firestore rejects these as document ids; no learner document can exist under them. */
const unusableDocId = (id: string) => id === '.' || id === '..' || /^__.*__$/.test(id);

export function firestoreTopics(db: Firestore): Pick<ProgressReader, 'topics'> {
  return {
    async topics(studentId) {
      if (unusableDocId(studentId)) return [];
      const snap = await guard(() => db.collection('students').doc(studentId).collection('topics').get());
      return snap.docs
        .map((d): TopicProgress => {
          const v = d.data();
          const c = (v.components ?? {}) as Record<string, unknown>;
          return {
            topic: String(v.topic ?? d.id),
            mastery: Number(v.mastery ?? 0),
            level: String(v.level ?? 'beginner') as Level,
            components: {
              exercise: Number(c.exercise ?? 0),
              quiz: Number(c.quiz ?? 0),
              quality: Number(c.quality ?? 0),
              consistency: Number(c.consistency ?? 0),
            },
            interactions: Number(v.interactions ?? 0),
            updatedAt: String(v.updatedAt ?? ''),
          };
        })
        .sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
    },
  };
}

/** occurred_at as RFC 3339 UTC with microseconds: lossless, unlike a JS Date, so cursors are exact. */
const OCCURRED_AT_TEXT = `to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** "…:05.123000Z" → "…:05.123Z" (what Date#toISOString gives); sub-millisecond digits are kept. */
const displayTime = (micros: string) => micros.replace(/\.(\d{3})000Z$/, '.$1Z');

export function pgLedger(pool: pg.Pool): Omit<ProgressReader, 'topics'> {
  return {
    async presence(studentId, instance): Promise<LearnerPresence> {
      const { rows } = await guard(() =>
        pool.query(
          // held: interactions came through the instance. Not topic_state.instance_id, which only says
          // which instance posted last and would let one post make an instance a reader.
          `SELECT EXISTS (SELECT 1 FROM topic_state WHERE student_id = $1) AS known,
                  $2::text IS NOT NULL
                    AND EXISTS (SELECT 1 FROM interactions WHERE student_id = $1 AND instance_id = $2) AS held`,
          [studentId, instance ?? null],
        ),
      );
      return { known: rows[0].known === true, heldBy: rows[0].held === true };
    },

    async history(studentId, q: HistoryQuery): Promise<HistoryItem[]> {
      const params: unknown[] = [studentId];
      const where = ['student_id = $1'];
      const param = (v: unknown) => {
        params.push(v);
        return `$${params.length}`;
      };
      if (q.instance) where.push(`instance_id = ${param(q.instance)}`);
      if (q.from) where.push(`occurred_at >= ${param(q.from)}::timestamptz`);
      if (q.to) where.push(`occurred_at < ${param(q.to)}::timestamptz`);
      if (q.after) {
        where.push(
          `(occurred_at, event_id) > (${param(q.after.occurredAt)}::timestamptz, ${param(q.after.eventId)}::text)`,
        );
      }
      const { rows } = await guard(() =>
        pool.query(
          `SELECT event_id, kind, topic, sponsor, payload, artifacts, mastery_after, ${OCCURRED_AT_TEXT} AS occurred_at
             FROM interactions WHERE ${where.join(' AND ')}
            ORDER BY occurred_at, event_id LIMIT ${param(q.limit)}`,
          params,
        ),
      );
      return rows.map((r) => ({
        id: r.event_id,
        kind: r.kind as Kind,
        topic: r.topic,
        occurredAt: displayTime(r.occurred_at),
        payload: r.payload,
        artifacts: r.artifacts ?? [],
        masteryAfter: Number(r.mastery_after),
        ...(r.sponsor ? { sponsor: r.sponsor } : {}),
        position: { occurredAt: r.occurred_at, eventId: r.event_id },
      }));
    },

    async entries(studentId, instance): Promise<LedgerEntry[]> {
      const { rows } = await guard(() =>
        pool.query(
          `SELECT event_id, kind, topic, payload, occurred_at, applied_at FROM interactions
            WHERE student_id = $1 AND instance_id = $2 ORDER BY applied_at, event_id`,
          [studentId, instance],
        ),
      );
      return rows.map((r) => ({
        id: r.event_id,
        kind: r.kind as Kind,
        topic: r.topic,
        payload: r.payload,
        occurredAt: new Date(r.occurred_at).toISOString(),
        appliedAt: new Date(r.applied_at).toISOString(),
      }));
    },

    async alerts(studentId): Promise<Alert[]> {
      const { rows } = await guard(() =>
        pool.query(
          `SELECT topic, reason, day::text AS day, detail, detected_at, event_id
             FROM struggle_alerts WHERE student_id = $1
            ORDER BY day DESC, detected_at DESC, topic, reason`,
          [studentId],
        ),
      );
      return rows.map((r) => ({
        topic: r.topic,
        reason: r.reason,
        day: r.day,
        detail: r.detail,
        detectedAt: new Date(r.detected_at).toISOString(),
        interactionId: r.event_id,
      }));
    },
  };
}

/** Connection-level failures become StoreUnavailable (→ 503); anything else stays a bug (→ 500). */
async function guard<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (isUnavailable(err)) throw new StoreUnavailable((err as Error).message);
    throw err;
  }
}

const GRPC_UNAVAILABLE = 14;
const GRPC_DEADLINE_EXCEEDED = 4;
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE']);

function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as Error & { code?: unknown }).code;
  if (code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED) return true;
  if (typeof code === 'string') {
    // PostgreSQL: 08 connection exception, 53 insufficient resources, 57P0x shutdown / cannot connect now
    if (NET_CODES.has(code) || code.startsWith('08') || code.startsWith('53') || /^57P0[1-3]$/.test(code))
      return true;
  }
  // pg-pool: "timeout exceeded when trying to connect", "Connection terminated unexpectedly"
  return /timeout exceeded when trying to connect|Connection terminated/i.test(err.message);
}
