import type { Principal, Verifier } from '../../shared/auth.ts';
import { requirePermission } from '../../shared/auth.ts';
import type { Kind } from '../../shared/domain/interaction.ts';
import type { Level } from '../../shared/domain/mastery.ts';
import { badRequest, type FieldError, forbidden, HttpError, notFound } from '../../shared/errors.ts';
import type { Reply, RouteContext } from '../../shared/http.ts';
import type { Logger } from '../../shared/log.ts';
import { instanceView, type LedgerEntry } from './instance-view.ts';

/**
 * SPEC §4 progressApi: the read side of the room. Current mastery comes from the Firestore view,
 * history and struggle alerts from the PostgreSQL ledger. Who may read a learner:
 *
 * - the student themself (sub = id) and platform tokens: everything; another student → 403;
 * - app and teacher tokens whose `instance` the learner's interactions came through, and then only
 *   what came through that instance: the history rows posted through it, and mastery and alerts
 *   computed from those rows alone (instance-view.ts), never the room-wide figures that mix in what
 *   other instances posted. Posting for a learner never makes a token a reader of other instances' data;
 * - partner tokens never (403);
 * - every reader needs the permission `progress:read`.
 *
 * A learner unknown to the room and a learner the caller's instance does not hold get the same 404,
 * so an instance cannot probe for learners of other instances.
 */

export const HISTORY_LIMIT = { default: 50, max: 500 } as const;

const STUDENT_ID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;
const EVENT_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** RFC 3339 date-time with seconds and an offset (Z or ±hh:mm); fractions up to microseconds. */
const RFC3339_RE =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?(?:Z|[+-](\d{2}):(\d{2}))$/i;

/**
 * A real calendar instant in the room's range: RFC 3339 syntax, year 2000–9999 (SPEC §3: nothing the
 * room holds is older), a day that exists in its month, hours 0–23, no leap second, an offset of at
 * most ±14:59. `Date.parse` alone is not enough: it rolls 2026-02-30 over to March and accepts year
 * 0000, which PostgreSQL then refuses (22008) — a client mistake must not become a 500.
 */
export function isCalendarTimestamp(s: string): boolean {
  const m = RFC3339_RE.exec(s);
  if (!m) return false;
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, offH = 0, offM = 0] = m
    .slice(1)
    .map((x) => Number(x ?? 0));
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return (
    year >= 2000 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59 &&
    offH <= 14 &&
    offM <= 59
  );
}

export interface TopicProgress {
  topic: string;
  mastery: number;
  level: Level;
  components: { exercise: number; quiz: number; quality: number; consistency: number };
  /** how many interactions the topic's mastery is based on */
  interactions: number;
  updatedAt: string;
}

/** A position in the history: the (occurred_at, event_id) of the last row seen. */
export interface HistoryPosition {
  /** RFC 3339 UTC with microseconds, exactly as PostgreSQL stores it */
  occurredAt: string;
  eventId: string;
}

export interface HistoryQuery {
  /** only rows posted through this app-instance (scoped readers) */
  instance?: string;
  /** inclusive lower bound, RFC 3339 */
  from?: string;
  /** exclusive upper bound, RFC 3339 */
  to?: string;
  after?: HistoryPosition;
  limit: number;
}

export interface HistoryItem {
  id: string;
  kind: Kind;
  topic: string;
  occurredAt: string;
  payload: Record<string, unknown>;
  artifacts: string[];
  masteryAfter: number;
  sponsor?: string;
  /** position of this row, for the cursor; not part of the response */
  position: HistoryPosition;
}

export interface Alert {
  topic: string;
  reason: string;
  day: string;
  detail: string;
  detectedAt: string;
  interactionId: string;
}

export interface LearnerPresence {
  /** the learner has history in the room */
  known: boolean;
  /** interactions for the learner came through the given instance */
  heldBy: boolean;
}

/** Port: what the room knows about a learner. Adapters in stores.ts. */
export interface ProgressReader {
  /** Firestore `students/{id}/topics`, sorted by topic. */
  topics(studentId: string): Promise<TopicProgress[]>;
  /** PostgreSQL: is the learner known, and does `instance` hold them. */
  presence(studentId: string, instance: string | undefined): Promise<LearnerPresence>;
  /** PostgreSQL `interactions` in (occurred_at, event_id) order, at most `q.limit` rows. */
  history(studentId: string, q: HistoryQuery): Promise<HistoryItem[]>;
  /** PostgreSQL `struggle_alerts`, newest first. */
  alerts(studentId: string): Promise<Alert[]>;
  /** PostgreSQL `interactions` posted through `instance`, in the order they were applied. */
  entries(studentId: string, instance: string): Promise<LedgerEntry[]>;
}

/** A store could not be reached; the request may be retried. */
export class StoreUnavailable extends Error {}

export interface ProgressApiDeps {
  verifier: Verifier;
  reader: ProgressReader;
  log: Logger;
}

// --- cursor -------------------------------------------------------------------------------------

/** The opaque cursor: base64url of the JSON array [occurredAt, eventId] of the last row returned. */
export const encodeCursor = (p: HistoryPosition): string =>
  Buffer.from(JSON.stringify([p.occurredAt, p.eventId]), 'utf8').toString('base64url');

export function decodeCursor(cursor: string): HistoryPosition | undefined {
  if (!/^[A-Za-z0-9_-]{1,512}$/.test(cursor)) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 2) return undefined;
  const [occurredAt, eventId] = v as unknown[];
  if (typeof occurredAt !== 'string' || !isCalendarTimestamp(occurredAt)) return undefined;
  if (typeof eventId !== 'string' || !EVENT_ID_RE.test(eventId)) return undefined;
  return { occurredAt, eventId };
}

// --- request parsing ----------------------------------------------------------------------------

export function parseStudentId(raw: string): string {
  if (!STUDENT_ID_RE.test(raw)) {
    throw badRequest('the student id in the path is invalid', [
      { path: '/params/id', message: 'must be 1–128 characters of A–Z, a–z, 0–9, . _ : @ or -' },
    ]);
  }
  return raw;
}

/** Unknown and repeated parameters, one error each. */
function queryShapeErrors(query: URLSearchParams, allowed: readonly string[]): FieldError[] {
  const errors: FieldError[] = [];
  const seen = new Set<string>();
  for (const key of query.keys()) {
    const path = `/query/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    if (!allowed.includes(key)) errors.push({ path, message: 'unknown parameter' });
    else if (seen.has(key)) errors.push({ path, message: 'must be given at most once' });
    seen.add(key);
  }
  return errors.filter((e, i) => errors.findIndex((x) => x.path === e.path) === i);
}

/** Rejects query parameters a route does not take (400 naming each). */
export function parseQuery(query: URLSearchParams, allowed: readonly string[]) {
  const errors = queryShapeErrors(query, allowed);
  if (errors.length) throw badRequest(`${errors.length} invalid query parameter(s)`, errors);
}

/**
 * Validates the history query: names every offending parameter. Unknown and repeated parameters are
 * rejected rather than ignored, so a typo (`limt=10`) is not silently answered with the default.
 */
export function parseHistoryQuery(query: URLSearchParams): HistoryQuery {
  const errors = queryShapeErrors(query, ['from', 'to', 'limit', 'cursor']);
  const q: HistoryQuery = { limit: HISTORY_LIMIT.default };
  const limit = query.get('limit');
  if (limit !== null) {
    if (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > HISTORY_LIMIT.max) {
      errors.push({ path: '/query/limit', message: `must be an integer from 1 to ${HISTORY_LIMIT.max}` });
    } else q.limit = Number(limit);
  }
  for (const key of ['from', 'to'] as const) {
    const v = query.get(key);
    if (v === null) continue;
    if (!isCalendarTimestamp(v)) {
      errors.push({
        path: `/query/${key}`,
        message:
          'must be an RFC 3339 timestamp of a real date, year 2000 or later, with seconds and a time zone (Z or ±hh:mm)',
      });
    } else q[key] = v;
  }
  if (q.from && q.to && Date.parse(q.from) > Date.parse(q.to)) {
    errors.push({ path: '/query/to', message: 'must not be before from' });
  }
  const cursor = query.get('cursor');
  if (cursor !== null) {
    const after = decodeCursor(cursor);
    if (!after) errors.push({ path: '/query/cursor', message: 'is not a cursor this API returned' });
    else q.after = after;
  }
  if (errors.length) throw badRequest(`${errors.length} invalid query parameter(s)`, errors);
  return q;
}

// --- handlers -----------------------------------------------------------------------------------

const NOT_FOUND = 'no such learner';

export function createProgressApi(deps: ProgressApiDeps) {
  const { reader } = deps;

  /** Token, role, permission and path checks every route shares; 401 / 403 / 400. */
  async function admit(ctx: RouteContext): Promise<{ principal: Principal; studentId: string }> {
    const principal = await deps.verifier.verify(ctx.req.headers.authorization);
    if (principal.role === 'partner') throw forbidden('partner tokens cannot read learner progress');
    requirePermission(principal, 'progress:read');
    const studentId = parseStudentId(ctx.params.id ?? '');
    if (principal.role === 'student' && principal.sub !== studentId) {
      throw forbidden('a student token may only read its own progress');
    }
    return { principal, studentId };
  }

  /**
   * 404 unless the learner is known and, for app and teacher tokens, has interactions posted through
   * the caller's instance. Returns that instance for scoped readers, undefined for full readers.
   */
  async function requireVisible(p: Principal, studentId: string): Promise<{ instance?: string }> {
    const scoped = p.role === 'app' || p.role === 'teacher';
    const presence = await read(() => reader.presence(studentId, scoped ? p.instance : undefined));
    if (!presence.known || (scoped && !presence.heldBy)) throw notFound(NOT_FOUND);
    return scoped ? { instance: p.instance } : {};
  }

  /** Mastery and alerts of the learner as seen through one instance. */
  const viewThrough = async (studentId: string, instance: string) =>
    instanceView(await read(() => reader.entries(studentId, instance)));

  async function read<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (err) {
      if (!(err instanceof StoreUnavailable)) throw err;
      deps.log.warn({ err: err.message }, 'progress store unavailable');
      throw new HttpError(503, 'Service Unavailable', 'a progress store is unavailable; retry later', {
        headers: { 'Retry-After': '2' },
      });
    }
  }

  return {
    /** GET /students/:id */
    async progress(ctx: RouteContext): Promise<Reply> {
      const { principal, studentId } = await admit(ctx);
      parseQuery(ctx.query, []);
      const { instance } = await requireVisible(principal, studentId);
      const topics = instance
        ? (await viewThrough(studentId, instance)).topics
        : await read(() => reader.topics(studentId));
      return { status: 200, body: { studentId, topics } };
    },

    /** GET /students/:id/history?from&to&limit&cursor */
    async history(ctx: RouteContext): Promise<Reply> {
      const { principal, studentId } = await admit(ctx);
      const q = parseHistoryQuery(ctx.query);
      const { instance } = await requireVisible(principal, studentId);
      // one row more than asked tells whether another page follows
      const rows = await read(() =>
        reader.history(studentId, { ...q, ...(instance ? { instance } : {}), limit: q.limit + 1 }),
      );
      const page = rows.slice(0, q.limit);
      const last = page.at(-1);
      return {
        status: 200,
        body: {
          items: page.map(({ position: _position, ...item }) => item),
          ...(rows.length > q.limit && last ? { nextCursor: encodeCursor(last.position) } : {}),
        },
      };
    },

    /** GET /students/:id/alerts */
    async alerts(ctx: RouteContext): Promise<Reply> {
      const { principal, studentId } = await admit(ctx);
      parseQuery(ctx.query, []);
      const { instance } = await requireVisible(principal, studentId);
      const alerts = instance
        ? (await viewThrough(studentId, instance)).alerts
        : await read(() => reader.alerts(studentId));
      return { status: 200, body: { alerts } };
    },
  };
}
