import { type PubSub, v1 } from '@google-cloud/pubsub';
import { orderingKeyResolver } from '../shared/ordering.ts';
import type { Topology } from '../shared/topology.ts';

/**
 * Dead letters of the room: read from the operations subscription on the dead-letter topic
 * (`ops.deadletter`) and replayed to the one subscription they came from.
 *
 * Replay design (works the same against the emulator and a real project, official client only):
 * Pub/Sub cannot publish to one subscription, and a publish to the source TOPIC reaches every
 * subscription of it. So a replay is published to the source subscription's topic with the attribute
 * `ldr-replay-for=<subscription>`, and every subscription of the topology carries the filter
 * `NOT attributes:ldr-replay-for OR attributes.ldr-replay-for = "<its name>"` (topology.json → Terraform):
 * Pub/Sub drops the replay for every other subscription server-side. The emulator stores filters but
 * ignores them, so locally the bridge evaluates the filter of function subscriptions before pushing.
 * The dead letter is acknowledged only after the replay publish succeeded.
 */
export const DEADLETTER_SUBSCRIPTION = 'ops.deadletter';
export const REPLAY_ATTRIBUTE = 'ldr-replay-for';

export interface DeadLetter {
  /** message id on the dead-letter subscription */
  id: string;
  ackId: string;
  /** short name of the subscription it was dead-lettered from */
  source: string;
  reason?: string;
  attempts?: number;
  function?: string;
  /** message id on the source subscription, when known */
  originalId?: string;
  ceId?: string;
  type?: string;
  time: string;
  data: Buffer;
  attributes: Record<string, string>;
  orderingKey?: string;
}

const shortName = (s: string | undefined) => s?.split('/subscriptions/').pop() ?? '';

/** What the dead-letter path added (Pub/Sub's CloudPubSubDeadLetterSource*, the functions' ldr-deadletter-*). */
export const isDeadLetterAttribute = (k: string) =>
  k.startsWith('CloudPubSubDeadLetterSource') || k.startsWith('ldr-deadletter-') || k === REPLAY_ATTRIBUTE;

export function describe(m: {
  id: string;
  ackId: string;
  data: Buffer;
  attributes: Record<string, string>;
  publishTime: string;
  orderingKey?: string;
}): DeadLetter {
  const a = m.attributes;
  const attempts = a.CloudPubSubDeadLetterSourceDeliveryCount;
  return {
    id: m.id,
    ackId: m.ackId,
    source: shortName(a['ldr-deadletter-subscription'] ?? a.CloudPubSubDeadLetterSourceSubscription),
    reason: a['ldr-deadletter-reason'],
    attempts: attempts ? Number(attempts) : undefined,
    function: a['ldr-deadletter-function'],
    originalId: a['ldr-deadletter-message-id'],
    ceId: a['ce-id'],
    type: a['ce-type'],
    time: m.publishTime,
    data: m.data,
    attributes: a,
    orderingKey: m.orderingKey || undefined,
  };
}

/**
 * The message to publish again: data and attributes as they were, addressed to one subscription. A key
 * the dead letter lost comes back from the data, resolved as the functions publish it (`keyFor`: on the
 * emulator the learner's shard, in production the student id), so the replay keeps the learner's order.
 */
export function replayMessage(
  dl: DeadLetter,
  topology: Topology,
  topic: string,
  keyFor: (topic: string, key: string | undefined) => string | undefined = orderingKeyResolver(
    topology,
    false,
  ),
) {
  const attributes: Record<string, string> = {};
  for (const [k, v] of Object.entries(dl.attributes)) if (!isDeadLetterAttribute(k)) attributes[k] = v;
  attributes[REPLAY_ATTRIBUTE] = dl.source;
  let orderingKey = dl.orderingKey;
  const field = topology.topics.find((t) => t.name === topic)?.orderingKey;
  if (!orderingKey && field) {
    try {
      const v = (JSON.parse(dl.data.toString('utf8')) as Record<string, unknown>)[field];
      if (typeof v === 'string' && v) orderingKey = keyFor(topic, v);
    } catch {
      // not JSON: replayed without an ordering key
    }
  }
  return { data: dl.data, attributes, ...(orderingKey ? { orderingKey } : {}) };
}

export function matches(dl: DeadLetter, sel: { all?: boolean; id?: string; subscription?: string }) {
  if (sel.subscription && dl.source !== sel.subscription) return false;
  if (sel.id) return [dl.id, dl.originalId, dl.ceId].includes(sel.id);
  return Boolean(sel.all || sel.subscription);
}

/**
 * Pulls everything currently on the dead-letter subscription, holding the leases (nothing is
 * acknowledged); `release` hands back what was not acknowledged.
 */
export async function pullAll(pubsub: PubSub, subscription = DEADLETTER_SUBSCRIPTION, quietMs = 1500) {
  const config = await pubsub.getClientConfig();
  const client = new v1.SubscriberClient({
    ...config,
    port: config.port === undefined ? undefined : Number(config.port),
  });
  // getClientConfig resolves the project (from the credentials when not given)
  const path = `projects/${pubsub.projectId}/subscriptions/${subscription}`;
  const out: DeadLetter[] = [];
  // a pull may come back empty while messages exist (just released leases, server-side batching):
  // the subscription counts as drained after pulls have been empty for quietMs
  let lastGot = Date.now();
  while (Date.now() - lastGot < quietMs) {
    const [res] = await client.pull(
      { subscription: path, maxMessages: 1000, returnImmediately: true },
      { timeout: 10_000 },
    );
    const got = res.receivedMessages ?? [];
    if (!got.length) {
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    lastGot = Date.now();
    for (const r of got) {
      const m = r.message!;
      const seconds = Number(m.publishTime?.seconds ?? 0);
      out.push(
        describe({
          id: m.messageId!,
          ackId: r.ackId!,
          data: Buffer.from(m.data ?? ''),
          attributes: { ...(m.attributes ?? {}) },
          publishTime: new Date(seconds * 1000 + (m.publishTime?.nanos ?? 0) / 1e6).toISOString(),
          orderingKey: m.orderingKey ?? undefined,
        }),
      );
    }
  }
  return {
    messages: out,
    ack: async (ackIds: string[]) => {
      if (ackIds.length) await client.acknowledge({ subscription: path, ackIds });
    },
    release: async (ackIds: string[]) => {
      if (ackIds.length)
        await client.modifyAckDeadline({ subscription: path, ackIds, ackDeadlineSeconds: 0 });
    },
    close: () => client.close(),
  };
}

/** Replays the selected dead letters; each is acknowledged only after its replay was published. */
export async function replay(
  pubsub: PubSub,
  topology: Topology,
  sel: { all?: boolean; id?: string; subscription?: string },
  say: (line: string) => void = () => {},
) {
  const pulled = await pullAll(pubsub);
  const replayed: DeadLetter[] = [];
  const failed: Array<{ dl: DeadLetter; error: string }> = [];
  const topics = new Map<string, string>();
  const keyFor = orderingKeyResolver(topology, pubsub.isEmulator);
  try {
    for (const dl of pulled.messages.filter((m) => matches(m, sel))) {
      try {
        if (!dl.source) throw new Error('no source subscription attribute');
        let topic = topics.get(dl.source);
        if (!topic) {
          const [meta] = await pubsub.subscription(dl.source).getMetadata();
          topic = (meta.topic ?? '').split('/topics/').pop()!;
          topics.set(dl.source, topic);
        }
        const msg = replayMessage(dl, topology, topic, keyFor);
        const t = pubsub.topic(topic, { messageOrdering: Boolean(msg.orderingKey) });
        const newId = await t.publishMessage(msg);
        await pulled.ack([dl.ackId]);
        replayed.push(dl);
        say(`replayed ${dl.id} (ce-id ${dl.ceId ?? '-'}) → ${topic} for ${dl.source} as ${newId}`);
      } catch (err) {
        failed.push({ dl, error: (err as Error).message });
        say(`could not replay ${dl.id} from ${dl.source || '?'}: ${(err as Error).message}`);
      }
    }
  } finally {
    const done = new Set(replayed.map((d) => d.ackId));
    await pulled.release(pulled.messages.filter((m) => !done.has(m.ackId)).map((m) => m.ackId));
    await pulled.close();
  }
  return { replayed, failed };
}
