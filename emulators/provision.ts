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
 *
 * The emulator (0.8.20) gives an ordered subscription neither retry back-off nor a usable dead-letter
 * policy (a nack is redelivered at once, `deliveryAttempt` stays 0, and ordered dead-lettering crashes
 * it), while an unordered one honours both and counts attempts. `retryOverOrder` makes that trade for
 * a consumer's subscription: unordered locally, with the topology's retry and dead-letter policy.
 */
export async function ensureSubscription(
  pubsub: PubSub,
  topology: Topology,
  spec: SubscriptionSpec,
  opts: { retryOverOrder?: boolean; backoffSeconds?: [number, number] } = {},
) {
  await ensureTopic(pubsub, spec.topic);
  const d = topology.defaults;
  const [minBackoff, maxBackoff] = spec.backoffSeconds ??
    opts.backoffSeconds ?? [d.minimumBackoffSeconds, d.maximumBackoffSeconds];
  const ordered = spec.ordered && !opts.retryOverOrder;
  const deadLetter = !ordered && spec.deadLetter !== false && spec.topic !== topology.deadLetterTopic;
  await pubsub
    .topic(spec.topic)
    .createSubscription(spec.name, {
      ackDeadlineSeconds: d.ackDeadlineSeconds,
      enableMessageOrdering: ordered,
      enableExactlyOnceDelivery: spec.exactlyOnce ?? false,
      retryPolicy: {
        minimumBackoff: { seconds: Math.floor(minBackoff), nanos: Math.round((minBackoff % 1) * 1e9) },
        maximumBackoff: { seconds: Math.floor(maxBackoff), nanos: Math.round((maxBackoff % 1) * 1e9) },
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

/**
 * Topics and subscriptions of the topology. Consumer subscriptions (memory, backend, agents) get
 * Pub/Sub's retry and dead-letter policy and a counting `deliveryAttempt`, as in production, at the
 * cost of ordering locally (see ensureSubscription); `orderedConsumers` keeps them ordered instead.
 */
export async function provisionTopology(
  pubsub: PubSub,
  topology: Topology,
  opts: { orderedConsumers?: boolean; backoffSeconds?: [number, number] } = {},
) {
  await Promise.all(topology.topics.map((t) => ensureTopic(pubsub, t.name)));
  await Promise.all(
    topology.subscriptions.map((s) =>
      ensureSubscription(pubsub, topology, s, {
        retryOverOrder: Boolean(s.consumer) && !s.function && !opts.orderedConsumers,
        backoffSeconds: opts.backoffSeconds,
      }),
    ),
  );
}
