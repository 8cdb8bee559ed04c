import { mayReadArtifact } from '../../shared/artifacts.ts';
import type { Principal, Verifier } from '../../shared/auth.ts';
import { requirePermission } from '../../shared/auth.ts';
import { type Bus, BusUnavailable } from '../../shared/clients.ts';
import { type Interaction, LIMITS, validateBatch } from '../../shared/domain/interaction.ts';
import { badRequest, type FieldError, forbidden, HttpError } from '../../shared/errors.ts';
import { interactionEvent, interactionEventId, TOPICS } from '../../shared/events.ts';
import { jsonBody, type Reply, type RouteContext } from '../../shared/http.ts';
import type { Logger } from '../../shared/log.ts';
import type {
  Admission,
  AdmissionGate,
  Artifacts,
  ClaimState,
  DedupWindow,
  Quota,
} from '../../shared/ports.ts';
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
  /** deny-list, quotas and claims in one round trip (redisAdmission; tests compose fakes with portsAdmission) */
  admission: AdmissionGate;
  /** the de-duplication window the admission claims in: confirmations, releases, the concurrent-post wait */
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

/** An HTTP error with the rate-limit headers added (they describe the quota this request was charged to). */
function withRateHeaders(err: unknown, headers: Record<string, string>): unknown {
  if (!(err instanceof HttpError) || !Object.keys(headers).length) return err;
  return new HttpError(err.status, err.title, err.detail, {
    ...err.extra,
    headers: { ...headers, ...err.extra.headers },
  });
}

export function createIngest(deps: IngestDeps) {
  const now = deps.now ?? (() => new Date());
  const wait = deps.concurrentWait ?? { timeoutMs: 5_000, pollMs: 25 };

  const admission = deps.admission;
  const verifier = deps.verifier;
  // with `authenticate`, the deny-list is checked inside the admission round trip, not by the verifier
  const foldRevocation = !!(verifier.authenticate && verifier.settleRevocation);

  return async ({ req }: RouteContext): Promise<Reply> => {
    const authorization = req.headers.authorization;
    const principal = foldRevocation
      ? await verifier.authenticate!(authorization)
      : await verifier.verify(authorization);
    const refuseRole = (err: HttpError) =>
      // a revoked token is 401 whatever it asks for: check the deny-list before answering 403 (cold path)
      foldRevocation ? verifier.verify(authorization).then(() => Promise.reject(err)) : Promise.reject(err);
    if (principal.role !== 'student' && principal.role !== 'app') {
      return refuseRole(forbidden(`a ${principal.role} token cannot post interactions`));
    }
    try {
      requirePermission(principal, 'interaction:write');
    } catch (err) {
      return refuseRole(err as HttpError);
    }
    if (!principal.instance) {
      // SPEC §5: the instance an event is attributed to comes from the token, never from the body
      return refuseRole(
        forbidden(
          `a ${principal.role} token without an instance claim cannot post interactions: ` +
            'events are attributed to the app-instance named by the token',
        ),
      );
    }
    const body = readBody(req);

    // everything that needs no I/O first, so that one round trip admits the request (or counts it refused)
    const serverIds = new Set<string>();
    const newId = () => {
      const id = deps.newId();
      serverIds.add(id);
      return id;
    };
    const result = validateBatch(body, { now: now(), newId });
    let problem: unknown;
    if (!result.ok) {
      problem = result.tooLarge
        ? new HttpError(
            413,
            'Content Too Large',
            'a payload exceeds 32 KiB: upload large content through lfsProxy (POST /uploads) and reference it as an lfs:// URI in artifacts',
            { errors: result.errors },
          )
        : badRequest(`${result.errors.length} invalid field(s); nothing was published`, result.errors);
    } else {
      try {
        authorize(principal, result.events, result.isBatch);
      } catch (err) {
        problem = err;
      }
    }
    // the de-duplication window, the bus and consumers all key an event by its ce-id: unique across learners
    const ceIds =
      result.ok && problem === undefined
        ? result.events.map((e) => interactionEventId(e, serverIds.has(e.id)))
        : [];
    const quotas = quotasFor(principal, body);
    const admitted = await admission.admit({
      jti: foldRevocation ? principal.jti : undefined,
      quotas,
      claim: ceIds,
    });
    if (foldRevocation) {
      if (admitted.revocation === 'unavailable' && principal.jti)
        deps.log.warn({}, 'revocation list unavailable; degraded');
      verifier.settleRevocation!(principal, admitted.revocation);
    }
    const rateHeaders = rateLimit(quotas, admitted.limits);
    // every answer after the quotas were charged says how much is left, also a 4xx (SPEC §4)
    if (problem !== undefined || !result.ok) throw withRateHeaders(problem, rateHeaders);
    const { events, isBatch } = result;
    const seen = await claim(ceIds, admitted.claims);
    try {
      await checkSponsors(principal, events, isBatch);
      await checkArtifacts(principal, events, isBatch);
    } catch (err) {
      // refused after claiming: forget the claims, so that a corrected retry is not taken for a duplicate
      await deps.dedup.release(ceIds.filter((id) => seen.get(id) === 'new')).catch(() => {});
      throw withRateHeaders(err, rateHeaders);
    }

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
    // not awaited: the answer does not wait for it (a concurrent duplicate waits for `done` by polling),
    // and the Redis adapter sends the confirmations of concurrent requests in one pipeline
    deps.dedup
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
  };

  /**
   * Claims the ids in the de-duplication window. An id another post has claimed and is still publishing
   * (`pending`) is waited for: once it is `done` this post answers `duplicate`; if that post failed and
   * released its claim, this post claims it (`new`) and publishes. Of concurrent identical posts exactly
   * one is `accepted`, and a failed first publish never loses the event.
   */
  async function claim(ids: string[], first: Admission['claims']): Promise<Map<string, ClaimState>> {
    const seen = new Map<string, ClaimState>();
    if (first === 'unavailable') {
      if (ids.length)
        deps.log.warn(
          {},
          'de-duplication window unavailable; publishing without it (consumers are idempotent)',
        );
      for (const id of ids) seen.set(id, 'pending');
      return seen;
    }
    for (const [id, state] of first) seen.set(id, state);
    let pending = ids.filter((id) => seen.get(id) === 'pending');
    try {
      const deadline = Date.now() + wait.timeoutMs;
      while (pending.length && Date.now() < deadline) {
        await sleep(wait.pollMs);
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

  /** SPEC §4: an app-instance token by events per minute on its instance; a student token by requests and by events. */
  function quotasFor(p: Principal, body: unknown): Quota[] {
    const events =
      body && typeof body === 'object' && Array.isArray((body as { events?: unknown }).events)
        ? Math.max(1, (body as { events: unknown[] }).events.length)
        : 1;
    return p.role === 'app'
      ? [
          {
            key: `instance:${p.instance ?? p.sub}`,
            cost: events,
            perMinute: deps.limits.instanceEventsPerMin,
          },
        ]
      : [
          { key: `student:${p.sub}`, cost: 1, perMinute: deps.limits.studentRequestsPerMin },
          { key: `student-events:${p.sub}`, cost: events, perMinute: deps.limits.studentEventsPerMin },
        ];
  }

  /** The RateLimit-* headers describe the quota closest to exhaustion (the one that refused, on 429). */
  function rateLimit(quotas: Quota[], decisions: Admission['limits']): Record<string, string> {
    const unit = (q: Quota) => (q.key.startsWith('student:') ? 'requests' : 'events');
    const known = decisions.flatMap((d, k) => (d === 'unavailable' ? [] : [{ d, unit: unit(quotas[k]!) }]));
    if (known.length < decisions.length) deps.log.warn({}, 'rate limiter unavailable; request let through');
    if (!known.length) return {};
    const refused = known.find((q) => !q.d.success);
    const { d, unit: u } =
      refused ?? known.reduce((a, b) => (b.d.remaining / b.d.limit < a.d.remaining / a.d.limit ? b : a));
    const resetSeconds = Math.max(0, Math.ceil((d.reset - now().getTime()) / 1000));
    const headers = {
      'RateLimit-Limit': String(d.limit),
      'RateLimit-Remaining': String(Math.max(0, d.remaining)),
      'RateLimit-Reset': String(resetSeconds),
      'RateLimit-Policy': known.map((q) => `${q.d.limit};w=60`).join(', '),
    };
    if (refused) {
      throw new HttpError(429, 'Too Many Requests', `rate limit of ${d.limit} ${u} per minute exceeded`, {
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
