import * as ff from '@google-cloud/functions-framework';
import { fromMessage, type LdrEvent, type MessagePublishedData, PoisonMessage } from './cloudevents.ts';
import type { Runtime } from './runtime.ts';

export interface Delivery {
  messageId: string;
  orderingKey?: string;
  deliveryAttempt: number;
  subscription: string;
}

/** A Pub/Sub message as delivered, before any decoding: what a non-CloudEvents publisher (Cloud Storage) sends. */
export interface RawMessage {
  data: Buffer;
  attributes: Record<string, string>;
  publishTime?: string;
}

/**
 * Registers a Pub/Sub-triggered function. The Eventarc CloudEvent is unwrapped into the room's event;
 * a message that cannot be read, or that the handler rejects as PoisonMessage, goes to the dead-letter
 * topic with its reason and is acknowledged so the stream goes on. Any other error fails the delivery,
 * which makes Pub/Sub retry it.
 */
export function registerEventFunction(
  rt: Runtime,
  handler: (ev: LdrEvent, delivery: Delivery) => Promise<void>,
  opts: { deadLetterTopic?: string } = {},
) {
  registerMessageFunction(
    rt,
    (msg, delivery) => handler(fromMessage(msg.attributes, msg.data), delivery),
    opts,
  );
}

/**
 * The raw variant of `registerEventFunction`, for topics whose messages are not the room's CloudEvents
 * (Cloud Storage notifications carry `eventType`, `bucketId`, `objectId` attributes and the object
 * resource as data). Same contract: PoisonMessage → dead-letter and ack, any other error → retry.
 */
export function registerMessageFunction(
  rt: Runtime,
  handler: (msg: RawMessage, delivery: Delivery) => Promise<void>,
  opts: { deadLetterTopic?: string } = {},
) {
  const deadLetterTopic = opts.deadLetterTopic ?? 'learnflow.deadletter';
  ff.cloudEvent<MessagePublishedData>(rt.name, async (ce: ff.CloudEvent<MessagePublishedData>) => {
    const msg = ce.data?.message;
    const attributes = msg?.attributes ?? {};
    const data = Buffer.from(msg?.data ?? '', 'base64');
    const delivery: Delivery = {
      messageId: msg?.messageId ?? ce.id,
      orderingKey: msg?.orderingKey,
      deliveryAttempt: ce.data?.deliveryAttempt ?? 1,
      subscription: ce.data?.subscription ?? '',
    };
    try {
      await handler(
        { data, attributes, ...(msg?.publishTime ? { publishTime: msg.publishTime } : {}) },
        delivery,
      );
    } catch (err) {
      if (!(err instanceof PoisonMessage)) {
        rt.log.warn(
          { err: String(err), messageId: delivery.messageId, attempt: delivery.deliveryAttempt },
          'handler failed; will be retried',
        );
        throw err;
      }
      rt.log.error(
        { reason: err.message, messageId: delivery.messageId, ceId: attributes['ce-id'] },
        'poison message dead-lettered',
      );
      await rt.bus().publishRaw(deadLetterTopic, {
        data,
        attributes: {
          ...attributes,
          'ldr-deadletter-reason': err.message.slice(0, 1000),
          'ldr-deadletter-function': rt.name,
          'ldr-deadletter-subscription': delivery.subscription,
          'ldr-deadletter-message-id': delivery.messageId,
        },
      });
    }
  });
}
