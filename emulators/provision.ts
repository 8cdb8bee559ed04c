import type { PubSub } from '@google-cloud/pubsub';
import type { SubscriptionSpec, Topology } from '../shared/topology.ts';

const ALREADY_EXISTS = 6;
const ignoreExists = (err: { code?: number }) => {
  if (err.code !== ALREADY_EXISTS) throw err;
};

export async function ensureTopic(pubsub: PubSub, name: string) {
  await pubsub.createTopic(name).catch(ignoreExists);
}

/**
 * Creates a subscription as the topology describes it, with what the emulator can hold: ordered
 * subscriptions get no dead-letter policy here (the emulator crashes on ordered dead-lettering; the
 * bridge dead-letters function subscriptions), and filters are stored although the emulator ignores them.
 */
export async function ensureSubscription(pubsub: PubSub, topology: Topology, spec: SubscriptionSpec) {
  await ensureTopic(pubsub, spec.topic);
  const d = topology.defaults;
  const deadLetter = !spec.ordered && spec.deadLetter !== false && spec.topic !== topology.deadLetterTopic;
  await pubsub
    .topic(spec.topic)
    .createSubscription(spec.name, {
      ackDeadlineSeconds: d.ackDeadlineSeconds,
      enableMessageOrdering: spec.ordered,
      enableExactlyOnceDelivery: spec.exactlyOnce ?? false,
      retryPolicy: {
        minimumBackoff: { seconds: d.minimumBackoffSeconds },
        maximumBackoff: { seconds: d.maximumBackoffSeconds },
      },
      ...(spec.filter ? { filter: spec.filter } : {}),
      ...(deadLetter
        ? {
            deadLetterPolicy: {
              deadLetterTopic: pubsub.topic(topology.deadLetterTopic).name,
              maxDeliveryAttempts: d.maxDeliveryAttempts,
            },
          }
        : {}),
    })
    .catch(ignoreExists);
}

export async function provisionTopology(pubsub: PubSub, topology: Topology) {
  await Promise.all(topology.topics.map((t) => ensureTopic(pubsub, t.name)));
  await Promise.all(topology.subscriptions.map((s) => ensureSubscription(pubsub, topology, s)));
}
