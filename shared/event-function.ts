import { z } from 'zod';
import { fromMessage, type LdrEvent, PoisonMessage } from './cloudevents.ts';
import { badRequest } from './errors.ts';
import { type Health, httpFunction, jsonBody, type Reply, type RouteContext, route } from './http.ts';
import { currentContext, traceFrom, withContext } from './log.ts';
import type { Runtime } from './runtime.ts';
import { PUSH_BODY_LIMITS, serveHttp } from './serve.ts';

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
 * The documented Pub/Sub push body (SPEC §1): what a push subscription POSTs to the function's URL in
 * production and what the local bridge posts. Pub/Sub sends both camelCase and snake_case ids.
 */
export const pushBodySchema = z.object({
  message: z
    .object({
      data: z.string().optional(),
      attributes: z.record(z.string(), z.string()).optional(),
      messageId: z.string().min(1).optional(),
      message_id: z.string().min(1).optional(),
      publishTime: z.string().optional(),
      publish_time: z.string().optional(),
      orderingKey: z.string().optional(),
    })
    .refine((m) => m.messageId ?? m.message_id, { message: 'messageId is required', path: ['messageId'] }),
  subscription: z.string().min(1),
  deliveryAttempt: z.number().int().positive().optional(),
});

export type PushBody = z.infer<typeof pushBodySchema>;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const str = (v: unknown) => typeof v === 'string';
const optStr = (v: unknown) => v === undefined || typeof v === 'string';

/** True when `body` certainly satisfies pushBodySchema (the usual body); false says nothing. */
function wellFormed(body: unknown): body is PushBody {
  const b = body as Record<string, unknown> | null;
  const m = b?.message as Record<string, unknown> | null | undefined;
  if (!b || typeof b !== 'object' || !m || typeof m !== 'object' || Array.isArray(m)) return false;
  const id = m.messageId ?? m.message_id;
  if (!str(id) || !(id as string).length || !str(b.subscription) || !(b.subscription as string).length)
    return false;
  if (!optStr(m.messageId) || !optStr(m.message_id) || !optStr(m.data) || !optStr(m.orderingKey))
    return false;
  if (!optStr(m.publishTime) || !optStr(m.publish_time)) return false;
  if (m.messageId === '' || m.message_id === '') return false;
  const a = b.deliveryAttempt;
  if (a !== undefined && !(Number.isInteger(a) && (a as number) > 0)) return false;
  if (m.attributes === undefined) return true;
  if (!m.attributes || typeof m.attributes !== 'object' || Array.isArray(m.attributes)) return false;
  for (const v of Object.values(m.attributes)) if (typeof v !== 'string') return false;
  return true;
}

/** Reads a push request into the message and its delivery; 400 naming each bad field otherwise. */
export function readPush(body: unknown): { msg: RawMessage; delivery: Delivery } {
  // what Pub/Sub sends is checked by hand (zod costs as much as the rest of the push path); anything
  // else goes through the schema, which names each bad field
  const parsed = wellFormed(body) ? { success: true as const, data: body } : pushBodySchema.safeParse(body);
  if (!parsed.success) {
    throw badRequest(
      'the body is not a Pub/Sub push body {message: {data, attributes, messageId, publishTime, orderingKey}, subscription, deliveryAttempt}',
      parsed.error.issues.map((i) => ({ path: `/${i.path.join('/')}`, message: i.message })),
    );
  }
  const { message, subscription, deliveryAttempt } = parsed.data;
  if (message.data && !BASE64.test(message.data))
    throw badRequest('message.data must be base64', [{ path: '/message/data', message: 'not base64' }]);
  return {
    msg: {
      data: Buffer.from(message.data ?? '', 'base64'),
      attributes: message.attributes ?? {},
      ...(message.publishTime || message.publish_time
        ? { publishTime: message.publishTime ?? message.publish_time }
        : {}),
    },
    delivery: {
      messageId: (message.messageId ?? message.message_id)!,
      ...(message.orderingKey ? { orderingKey: message.orderingKey } : {}),
      // Pub/Sub sets deliveryAttempt only on subscriptions with a dead-letter policy; absent means first
      deliveryAttempt: deliveryAttempt ?? 1,
      subscription,
    },
  };
}

/**
 * Registers a Pub/Sub-triggered function as an HTTP function that reads the push body. A message that
 * cannot be read, or that the handler rejects as PoisonMessage, goes to the dead-letter topic with its
 * reason and is acknowledged (204) so the stream goes on. Any other error answers 500, which makes
 * Pub/Sub retry it with the subscription's backoff, and dead-letter it after the subscription's max attempts.
 */
export function registerEventFunction(
  rt: Runtime,
  handler: (ev: LdrEvent, delivery: Delivery) => Promise<void>,
  opts: PushOptions = {},
) {
  registerMessageFunction(
    rt,
    (msg, delivery) => handler(fromMessage(msg.attributes, msg.data), delivery),
    opts,
  );
}

export interface PushOptions {
  deadLetterTopic?: string;
  health?: Health;
  /** further routes of this function (e.g. a scheduler's relay endpoint) */
  routes?: ReturnType<typeof route>[];
}

/** The raw variant, for topics whose messages are not the room's CloudEvents (Cloud Storage notifications). */
export function registerMessageFunction(
  rt: Runtime,
  handler: (msg: RawMessage, delivery: Delivery) => Promise<void>,
  opts: PushOptions = {},
) {
  const deadLetterTopic = opts.deadLetterTopic ?? 'learnflow.deadletter';
  const push = async ({ req }: RouteContext): Promise<Reply> => {
    const { msg, delivery } = readPush(jsonBody(req, PUSH_BODY_LIMITS.maxBytes));
    const trace = traceFrom(msg.attributes['ce-traceparent'] ?? currentContext()?.traceparent);
    return withContext({ ...trace, ceId: msg.attributes['ce-id'] ?? delivery.messageId }, async () => {
      try {
        try {
          await handler(msg, delivery);
        } catch (err) {
          if (!(err instanceof PoisonMessage)) throw err;
          rt.log.error(
            { reason: err.message, messageId: delivery.messageId, subscription: delivery.subscription },
            'poison message dead-lettered',
          );
          await rt.bus().publishRaw(deadLetterTopic, {
            data: msg.data,
            attributes: {
              ...msg.attributes,
              'ldr-deadletter-reason': err.message.slice(0, 1000),
              'ldr-deadletter-function': rt.name,
              'ldr-deadletter-subscription': delivery.subscription,
              'ldr-deadletter-message-id': delivery.messageId,
            },
          });
        }
        return { status: 204 };
      } catch (err) {
        // the handler, or the dead-letter publish of a poison message, failed: not acknowledged, so Pub/Sub
        // redelivers it with the subscription's back-off (and dead-letters it after max attempts)
        rt.log.warn(
          { err: String(err), messageId: delivery.messageId, attempt: delivery.deliveryAttempt },
          'delivery failed; Pub/Sub will retry',
        );
        return {
          status: 500,
          body: {
            type: 'https://ldr.dev/problems/delivery-failed',
            title: 'Delivery Failed',
            status: 500,
            detail: 'the function could not process the message now; Pub/Sub retries it',
          },
        };
      }
    });
  };
  const serve = httpFunction({
    log: rt.log,
    health: opts.health ?? rt.health(['pubsub']),
    routes: [route('POST', '/', push), ...(opts.routes ?? [])],
  });
  // served straight from the body guard (shared/serve.ts): no framework domain per delivery
  serveHttp(rt.name, serve, PUSH_BODY_LIMITS);
}
