import type { Logger } from '../../shared/log.ts';
import { badRequest, StorageError } from './errors.ts';
import { objectResource } from './resources.ts';
import type { ObjectRecord } from './store.ts';

/**
 * Pub/Sub notifications for Cloud Storage, in the production format
 * (https://cloud.google.com/storage/docs/pubsub-notifications): attributes describe the event, the data is
 * the object resource (payload format JSON_API_V1). Delivery is the caller's `notify` callback, awaited.
 * Configurations live as long as the emulator process; they are not persisted.
 */

export const EVENT_TYPES = [
  'OBJECT_FINALIZE',
  'OBJECT_METADATA_UPDATE',
  'OBJECT_DELETE',
  'OBJECT_ARCHIVE',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];
export type PayloadFormat = 'JSON_API_V1' | 'NONE';

export interface Notice {
  /** Full topic name, `projects/<project>/topics/<topic>`. */
  topic: string;
  attributes: Record<string, string>;
  data: Buffer;
}

export type Notify = (notice: Notice) => Promise<void>;

export interface NotificationConfig {
  id: string;
  bucket: string;
  topic: string;
  payloadFormat: PayloadFormat;
  /** Undefined: every event type (the production default). */
  eventTypes?: EventType[];
  objectNamePrefix?: string;
  customAttributes?: Record<string, string>;
}

export type NotificationOptions = Partial<
  Pick<NotificationConfig, 'payloadFormat' | 'eventTypes' | 'objectNamePrefix' | 'customAttributes'>
>;

export interface ObjectEvent {
  type: EventType;
  object: ObjectRecord;
  /** Generation this event's object replaced (finalize) or was replaced by (delete). */
  overwroteGeneration?: string;
  overwrittenByGeneration?: string;
  eventTime: string;
}

export class Notifications {
  readonly #configs: NotificationConfig[] = [];
  #nextId = 1;

  constructor(
    private readonly projectId: string,
    private readonly baseUrl: () => string,
    private readonly log: Logger,
    private readonly notify?: Notify,
  ) {}

  add(bucket: string, topic: string, options: NotificationOptions = {}): NotificationConfig {
    const config: NotificationConfig = {
      id: String(this.#nextId++),
      bucket,
      topic: fullTopicName(topic, this.projectId),
      payloadFormat: options.payloadFormat ?? 'JSON_API_V1',
      ...(options.eventTypes?.length ? { eventTypes: options.eventTypes } : {}),
      ...(options.objectNamePrefix ? { objectNamePrefix: options.objectNamePrefix } : {}),
      ...(options.customAttributes ? { customAttributes: options.customAttributes } : {}),
    };
    this.#configs.push(config);
    return config;
  }

  list(bucket: string): NotificationConfig[] {
    return this.#configs.filter((c) => c.bucket === bucket);
  }

  get(bucket: string, id: string): NotificationConfig {
    const config = this.#configs.find((c) => c.bucket === bucket && c.id === id);
    if (!config)
      throw new StorageError(
        404,
        'notFound',
        `Notification ${id} not found on bucket ${bucket}.`,
        'NoSuchKey',
      );
    return config;
  }

  remove(bucket: string, id: string) {
    this.#configs.splice(this.#configs.indexOf(this.get(bucket, id)), 1);
  }

  /** Delivers `event` to every matching configuration, one after the other; failures are logged, not thrown. */
  async publish(event: ObjectEvent): Promise<void> {
    if (!this.notify) return;
    for (const config of this.#configs.filter((c) => matches(c, event))) {
      const notice = this.#notice(config, event);
      try {
        await this.notify(notice);
        this.log.debug(
          { topic: notice.topic, eventType: event.type, bucket: config.bucket },
          'notification delivered',
        );
      } catch (err) {
        this.log.error({ err, topic: notice.topic, eventType: event.type }, 'notification delivery failed');
      }
    }
  }

  #notice(config: NotificationConfig, event: ObjectEvent): Notice {
    const { object } = event;
    const attributes: Record<string, string> = {
      ...config.customAttributes,
      notificationConfig: `projects/_/buckets/${config.bucket}/notificationConfigs/${config.id}`,
      eventType: event.type,
      payloadFormat: config.payloadFormat,
      bucketId: object.bucket,
      objectId: object.name,
      objectGeneration: object.generation,
      eventTime: event.eventTime,
      ...(event.overwroteGeneration ? { overwroteGeneration: event.overwroteGeneration } : {}),
      ...(event.overwrittenByGeneration ? { overwrittenByGeneration: event.overwrittenByGeneration } : {}),
    };
    const data =
      config.payloadFormat === 'JSON_API_V1'
        ? Buffer.from(JSON.stringify(objectResource(object, this.baseUrl())))
        : Buffer.alloc(0);
    return { topic: config.topic, attributes, data };
  }
}

const matches = (config: NotificationConfig, event: ObjectEvent) =>
  config.bucket === event.object.bucket &&
  (!config.eventTypes || config.eventTypes.includes(event.type)) &&
  (!config.objectNamePrefix || event.object.name.startsWith(config.objectNamePrefix));

/** `t`, `projects/p/topics/t` or `//pubsub.googleapis.com/projects/p/topics/t` → `projects/p/topics/t`. */
export function fullTopicName(topic: string, projectId: string): string {
  const bare = topic.replace(/^\/\/pubsub\.[^/]+\//, '');
  if (/^projects\/[^/]+\/topics\/[^/]+$/.test(bare)) return bare;
  if (/^[^/]+$/.test(bare)) return `projects/${projectId}/topics/${bare}`;
  throw badRequest(`Invalid topic name: ${topic}`);
}

/** The JSON API notification resource (its field names are snake_case in production too). */
export function notificationResource(config: NotificationConfig, baseUrl: string) {
  return {
    kind: 'storage#notification',
    id: config.id,
    selfLink: `${baseUrl}/storage/v1/b/${config.bucket}/notificationConfigs/${config.id}`,
    topic: `//pubsub.googleapis.com/${config.topic}`,
    payload_format: config.payloadFormat,
    etag: config.id,
    ...(config.eventTypes ? { event_types: config.eventTypes } : {}),
    ...(config.objectNamePrefix ? { object_name_prefix: config.objectNamePrefix } : {}),
    ...(config.customAttributes ? { custom_attributes: config.customAttributes } : {}),
  };
}
