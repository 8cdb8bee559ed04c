/** CloudEvents 1.0 in binary mode over Pub/Sub (SPEC §3): ce-* attributes, data = the event's JSON. */
export interface LdrEvent<T = unknown> {
  id: string;
  source: string;
  type: string;
  time: string;
  subject?: string;
  data: T;
  /** ldr-instance, ldr-sponsor, ldr-kind and other routing attributes */
  extensions?: Record<string, string | undefined>;
}

export interface PubsubMessage {
  data: Buffer;
  attributes: Record<string, string>;
  orderingKey?: string;
}

export function toMessage(ev: LdrEvent, orderingKey?: string): PubsubMessage {
  const attributes: Record<string, string> = {
    'ce-specversion': '1.0',
    'ce-id': ev.id,
    'ce-source': ev.source,
    'ce-type': ev.type,
    'ce-time': ev.time,
    'content-type': 'application/json',
  };
  if (ev.subject) attributes['ce-subject'] = ev.subject;
  for (const [k, v] of Object.entries(ev.extensions ?? {})) if (v !== undefined) attributes[k] = v;
  return { data: Buffer.from(JSON.stringify(ev.data)), attributes, ...(orderingKey ? { orderingKey } : {}) };
}

export class PoisonMessage extends Error {}

/** Reads an event back from Pub/Sub attributes and data; throws PoisonMessage when it cannot. */
export function fromMessage(attributes: Record<string, string>, data: Buffer): LdrEvent {
  const need = ['ce-id', 'ce-type', 'ce-source'] as const;
  for (const k of need) if (!attributes[k]) throw new PoisonMessage(`missing attribute ${k}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch {
    throw new PoisonMessage('data is not JSON');
  }
  const extensions: Record<string, string> = {};
  for (const [k, v] of Object.entries(attributes)) if (k.startsWith('ldr-')) extensions[k] = v;
  return {
    id: attributes['ce-id']!,
    source: attributes['ce-source']!,
    type: attributes['ce-type']!,
    time: attributes['ce-time'] ?? new Date().toISOString(),
    subject: attributes['ce-subject'],
    data: parsed,
    extensions,
  };
}

/** The `data` of a google.cloud.pubsub.topic.v1.messagePublished CloudEvent (Eventarc shape). */
export interface MessagePublishedData {
  message: {
    data?: string;
    attributes?: Record<string, string>;
    messageId: string;
    publishTime: string;
    orderingKey?: string;
  };
  subscription: string;
  deliveryAttempt?: number;
}
