import { Duration, type Message, type PubSub, type Subscription } from '@google-cloud/pubsub';
import type { Logger } from '../shared/log.ts';
import type { Topology } from '../shared/topology.ts';
import { compileFilter } from './filter.ts';

/**
 * The push side of Pub/Sub, locally: pulls every function subscription of the topology and POSTs each
 * message to its function's URL as the documented push body (SPEC §1) — exactly what a push
 * subscription sends in production: `{message: {data, attributes, messageId, publishTime, orderingKey},
 * subscription, deliveryAttempt}`. A 2xx acknowledges; anything else is retried with the topology's
 * exponential backoff, at most one message per ordering key in flight. After max attempts the message is
 * forwarded to the dead-letter topic as Pub/Sub does: data and attributes unchanged plus the
 * `CloudPubSubDeadLetterSource*` attributes (the emulator crashes on ordered dead-lettering, so the
 * bridge does it). Reasons are in the functions' logs and their own dead-letter publishes.
 */
export interface BridgeOptions {
  pubsub: PubSub;
  topology: Topology;
  projectId: string;
  /** function name → the URL its push subscription posts to */
  targetOf: (fn: string) => string;
  log: Logger;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  concurrency?: number;
  /** deliver only to these functions (the suite's --only); the other subscriptions keep their backlog */
  functions?: string[];
}

export interface Bridge {
  stop(): Promise<void>;
  stats(): { delivered: number; retried: number; deadLettered: number; inFlight: number; filtered: number };
}

export function startBridge(opts: BridgeOptions): Bridge {
  const { pubsub, topology, log } = opts;
  const maxAttempts = topology.defaults.maxDeliveryAttempts;
  const minBackoff = opts.minBackoffMs ?? topology.defaults.minimumBackoffSeconds * 1000;
  const maxBackoff = opts.maxBackoffMs ?? topology.defaults.maximumBackoffSeconds * 1000;
  const deadLetter = pubsub.topic(topology.deadLetterTopic);
  const stats = { delivered: 0, retried: 0, deadLettered: 0, inFlight: 0, filtered: 0 };
  const subs: Subscription[] = [];
  let stopping = false;
  const timers = new Set<NodeJS.Timeout>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  const served = (s: { function?: string }) =>
    Boolean(s.function) && (!opts.functions || opts.functions.includes(s.function!));
  for (const spec of topology.subscriptions.filter(served)) {
    const fn = spec.function!;
    const subscriptionPath = `projects/${opts.projectId}/subscriptions/${spec.name}`;
    const sub = pubsub.subscription(spec.name, {
      flowControl: { maxMessages: opts.concurrency ?? 500, allowExcessMessages: false },
      maxExtensionTime: Duration.from({ minutes: 30 }),
    });
    subs.push(sub);
    // the emulator stores filters but ignores them; Pub/Sub acknowledges what a filter drops, unseen
    const admits = spec.filter ? compileFilter(spec.filter) : () => true;
    const queues = new Map<string, Message[]>();
    const seen = new Set<string>();

    const deliver = async (m: Message) => {
      for (let attempt = 1; ; attempt++) {
        if (stopping) return; // unacked: the emulator redelivers after restart
        // (a function instance that is restarting is waited for by the front door, as by Cloud Run's)
        const failure = await post(m, attempt).catch((err: Error) => {
          const cause = err.cause as NodeJS.ErrnoException | undefined;
          return `request failed: ${err.message} ${String(cause?.message ?? '')}`.trim();
        });
        if (failure === null) {
          stats.delivered++;
          m.ack();
          return;
        }
        if (attempt >= maxAttempts) {
          await sendToDeadLetter(m, attempt, failure);
          return;
        }
        stats.retried++;
        log.warn(
          { fn, subscription: spec.name, messageId: m.id, attempt, failure },
          'delivery failed; retrying',
        );
        await sleep(Math.min(maxBackoff, minBackoff * 2 ** (attempt - 1)));
      }
    };

    const post = async (m: Message, attempt: number): Promise<string | null> => {
      const body = {
        message: {
          data: m.data.toString('base64'),
          attributes: m.attributes,
          messageId: m.id,
          message_id: m.id,
          publishTime: m.publishTime.toISOString(),
          publish_time: m.publishTime.toISOString(),
          ...(m.orderingKey ? { orderingKey: m.orderingKey } : {}),
        },
        subscription: subscriptionPath,
        deliveryAttempt: attempt,
      };
      const res = await fetch(opts.targetOf(fn), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      return res.ok ? null : `HTTP ${res.status}: ${text.slice(0, 300)}`;
    };

    const sendToDeadLetter = async (m: Message, attempts: number, reason: string) => {
      for (;;) {
        try {
          await deadLetter.publishMessage({
            data: m.data,
            // what Pub/Sub adds when it forwards to a dead-letter topic, nothing more
            attributes: {
              ...m.attributes,
              CloudPubSubDeadLetterSourceDeliveryCount: String(attempts),
              CloudPubSubDeadLetterSourceSubscription: spec.name,
              CloudPubSubDeadLetterSourceSubscriptionProject: opts.projectId,
              CloudPubSubDeadLetterSourceTopicPublishTime: m.publishTime.toISOString(),
            },
          });
          stats.deadLettered++;
          log.error(
            { fn, subscription: spec.name, messageId: m.id, attempts, reason },
            'message dead-lettered',
          );
          m.ack();
          return;
        } catch (err) {
          if (stopping) return;
          log.warn({ err: String(err) }, 'dead-letter publish failed; retrying');
          await sleep(minBackoff);
        }
      }
    };

    const drain = async (key: string) => {
      const q = queues.get(key)!;
      while (q.length) {
        const m = q[0]!;
        await deliver(m);
        seen.delete(m.id);
        stats.inFlight--;
        q.shift();
      }
      queues.delete(key);
    };

    sub.on('message', (m: Message) => {
      if (seen.has(m.id)) return; // a redelivery of something already queued here
      if (!admits(m.attributes)) {
        stats.filtered++;
        m.ack();
        return;
      }
      seen.add(m.id);
      stats.inFlight++;
      if (!m.orderingKey) {
        void deliver(m).finally(() => {
          seen.delete(m.id);
          stats.inFlight--;
        });
        return;
      }
      const q = queues.get(m.orderingKey);
      if (q) q.push(m);
      else {
        queues.set(m.orderingKey, [m]);
        void drain(m.orderingKey);
      }
    });
    sub.on('error', (err) =>
      log.warn({ subscription: spec.name, err: String(err) }, 'subscriber stream error'),
    );
  }

  return {
    stats: () => ({ ...stats }),
    async stop() {
      stopping = true;
      for (const t of timers) clearTimeout(t);
      await Promise.all(subs.map((s) => s.close().catch(() => {})));
    },
  };
}
