import { mayReadArtifact } from '../../shared/artifacts.ts';
import type { Principal, Verifier } from '../../shared/auth.ts';
import { requirePermission } from '../../shared/auth.ts';
import { type Bus, BusUnavailable } from '../../shared/clients.ts';
import { type Interaction, LIMITS, validateBatch } from '../../shared/domain/interaction.ts';
import { badRequest, type FieldError, forbidden, HttpError } from '../../shared/errors.ts';
import { interactionEvent, interactionEventId, TOPICS } from '../../shared/events.ts';
import { jsonBody, type Reply, type RouteContext } from '../../shared/http.ts';
import type { Logger } from '../../shared/log.ts';
import type { Artifacts, DedupWindow, RateLimiter } from '../../shared/ports.ts';
import type { InstanceSponsors } from '../../shared/registry.ts';

export const MAX_BODY_BYTES = 1024 * 1024;

export type {
  ArtifactRecord,
  Artifacts,
  DedupWindow,
  RateDecision,
  RateLimiter,
} from '../../shared/ports.ts';

export interface IngestDeps {
  verifier: Verifier;
  bus: Bus;
  limiter: RateLimiter;
  dedup: DedupWindow;
  artifacts: Artifacts;
  /** the sponsors a student's event may name: those present at the token's instance */
  sponsors: InstanceSponsors;
  log: Logger;
  limits: { studentRequestsPerMin: number; studentEventsPerMin: number; instanceEventsPerMin: number };
  now?: () => Date;
  newId: () => string;
  /**
   * How long a post waits for a concurrent post of the same event (its id claimed, not yet published) to
   * finish: done → `duplicate`; failed (claim released) → this post publishes it. Past the deadline it
   * publishes anyway (same ce-id; consumers de-duplicate), so an event is never lost to a stuck claim.
   */
  concurrentWait?: { timeoutMs: number; pollMs: number };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createIngest(deps: IngestDeps) {
  const now = deps.now ?? (() => new Date());
  const wait = deps.concurrentWait ?? { timeoutMs: 5_000, pollMs: 25 };

  return async ({ req }: RouteContext): Promise<Reply> => {
    const principal = await deps.verifier.verify(req.headers.authorization);
    if (principal.role !== 'student' && principal.role !== 'app') {
      throw forbidden(`a ${principal.role} token cannot post interactions`);
    }
    requirePermission(principal, 'interaction:write');
    if (!principal.instance) {
      // SPEC §5: the instance an event is attributed to comes from the token, never from the body
      throw forbidden(
        `a ${principal.role} token without an instance claim cannot post interactions: ` +
          'events are attributed to the app-instance named by the token',
      );
    }
    const body = readBody(req);
    const rateHeaders = await rateLimit(principal, body);
    try {
      return await accept(principal, body, rateHeaders);
    } catch (err) {
      // every answer after the rate limit was charged says how much is left, also a 400 (SPEC §4)
      if (err instanceof HttpError)
        throw new HttpError(err.status, err.title, err.detail, {
          ...err.extra,
          headers: { ...rateHeaders, ...err.extra.headers },
        });
      throw err;
    }
  };

  async function accept(
    principal: Principal,
    body: unknown,
    rateHeaders: Record<string, string>,
  ): Promise<Reply> {
    const serverIds = new Set<string>();
    const newId = () => {
      const id = deps.newId();
      serverIds.add(id);
      return id;
    };
    const result = validateBatch(body, { now: now(), newId });
    if (!result.ok) {
      if (result.tooLarge) {
        throw new HttpError(
          413,
          'Content Too Large',
          'a payload exceeds 32 KiB: upload large content through lfsProxy (POST /uploads) and reference it as an lfs:// URI in artifacts',
          { errors: result.errors },
        );
      }
      throw badRequest(`${result.errors.length} invalid field(s); nothing was published`, result.errors);
    }
    const { events, isBatch } = result;
    authorize(principal, events, isBatch);
    await checkSponsors(principal, events, isBatch);
    await checkArtifacts(principal, events, isBatch);

    // the de-duplication window, the bus and consumers all key an event by its ce-id: unique across learners
    const ceIds = events.map((e) => interactionEventId(e, serverIds.has(e.id)));
    const seen = await claim(ceIds);
    const toPublish = events.flatMap((e, k) =>
      seen.get(ceIds[k]!) === 'done' ? [] : [{ e, ceId: ceIds[k]! }],
    );
    const receivedAt = now();
    const outcomes = await Promise.allSettled(
      toPublish.map(({ e, ceId }) =>
        deps.bus.publish(TOPICS.interaction, interactionEvent(e, receivedAt, ceId), e.studentId),
      ),
    );
    const sent = toPublish.filter((_, k) => outcomes[k]!.status === 'fulfilled').map((p) => p.ceId);
    await deps.dedup
      .confirm(sent)
      .catch((err) =>
        deps.log.warn(
          { err: String(err) },
          'could not record published ids; a retry may republish (consumers are idempotent)',
        ),
      );
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failure) {
      // release the claims this post holds on what it could not publish, so that a retry publishes them
      const unsent = toPublish.filter((_, k) => outcomes[k]!.status === 'rejected').map((p) => p.ceId);
      await deps.dedup.release(unsent.filter((id) => seen.get(id) === 'new')).catch(() => {});
      const err = failure.reason;
      if (!(err instanceof BusUnavailable)) throw err;
      deps.log.error({ err: err.message }, 'event bus unavailable');
      throw new HttpError(
        503,
        'Service Unavailable',
        'the event bus is unavailable; retry with the same event ids, which is safe',
        {
          headers: { 'Retry-After': '2', ...rateHeaders },
        },
      );
    }
    const results = events.map((e, k) => ({
      id: e.id,
      status: seen.get(ceIds[k]!) === 'done' ? 'duplicate' : 'accepted',
    }));
    const duplicates = results.filter((r) => r.status === 'duplicate').length;
    return {
      status: 202,
      headers: rateHeaders,
      body: { accepted: results.length - duplicates, duplicates, results },
    };
  }

  /**
   * Claims the ids in the de-duplication window. An id another post has claimed and is still publishing
   * (`pending`) is waited for: once it is `done` this post answers `duplicate`; if that post failed and
   * released its claim, this post claims it (`new`) and publishes. Of concurrent identical posts exactly
   * one is `accepted`, and a failed first publish never loses the event.
   */
  async function claim(ids: string[]): Promise<Map<string, 'new' | 'pending' | 'done'>> {
    const seen = new Map<string, 'new' | 'pending' | 'done'>();
    let pending = ids;
    try {
      const deadline = Date.now() + wait.timeoutMs;
      for (let first = true; pending.length && (first || Date.now() < deadline); first = false) {
        if (!first) await sleep(wait.pollMs);
        for (const [id, state] of await deps.dedup.claim(pending)) seen.set(id, state);
        pending = pending.filter((id) => seen.get(id) === 'pending');
      }
      if (pending.length)
        deps.log.warn(
          { count: pending.length },
          'ids still being published by another request; publishing them too (consumers de-duplicate on ce-id)',
        );
    } catch (err) {
      deps.log.warn(
        { err: String(err) },
        'de-duplication window unavailable; publishing without it (consumers are idempotent)',
      );
      for (const id of pending) seen.set(id, 'pending');
    }
    return seen;
  }

  /** The JSON body; a body over 1 MiB is 413 with the same pointer to lfsProxy as an oversize payload. */
  function readBody(req: RouteContext['req']): unknown {
    try {
      return jsonBody(req, MAX_BODY_BYTES);
    } catch (err) {
      if (err instanceof HttpError && err.status === 413) {
        throw new HttpError(
          413,
          'Content Too Large',
          `the body exceeds ${MAX_BODY_BYTES} bytes (1 MiB): send at most ${LIMITS.batch} events per request and ` +
            'upload large content through lfsProxy (POST /uploads), referencing it as an lfs:// URI in artifacts',
        );
      }
      throw err;
    }
  }

  /**
   * SPEC §4: an app-instance token by events per minute on its instance; a student token by requests and by
   * events per minute. The headers describe the quota closest to exhaustion (the one that refused, on 429).
   */
  async function rateLimit(p: Principal, body: unknown): Promise<Record<string, string>> {
    const events =
      body && typeof body === 'object' && Array.isArray((body as { events?: unknown }).events)
        ? Math.max(1, (body as { events: unknown[] }).events.length)
        : 1;
    const quotas: Array<[key: string, cost: number, perMin: number, unit: string]> =
      p.role === 'app'
        ? [[`instance:${p.instance ?? p.sub}`, events, deps.limits.instanceEventsPerMin, 'events']]
        : [
            [`student:${p.sub}`, 1, deps.limits.studentRequestsPerMin, 'requests'],
            [`student-events:${p.sub}`, events, deps.limits.studentEventsPerMin, 'events'],
          ];
    const decisions = await Promise.all(
      quotas.map(([key, cost, perMin]) => deps.limiter.limit(key, cost, perMin)),
    );
    const known = decisions.flatMap((d, k) => (d === 'unavailable' ? [] : [{ d, unit: quotas[k]![3] }]));
    if (known.length < decisions.length)
      deps.log.warn({ key: p.role }, 'rate limiter unavailable; request let through');
    if (!known.length) return {};
    const refused = known.find((q) => !q.d.success);
    const { d, unit } =
      refused ?? known.reduce((a, b) => (b.d.remaining / b.d.limit < a.d.remaining / a.d.limit ? b : a));
    const resetSeconds = Math.max(0, Math.ceil((d.reset - now().getTime()) / 1000));
    const headers = {
      'RateLimit-Limit': String(d.limit),
      'RateLimit-Remaining': String(Math.max(0, d.remaining)),
      'RateLimit-Reset': String(resetSeconds),
      'RateLimit-Policy': known.map((q) => `${q.d.limit};w=60`).join(', '),
    };
    if (refused) {
      throw new HttpError(429, 'Too Many Requests', `rate limit of ${d.limit} ${unit} per minute exceeded`, {
        headers: { ...headers, 'Retry-After': String(Math.max(1, resetSeconds)) },
      });
    }
    return headers;
  }

  /** Who may post what (SPEC §4, §5). Both roles carry `instance` (checked before). */
  function authorize(p: Principal, events: Interaction[], isBatch: boolean) {
    const at = (i: number, field: string) => (isBatch ? `/events/${i}/${field}` : `/${field}`);
    events.forEach((e, i) => {
      if (p.role === 'student' && e.studentId !== p.sub) {
        throw forbidden(`${at(i, 'studentId')}: a student token may only post its own interactions`);
      }
      if (e.instanceId !== p.instance) {
        throw forbidden(`${at(i, 'instanceId')}: the token belongs to instance ${p.instance}`);
      }
    });
  }

  /**
   * SPEC §5: a student cannot choose the sponsor its events are attributed to. A sponsor routes an event to
   * that sponsor's partners, so a student token may name only a sponsor present at its instance (owned by a
   * partner that runs it, and so already entitled to the instance's events); the app-instance's own token
   * attributes sponsors freely (a trusted backend, accountable for what it posts).
   */
  async function checkSponsors(p: Principal, events: Interaction[], isBatch: boolean) {
    if (p.role !== 'student' || !events.some((e) => e.sponsor !== undefined)) return;
    let present: ReadonlySet<string>;
    try {
      present = await deps.sponsors.at(p.instance!);
    } catch (err) {
      deps.log.error({ err: String(err) }, 'partner registry unavailable');
      throw new HttpError(503, 'Service Unavailable', 'the partner registry is unavailable; retry later', {
        headers: { 'Retry-After': '2' },
      });
    }
    events.forEach((e, i) => {
      if (e.sponsor !== undefined && !present.has(e.sponsor)) {
        throw forbidden(
          `${isBatch ? `/events/${i}/sponsor` : '/sponsor'}: sponsor ${e.sponsor} is not present at instance ` +
            `${p.instance}; a student token may only name a sponsor of a partner running its instance ` +
            '(the app-instance attributes other sponsors with its app token)',
        );
      }
    });
  }

  /** SPEC §3: each `artifacts` URI must exist, be stored, and be readable by the sender under lfsProxy's read rule. */
  async function checkArtifacts(p: Principal, events: Interaction[], isBatch: boolean) {
    const errors: FieldError[] = [];
    await Promise.all(
      events.flatMap((e, i) =>
        (e.artifacts ?? []).map(async (uri, j) => {
          const path = isBatch ? `/events/${i}/artifacts/${j}` : `/artifacts/${j}`;
          const rec = await deps.artifacts.get(uri.slice('lfs://'.length));
          // unknown and unreadable are the same answer, as GET /objects/<id> answers 404 for both
          if (!rec || !mayReadArtifact(p, rec)) errors.push({ path, message: 'no such artifact' });
          else if (rec.state !== 'stored')
            errors.push({ path, message: `artifact is ${rec.state}, not stored` });
        }),
      ),
    );
    if (errors.length) throw badRequest('artifacts must be stored and readable by the sender', errors);
  }
}
