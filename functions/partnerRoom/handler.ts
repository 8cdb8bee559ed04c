import { z } from 'zod';
import type { Verifier } from '../../shared/auth.ts';
import { badRequest, notFound } from '../../shared/errors.ts';
import { jsonBody, type Reply, type RouteContext } from '../../shared/http.ts';
import type { Partner } from '../../shared/registry.ts';

export interface PulledMessage {
  ackId: string;
  /** structured-mode CloudEvent rebuilt from the binary-mode message */
  event: Record<string, unknown>;
}

/** Port: the partner's own pull subscription. */
export interface PartnerStream {
  pull(slug: string, max: number): Promise<PulledMessage[]>;
  ack(slug: string, ackIds: string[]): Promise<void>;
  nack(slug: string, ackIds: string[]): Promise<void>;
}

export interface PartnerRoomDeps {
  verifier: Verifier;
  partners: { get(slug: string): Promise<Partner | undefined> };
  stream: PartnerStream;
  content: { sponsoredBy(sponsors: string[]): Promise<unknown[]> };
  subscriptionOf: (slug: string) => string;
  schemaUrl: (slug: string, type: string) => string;
}

export const ackBody = z.strictObject({ ackIds: z.array(z.string().min(1).max(2048)).min(1).max(1000) });

/**
 * The custom URL of each partner. Only a partner token whose `partner` claim names this slug is
 * served; any other slug — unknown or someone else's — is the same 404.
 */
export function createPartnerRoom(deps: PartnerRoomDeps) {
  const partnerFor = async ({ req, params }: RouteContext): Promise<Partner> => {
    const p = await deps.verifier.verify(req.headers.authorization);
    if (p.role !== 'partner' || p.partner !== params.slug) throw notFound(`no partner room ${params.slug}`);
    const partner = await deps.partners.get(params.slug!);
    if (!partner) throw notFound(`no partner room ${params.slug}`);
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
            pull: `/p/${p.slug}/pull?max=N`,
            ack: `/p/${p.slug}/ack`,
            nack: `/p/${p.slug}/nack`,
            content: `/p/${p.slug}/content`,
          },
        },
      };
    },
    async pull(ctx: RouteContext): Promise<Reply> {
      const p = await partnerFor(ctx);
      const raw = ctx.query.get('max') ?? '100';
      const max = Number(raw);
      if (!/^\d+$/.test(raw) || max < 1 || max > 500) {
        throw badRequest('max must be an integer from 1 to 500', [
          { path: '/query/max', message: 'must be 1–500' },
        ]);
      }
      const messages = await deps.stream.pull(p.slug, max);
      return { status: 200, body: { messages } };
    },
    async ack(ctx: RouteContext): Promise<Reply> {
      const p = await partnerFor(ctx);
      const ids = ackIds(ctx);
      await deps.stream.ack(p.slug, ids);
      return { status: 200, body: { acknowledged: ids.length } };
    },
    async nack(ctx: RouteContext): Promise<Reply> {
      const p = await partnerFor(ctx);
      const ids = ackIds(ctx);
      await deps.stream.nack(p.slug, ids);
      return { status: 200, body: { released: ids.length } };
    },
    async content(ctx: RouteContext): Promise<Reply> {
      const p = await partnerFor(ctx);
      return { status: 200, body: { content: await deps.content.sponsoredBy(p.sponsors) } };
    },
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
