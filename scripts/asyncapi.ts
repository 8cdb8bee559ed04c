/**
 * `npm run asyncapi`: writes docs/asyncapi.json, the AsyncAPI 3 document of every topic of
 * shared/topology.json: its ordering key, its publisher and subscriptions, the CloudEvents binary-mode
 * attributes and a JSON Schema of each event type's data (shared/event-schemas.ts), with the partner
 * (pseudonymised) variants. scripts/asyncapi.test.ts fails when the committed file drifts.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  type EventType,
  eventJsonSchema,
  mirroredTypes,
  partnerEventSchema,
} from '../shared/event-schemas.ts';
import { TYPES } from '../shared/events.ts';
import { loadTopology, type SubscriptionSpec, type Topology } from '../shared/topology.ts';

const name = (type: string) =>
  type
    .replace(/^learnflow\./, '')
    .replace(/\.v\d+$/, '')
    .replace(/\.(\w)/g, (_, c: string) => c.toUpperCase());
const id = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '_');

const ATTRIBUTES: Record<string, Record<string, unknown>> = {
  'ce-specversion': { type: 'string', const: '1.0' },
  'ce-id': { type: 'string', description: 'event id; stable across retries, mirrors and replays' },
  'ce-source': { type: 'string', description: 'e.g. /ldr/instances/<id>, /ldr/functions/<name>' },
  'ce-type': { type: 'string' },
  'ce-time': { type: 'string', format: 'date-time' },
  'ce-subject': { type: 'string', description: 'students/<id> where a learner is concerned' },
  'content-type': { type: 'string', const: 'application/json' },
  'ldr-instance': { type: 'string', description: 'the app-instance concerned' },
  'ldr-sponsor': { type: 'string', description: 'the sponsor slug, for sponsored content' },
  'ldr-kind': { type: 'string', description: 'interaction or content kind' },
};
const EXTRA: Partial<Record<EventType, Record<string, Record<string, unknown>>>> = {
  [TYPES.triage]: { 'ldr-agent': { type: 'string', description: 'the agent the decision routes to' } },
  [TYPES.content]: {
    'ldr-audience': { type: 'string', enum: ['all', 'list'] },
  },
};

function headers(type: string, extra: Record<string, Record<string, unknown>> = {}) {
  return {
    type: 'object',
    description: 'CloudEvents 1.0 binary mode over Pub/Sub: message attributes',
    required: ['ce-specversion', 'ce-id', 'ce-source', 'ce-type', 'ce-time', 'content-type'],
    properties: { ...ATTRIBUTES, 'ce-type': { type: 'string', const: type }, ...extra },
  };
}

const DESCRIPTIONS: Record<EventType, string> = {
  [TYPES.interaction]: 'A learner interaction accepted by ingestInteraction (SPEC §3).',
  [TYPES.triage]: 'The tutoring agent an interaction needs (routeTriage; ce-id <interactionId>.triage).',
  [TYPES.progress]: 'Mastery of a topic changed (updateProgress; ce-id <interactionId>.progress).',
  [TYPES.struggle]: 'A struggle was detected (updateProgress; ce-id <interactionId>.struggle.<reason>).',
  [TYPES.content]:
    'Content or a learning signal was published (publishContent; ce-id <contentId>@<version>).',
  [TYPES.artifact]:
    'An uploaded artifact was verified and stored (finalizeArtifact; ce-id <artifactId>.stored).',
};

export function buildAsyncApi(t: Topology = loadTopology()): Record<string, unknown> {
  const messages: Record<string, unknown> = {};
  const message = (type: EventType, orderingKey: string | null) => ({
    name: type,
    title: name(type),
    summary: DESCRIPTIONS[type],
    contentType: 'application/json',
    headers: headers(type, EXTRA[type]),
    payload: eventJsonSchema(type, 'draft-7'),
    bindings: {
      googlepubsub: {
        bindingVersion: '0.2.0',
        ...(orderingKey ? { orderingKey: `the ${orderingKey}` } : {}),
      },
    },
  });
  for (const type of Object.values(TYPES)) {
    const topic = t.topics.find((x) => x.eventType === type);
    messages[name(type)] = message(type, topic?.orderingKey ?? null);
  }
  for (const type of mirroredTypes) {
    for (const share of [false, true]) {
      messages[`${name(type)}Partner${share ? 'WithContent' : ''}`] = {
        name: type,
        title: `${name(type)} (partner copy${share ? ', shareContent' : ''})`,
        summary: `${DESCRIPTIONS[type]} As a partner receives it: learnerRef instead of studentId${share ? '' : ', free text and code removed'}.`,
        contentType: 'application/json',
        headers: headers(type, {
          ...EXTRA[type],
          'ldr-partner': { type: 'string', description: 'the partner slug' },
          'ce-subject': { type: 'string', description: 'learners/<learnerRef>' },
        }),
        payload: partnerEventSchema(type, share, 'draft-7'),
        bindings: { googlepubsub: { bindingVersion: '0.2.0', orderingKey: 'the learnerRef' } },
      };
    }
  }
  messages.storageNotification = {
    name: 'OBJECT_FINALIZE',
    title: 'Cloud Storage notification',
    summary: 'Object-finalize notification of the artifacts bucket (JSON_API_V1 payload).',
    contentType: 'application/json',
    headers: {
      type: 'object',
      required: ['eventType', 'bucketId', 'objectId'],
      properties: Object.fromEntries(
        [
          'notificationConfig',
          'eventType',
          'payloadFormat',
          'bucketId',
          'objectId',
          'objectGeneration',
          'eventTime',
        ].map((k) => [k, { type: 'string' }]),
      ),
    },
    payload: { type: 'object', description: 'the Cloud Storage object resource' },
  };
  messages.deadLetter = {
    name: 'deadletter',
    title: 'Dead letter',
    summary:
      'A message some subscription could not deliver after its attempts; attributes and data as received.',
    payload: {},
  };

  const channels: Record<string, unknown> = {};
  const operations: Record<string, unknown> = {};
  const ref = (kind: string, key: string) => ({ $ref: `#/${kind}/${key}` });
  const messagesOf = (topic: Topology['topics'][number]): string[] =>
    topic.eventType
      ? [name(topic.eventType as EventType)]
      : topic.name === t.deadLetterTopic
        ? ['deadLetter']
        : ['storageNotification'];

  const subscribe = (
    channelKey: string,
    msgs: string[],
    s: SubscriptionSpec,
    opKey = `receive_${id(s.name)}`,
  ) => {
    operations[opKey] = {
      action: 'receive',
      channel: ref('channels', channelKey),
      title: s.name,
      summary: `Subscription ${s.name}${s.function ? ` → function ${s.function} (push)` : s.consumer ? ` → ${s.consumer}` : ''}`,
      description: [
        s.ordered ? 'Ordered by the ordering key.' : 'Not ordered.',
        s.exactlyOnce ? 'Exactly-once delivery.' : '',
        s.deadLetter === false
          ? 'No dead-lettering.'
          : `Retry policy ${t.defaults.minimumBackoffSeconds}–${t.defaults.maximumBackoffSeconds} s; dead letter to ${t.deadLetterTopic} after ${t.defaults.maxDeliveryAttempts} attempts.`,
        s.filter ? `Filter: ${s.filter}` : '',
      ]
        .filter(Boolean)
        .join(' '),
      messages: msgs.map((m) => ref(`channels/${channelKey}/messages`, m)),
      'x-subscription': {
        name: s.name,
        ordered: s.ordered,
        ackDeadlineSeconds: t.defaults.ackDeadlineSeconds,
        ...(s.exactlyOnce ? { exactlyOnce: true } : {}),
        ...(s.filter ? { filter: s.filter } : {}),
        ...(s.function ? { function: s.function } : {}),
        ...(s.consumer ? { consumer: s.consumer } : {}),
        deadLetterTopic: s.deadLetter === false ? null : t.deadLetterTopic,
      },
    };
  };

  for (const topic of t.topics) {
    const key = id(topic.name);
    const msgs = messagesOf(topic);
    channels[key] = {
      address: topic.name,
      title: topic.name,
      description: `Ordering key: ${topic.orderingKey ?? 'none'}. Published by ${String(topic.publishedBy)}.`,
      messages: Object.fromEntries(msgs.map((m) => [m, ref('components/messages', m)])),
      'x-ordering-key': topic.orderingKey,
      // the googlepubsub channel binding requires schemaSettings (Pub/Sub schemas), which the room does not use
      'x-message-retention-duration': `${t.defaults.messageRetentionSeconds}s`,
    };
    operations[`publish_${key}`] = {
      action: 'send',
      channel: ref('channels', key),
      title: `${String(topic.publishedBy)} publishes`,
      messages: msgs.map((m) => ref(`channels/${key}/messages`, m)),
    };
    for (const s of t.subscriptions.filter((x) => x.topic === topic.name)) subscribe(key, msgs, s);
    if (topic.name === t.patterns.instance.subscription.topic) {
      subscribe(
        key,
        msgs,
        t.patterns.instance.subscription,
        `receive_${id(t.patterns.instance.subscription.name)}`,
      );
    }
  }

  // partner topics: one per partner, named by the pattern
  const p = t.patterns.partner;
  const partnerMsgs = mirroredTypes.flatMap((type) => [
    `${name(type)}Partner`,
    `${name(type)}PartnerWithContent`,
  ]);
  channels.partnerEvents = {
    address: p.topic,
    title: p.topic,
    description: `One topic per partner, written by mirrorToPartners. Ordering key: ${p.orderingKey}. Each message is the partner's scoped copy; the variant depends on the partner's shareContent.`,
    parameters: { slug: { description: 'the partner slug' } },
    messages: Object.fromEntries(partnerMsgs.map((m) => [m, ref('components/messages', m)])),
    'x-ordering-key': p.orderingKey,
  };
  operations.publish_partnerEvents = {
    action: 'send',
    channel: ref('channels', 'partnerEvents'),
    title: 'mirrorToPartners publishes',
    messages: partnerMsgs.map((m) => ref('channels/partnerEvents/messages', m)),
  };
  subscribe('partnerEvents', partnerMsgs, { ...p.subscription, topic: p.topic }, 'receive_partnerPull');

  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Lerning-Data-Room events',
      version: '1.0.0',
      description:
        'Every topic of the room (shared/topology.json). Events are CloudEvents 1.0 in binary mode over Pub/Sub: ce-* message attributes, data = the JSON payload. Consumers de-duplicate on ce-id. Generated by `npm run asyncapi`.',
    },
    defaultContentType: 'application/json',
    servers: {
      production: {
        host: 'pubsub.googleapis.com',
        protocol: 'googlepubsub',
        description: `Google Cloud Pub/Sub, project ${t.project}`,
      },
      local: {
        host: '127.0.0.1:8085',
        protocol: 'googlepubsub',
        description: 'the Pub/Sub emulator of the local suite',
      },
    },
    channels,
    operations,
    components: { messages },
  };
}

export const asyncApiPath = fileURLToPath(new URL('../docs/asyncapi.json', import.meta.url));
export const renderAsyncApi = () => `${JSON.stringify(buildAsyncApi(), null, 2)}\n`;

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(asyncApiPath, renderAsyncApi());
  console.log(`wrote ${asyncApiPath}`);
}
