import { z } from 'zod';
import { requirePermission, type Verifier } from '../../shared/auth.ts';
import { badRequest, type FieldError, notFound } from '../../shared/errors.ts';
import { jsonBody, type Reply, type RouteContext } from '../../shared/http.ts';
import type { Partner } from '../../shared/registry.ts';

export interface PulledMessage {
  ackId: string;
  /** structured-mode CloudEvent rebuilt from the binary-mode message */
  event: Record<string, unknown>;
}

/** Port: the partner's own pull subscription. */
export interface PartnerStream {
  /** up to `max` messages; waits up to `waitSeconds` for the first one (a bounded long poll) */
  pull(slug: string, max: number, waitSeconds: number): Promise<PulledMessage[]>;
  ack(slug: string, ackIds: string[]): Promise<void>;
  /** releases the messages for redelivery; returns how many ack ids were actually released */
  nack(slug: string, ackIds: string[]): Promise<number>;
}

/** `?wait=` of a pull: how long to hold the request open for the first message (SPEC §4 partnerRoom). */
export const PULL_WAIT = { default: 2, max: 20 } as const;

export interface PartnerRoomDeps {
  verifier: Verifier;
  partners: { get(slug: string): Promise<Partner | undefined> };
  stream: PartnerStream;
  content: { sponsoredBy(sponsors: string[]): Promise<unknown[]> };
  subscriptionOf: (slug: string) => string;
  schemaUrl: (slug: string, type: string) => string;
  /** for tests; default real time */
  clock?: { now(): number; sleep(ms: number): Promise<void> };
}

const realClock = {
  now: () => Date.now(),
  sleep: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
};
/** pause between two empty pulls of a long poll */
const REPOLL_MS = 250;

export const ackBody = z.strictObject({ ackIds: z.array(z.string().min(1).max(2048)).min(1).max(1000) });

/**
 * The custom URL of each partner. Only a partner token whose `partner` claim names this slug is
 * served; any other slug — unknown or someone else's — is the same 404.
 */
export function createPartnerRoom(deps: PartnerRoomDeps) {
  /**
   * The partner the token names, when it names this slug (else 404, whatever the reason); the stream
   * routes also need the permission `partner:pull` (403), and every route refuses query parameters it
   * does not take, or takes once, by name (400).
   */
  const partnerFor = async (
    { req, params, query }: RouteContext,
    opts: { stream?: boolean; query?: readonly string[] } = {},
  ): Promise<Partner> => {
    const p = await deps.verifier.verify(req.headers.authorization);
    if (p.role !== 'partner' || p.partner !== params.slug) throw notFound(`no partner room ${params.slug}`);
    const partner = await deps.partners.get(params.slug!);
    if (!partner) throw notFound(`no partner room ${params.slug}`);
    if (opts.stream) requirePermission(p, 'partner:pull');
    const errors: FieldError[] = [];
    const seen = new Set<string>();
    for (const key of query.keys()) {
      const path = `/query/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      if (errors.some((e) => e.path === path)) continue;
      if (!(opts.query ?? []).includes(key)) errors.push({ path, message: 'unknown parameter' });
      else if (seen.has(key)) errors.push({ path, message: 'must be given at most once' });
      seen.add(key);
    }
    if (errors.length) throw badRequest(`${errors.length} invalid query parameter(s)`, errors);
    return partner;
  };
  const ackIds = (ctx: RouteContext) => {
    const parsed = ackBody.safeParse(jsonBody(ctx.req, 1024 * 1024));
    if (!parsed.success) {
      throw badRequest(
        'invalid ack body',
        parsed.error.issues.flatMap((i) =>
          i.code === 'unrecognized_keys'
            ? i.keys.map((k) => ({ path: `/${[...i.path, k].join('/')}`, message: 'unknown field' }))
            : [{ path: `/${i.path.join('/')}`, message: i.message }],
        ),
      );
    }
    return parsed.data.ackIds;
  };

  return {
    async manifest(ctx: RouteContext): Promise<Reply> {
      const p = await partnerFor(ctx);
      return {
        status: 200,
        body: {
          slug: p.slug,
          displayName: p.displayName,
          subscription: deps.subscriptionOf(p.slug),
          eventTypes: p.eventTypes,
          shareContent: p.shareContent,
          schemas: Object.fromEntries(p.eventTypes.map((t) => [t, deps.schemaUrl(p.slug, t)])),
          endpoints: {
            pull: `/p/${p.slug}/pull?max=N&wait=S`,
            ack: `/p/${p.slug}/ack`,
            nack: `/p/${p.slug}/nack`,
            content: `/p/${p.slug}/content`,
          },
        },
      };
    },
    async pull(ctx: RouteContext): Promise<Reply> {
      const p = await partnerFor(ctx, { stream: true, query: ['max', 'wait'] });
      const errors: FieldError[] = [];
      const int = (key: string, fallback: number, min: number, max: number) => {
        const raw = ctx.query.get(key);
        if (raw === null) return fallback;
        if (!/^\d{1,3}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
          errors.push({ path: `/query/${key}`, message: `must be ${min}–${max}` });
        }
        return Number(raw);
      };
      const max = int('max', 100, 1, 500);
      const wait = int('wait', PULL_WAIT.default, 0, PULL_WAIT.max);
      if (errors.length) throw badRequest(`${errors.length} invalid query parameter(s)`, errors);
      // Bounded long poll: Pub/Sub may answer a pull empty before its deadline (the emulator always
      // does), so pull again until a message arrives, `wait` seconds pass or the caller hangs up.
      const clock = deps.clock ?? realClock;
      const deadline = clock.now() + wait * 1000;
      let messages = await deps.stream.pull(p.slug, max, wait);
      while (!messages.length && !ctx.req.socket?.destroyed) {
        const left = deadline - clock.now();
        if (left <= 0) break;
        await clock.sleep(Math.min(REPOLL_MS, left));
        messages = await deps.stream.pull(p.slug, max, Math.max(0, (deadline - clock.now()) / 1000));
      }
      return { status: 200, body: { messages } };
    },
    async ack(ctx: RouteContext): Promise<Reply> {
      const p = await partnerFor(ctx, { stream: true });
      const ids = ackIds(ctx);
      await deps.stream.ack(p.slug, ids);
      return { status: 200, body: { acknowledged: ids.length } };
    },
    async nack(ctx: RouteContext): Promise<Reply> {
      const p = await partnerFor(ctx, { stream: true });
      const ids = ackIds(ctx);
      return { status: 200, body: { released: await deps.stream.nack(p.slug, ids) } };
    },
    async content(ctx: RouteContext): Promise<Reply> {
      const p = await partnerFor(ctx);
      const docs = (await deps.content.sponsoredBy(p.sponsors)) as Array<Record<string, unknown>>;
      return {
        status: 200,
        body: { content: docs.filter((d) => d.kind !== 'signal').map((d) => listed(p, d)) },
      };
    },
  };
}

/**
 * A sponsored content record as its partner may see it (the rules of the partner copies, SPEC §8): no
 * signals (they address one learner, and reach the partner pseudonymised on its stream), no instances
 * it does not run, no publishing principal, and no body unless `shareContent`.
 */
function listed(p: Partner, doc: Record<string, unknown>): Record<string, unknown> {
  const { publishedBy: _by, body, instances, audience, ...rest } = doc;
  const own = (v: unknown) => (Array.isArray(v) ? v.filter((i) => p.instances.includes(i as string)) : v);
  return {
    ...rest,
    ...(instances !== undefined ? { instances: own(instances) } : {}),
    ...(audience !== undefined ? { audience: own(audience) } : {}),
    ...(p.shareContent && body !== undefined ? { body } : {}),
  };
}

/** Rebuilds a structured CloudEvent from Pub/Sub attributes and data (SPEC §3 binary mode). */
export function structured(attributes: Record<string, string>, data: Buffer): Record<string, unknown> {
  const ev: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(attributes)) {
    if (k.startsWith('ce-')) ev[k.slice(3)] = v;
    else if (k === 'content-type') ev.datacontenttype = v;
    else ev[k.replace(/[^a-z0-9]/g, '')] = v; // extension names are lower-case alphanumerics
  }
  try {
    ev.data = JSON.parse(data.toString('utf8'));
  } catch {
    ev.data_base64 = data.toString('base64');
  }
  return ev;
}
