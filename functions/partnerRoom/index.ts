import * as ff from '@google-cloud/functions-framework';
import { v1 } from '@google-cloud/pubsub';
import { z } from 'zod';
import { interactionSchema } from '../../shared/domain/interaction.ts';
import { HttpError, notFound } from '../../shared/errors.ts';
import { httpFunction, route } from '../../shared/http.ts';
import { scopedSchema } from '../../shared/partner-scope.ts';
import { PARTNERS, type Partner } from '../../shared/registry.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { loadTopology, partnerNames } from '../../shared/topology.ts';
import { createPartnerRoom, structured } from './handler.ts';

const rt = createRuntime('partnerRoom');
const topology = loadTopology();
const project = rt.config.GOOGLE_CLOUD_PROJECT;
// the PubSub client works out the emulator or production endpoint; the v1 client reuses its settings
const clientConfig = await rt.pubsub().getClientConfig();
const subscriber = new v1.SubscriberClient({
  ...clientConfig,
  port: clientConfig.port === undefined ? undefined : Number(clientConfig.port),
});
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
      const [res] = await subscriber
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
      settle(() => subscriber.acknowledge({ subscription: subscriptionOf(slug), ackIds })),
    // Releasing is idempotent: an ack id whose deadline already expired is released already. The
    // exactly-once subscription refuses the whole call for one such id, so the rest go one by one.
    async nack(slug, ackIds) {
      const release = (ids: string[]) =>
        subscriber.modifyAckDeadline({
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
  schemaUrl: (slug, type) => `/p/${slug}/schemas/${type}`,
});

const interactionJsonSchema = z.toJSONSchema(interactionSchema, { io: 'input', unrepresentable: 'any' });

ff.http(
  'partnerRoom',
  httpFunction({
    log: rt.log,
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
        if (ctx.params.type !== 'learnflow.interaction.v1') {
          return {
            status: 200,
            body: {
              $comment: 'see the manifest event type; JSON data, learner ids are learnerRef',
              type: 'object',
            },
          };
        }
        // the data as this partner receives it, not as the app posts it
        return { status: 200, body: scopedSchema(interactionJsonSchema, shareContent) };
      }),
    ],
  }),
);
