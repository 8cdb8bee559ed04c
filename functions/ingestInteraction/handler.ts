import type { Principal, Verifier } from '../../shared/auth.ts';
import { requirePermission } from '../../shared/auth.ts';
import { type Bus, BusUnavailable } from '../../shared/clients.ts';
import { type Interaction, LIMITS, validateBatch } from '../../shared/domain/interaction.ts';
import { badRequest, type FieldError, forbidden, HttpError } from '../../shared/errors.ts';
import { interactionEvent, TOPICS } from '../../shared/events.ts';
import { jsonBody, type Reply, type RouteContext } from '../../shared/http.ts';
import type { Logger } from '../../shared/log.ts';
import type { Artifacts, DedupWindow, RateLimiter } from '../../shared/ports.ts';

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
  log: Logger;
  limits: { studentRequestsPerMin: number; instanceEventsPerMin: number };
  now?: () => Date;
  newId: () => string;
}

export function createIngest(deps: IngestDeps) {
  const now = deps.now ?? (() => new Date());

  return async ({ req }: RouteContext): Promise<Reply> => {
    const principal = await deps.verifier.verify(req.headers.authorization);
    if (principal.role !== 'student' && principal.role !== 'app') {
      throw forbidden(`a ${principal.role} token cannot post interactions`);
    }
    requirePermission(principal, 'interaction:write');
    const body = readBody(req);
    const rateHeaders = await rateLimit(principal, body);

    const result = validateBatch(body, { now: now(), newId: deps.newId });
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
    await checkArtifacts(principal, events, isBatch);

    const ids = events.map((e) => e.id);
    let seen: Map<string, 'new' | 'pending' | 'done'>;
    try {
      seen = await deps.dedup.claim(ids);
    } catch (err) {
      deps.log.warn(
        { err: String(err) },
        'de-duplication window unavailable; publishing without it (consumers are idempotent)',
      );
      seen = new Map(ids.map((id) => [id, 'new']));
    }
    const toPublish = events.filter((e) => seen.get(e.id) !== 'done');
    const receivedAt = now();
    try {
      await Promise.all(
        toPublish.map((e) =>
          deps.bus.publish(TOPICS.interaction, interactionEvent(e, receivedAt), e.studentId),
        ),
      );
    } catch (err) {
      if (!(err instanceof BusUnavailable)) throw err;
      deps.log.error({ err: err.message }, 'event bus unavailable');
      await deps.dedup
        .release(toPublish.filter((e) => seen.get(e.id) === 'new').map((e) => e.id))
        .catch(() => {});
      throw new HttpError(
        503,
        'Service Unavailable',
        'the event bus is unavailable; retry with the same event ids, which is safe',
        {
          headers: { 'Retry-After': '2', ...rateHeaders },
        },
      );
    }
    await deps.dedup
      .confirm(toPublish.map((e) => e.id))
      .catch((err) =>
        deps.log.warn(
          { err: String(err) },
          'could not record published ids; a retry may republish (consumers are idempotent)',
        ),
      );
    const results = events.map((e) => ({
      id: e.id,
      status: seen.get(e.id) === 'done' ? 'duplicate' : 'accepted',
    }));
    const duplicates = results.filter((r) => r.status === 'duplicate').length;
    return {
      status: 202,
      headers: rateHeaders,
      body: { accepted: results.length - duplicates, duplicates, results },
    };
  };

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

  async function rateLimit(p: Principal, body: unknown): Promise<Record<string, string>> {
    const events =
      body && typeof body === 'object' && Array.isArray((body as { events?: unknown }).events)
        ? Math.max(1, (body as { events: unknown[] }).events.length)
        : 1;
    const [key, cost, perMin] =
      p.role === 'app'
        ? [`instance:${p.instance ?? p.sub}`, events, deps.limits.instanceEventsPerMin]
        : [`student:${p.sub}`, 1, deps.limits.studentRequestsPerMin];
    const d = await deps.limiter.limit(key, cost, perMin);
    if (d === 'unavailable') {
      deps.log.warn({ key: p.role }, 'rate limiter unavailable; request let through');
      return {};
    }
    const resetSeconds = Math.max(0, Math.ceil((d.reset - now().getTime()) / 1000));
    const headers = {
      'RateLimit-Limit': String(d.limit),
      'RateLimit-Remaining': String(Math.max(0, d.remaining)),
      'RateLimit-Reset': String(resetSeconds),
      'RateLimit-Policy': `${d.limit};w=60`,
    };
    if (!d.success) {
      throw new HttpError(
        429,
        'Too Many Requests',
        `rate limit of ${d.limit} ${p.role === 'app' ? 'events' : 'requests'} per minute exceeded`,
        {
          headers: { ...headers, 'Retry-After': String(Math.max(1, resetSeconds)) },
        },
      );
    }
    return headers;
  }

  function authorize(p: Principal, events: Interaction[], isBatch: boolean) {
    const at = (i: number, field: string) => (isBatch ? `/events/${i}/${field}` : `/${field}`);
    events.forEach((e, i) => {
      if (p.role === 'student' && e.studentId !== p.sub) {
        throw forbidden(`${at(i, 'studentId')}: a student token may only post its own interactions`);
      }
      if (p.role === 'student' && p.instance && e.instanceId !== p.instance) {
        throw forbidden(`${at(i, 'instanceId')}: the token belongs to instance ${p.instance}`);
      }
      if (p.role === 'app' && e.instanceId !== p.instance) {
        throw forbidden(`${at(i, 'instanceId')}: an app token may only post for its own instance`);
      }
    });
  }

  async function checkArtifacts(p: Principal, events: Interaction[], isBatch: boolean) {
    const errors: FieldError[] = [];
    await Promise.all(
      events.flatMap((e, i) =>
        (e.artifacts ?? []).map(async (uri, j) => {
          const path = isBatch ? `/events/${i}/artifacts/${j}` : `/artifacts/${j}`;
          const rec = await deps.artifacts.get(uri.slice('lfs://'.length));
          // Instance sharing goes by the token's (verified) instance, not the event's claimed instanceId,
          // which a student token without an instance claim could set to any instance.
          const readable =
            rec &&
            (rec.ownerId === e.studentId ||
              rec.ownerId === p.sub ||
              (rec.instanceId !== undefined && rec.instanceId === p.instance));
          if (!rec || !readable) errors.push({ path, message: 'no such artifact' });
          else if (rec.state !== 'stored')
            errors.push({ path, message: `artifact is ${rec.state}, not stored` });
        }),
      ),
    );
    if (errors.length) throw badRequest('artifacts must be stored and readable by the sender', errors);
  }
}
