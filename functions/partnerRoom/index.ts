import { v1 } from '@google-cloud/pubsub';
import { HttpError, notFound } from '../../shared/errors.ts';
import { partnerEventSchema } from '../../shared/event-schemas.ts';
import { httpFunction, route } from '../../shared/http.ts';
import { PARTNERS, type Partner } from '../../shared/registry.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { serveHttp } from '../../shared/serve.ts';
import { loadTopology, partnerNames } from '../../shared/topology.ts';
import { createPartnerRoom, structured } from './handler.ts';
import { openapi } from './openapi.ts';

const rt = createRuntime('partnerRoom');
const topology = loadTopology();
const project = rt.config.GOOGLE_CLOUD_PROJECT;
// the PubSub client works out the emulator or production endpoint; the v1 client reuses its settings
// (made on first use: working them out may ask the metadata server)
let subscriberClient: Promise<v1.SubscriberClient> | undefined;
const subscriber = () => {
  subscriberClient ??= rt
    .pubsub()
    .getClientConfig()
    .then((c) => new v1.SubscriberClient({ ...c, port: c.port === undefined ? undefined : Number(c.port) }));
  return subscriberClient;
};
const subscriptionOf = (slug: string) =>
  `projects/${project}/subscriptions/${partnerNames(topology, slug).subscription.name}`;
const db = rt.firestore();

/** The subscription is exactly-once: an ack id that expired or was already used is refused as a client error. */
async function settle(call: () => Promise<unknown>) {
  try {
    await call();
  } catch (err) {
    const code = (err as { code?: number }).code;
    if (code === 3 || code === 9) {
      throw new HttpError(409, 'Conflict', 'some ack ids are expired or already acknowledged; pull again', {
        errors: [{ path: '/ackIds', message: 'expired or already used' }],
      });
    }
    throw err;
  }
}

const room = createPartnerRoom({
  verifier: rt.verifier(),
  partners: {
    async get(slug) {
      const snap = await db.collection(PARTNERS).doc(slug).get();
      return snap.exists ? (snap.data() as Partner) : undefined;
    },
  },
  stream: {
    // one pull of the handler's bounded long poll: Pub/Sub may hold it until a message arrives; the call
    // deadline ends it after `wait` seconds with nothing (DEADLINE_EXCEEDED); at least 200 ms
    async pull(slug, max, wait) {
      const [res] = await (await subscriber())
        .pull(
          { subscription: subscriptionOf(slug), maxMessages: max },
          { timeout: Math.max(wait * 1000, 200), retry: null },
        )
        .catch((err) => {
          if ((err as { code?: number }).code === 4) return [{ receivedMessages: [] }];
          throw err;
        });
      return (res.receivedMessages ?? []).map((m) => ({
        ackId: m.ackId!,
        event: structured(
          (m.message?.attributes ?? {}) as Record<string, string>,
          Buffer.from(m.message?.data ?? ''),
        ),
      }));
    },
    ack: (slug, ackIds) =>
      settle(async () => (await subscriber()).acknowledge({ subscription: subscriptionOf(slug), ackIds })),
    // Releasing is idempotent: an ack id whose deadline already expired is released already. The
    // exactly-once subscription refuses the whole call for one such id, so the rest go one by one.
    async nack(slug, ackIds) {
      const client = await subscriber();
      const release = (ids: string[]) =>
        client.modifyAckDeadline({
          subscription: subscriptionOf(slug),
          ackIds: ids,
          ackDeadlineSeconds: 0,
        });
      try {
        await release(ackIds);
        return ackIds.length;
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code !== 3 && code !== 9) throw err;
        let released = 0;
        for (const id of ackIds) {
          if (
            await release([id]).then(
              () => true,
              () => false,
            )
          )
            released++;
        }
        return released;
      }
    },
  },
  content: {
    async sponsoredBy(sponsors) {
      if (!sponsors.length) return [];
      const snap = await db.collection('content').where('sponsor', 'in', sponsors.slice(0, 30)).get();
      return snap.docs
        .map((d) => d.data())
        .sort((a, b) => String(b.publishedAt).localeCompare(String(a.publishedAt)));
    },
  },
  subscriptionOf,
  // absolute links: partners read the manifest from their own custom domain or the function URL
  schemaUrl: (slug, type) => `${rt.config.PUBLIC_BASE_URL ?? ''}/p/${slug}/schemas/${type}`,
});

serveHttp(
  'partnerRoom',
  httpFunction({
    log: rt.log,
    cors: rt.config.CORS_ORIGINS,
    openapi,
    health: rt.health(['pubsub', 'firestore']),
    routes: [
      route('GET', '/p/:slug', room.manifest),
      route('POST', '/p/:slug/pull', room.pull),
      route('POST', '/p/:slug/ack', room.ack),
      route('POST', '/p/:slug/nack', room.nack),
      route('GET', '/p/:slug/content', room.content),
      route('GET', '/p/:slug/schemas/:type', async (ctx) => {
        const manifest = await room.manifest(ctx); // same authorization as the manifest
        const { shareContent, eventTypes } = manifest.body as { shareContent: boolean; eventTypes: string[] };
        if (!eventTypes.includes(ctx.params.type!))
          throw notFound(`no schema ${ctx.params.type} for this partner`);
        // the data as this partner receives it (pseudonymised; free text only with shareContent)
        return {
          status: 200,
          body: partnerEventSchema(ctx.params.type as Parameters<typeof partnerEventSchema>[0], shareContent),
        };
      }),
    ],
  }),
);
