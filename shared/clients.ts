import { Firestore } from '@google-cloud/firestore';
import { PubSub, type Topic } from '@google-cloud/pubsub';
import { Redis, type Requester } from '@upstash/redis';
import pg from 'pg';
import { type LdrEvent, type PubsubMessage, toMessage } from './cloudevents.ts';
import type { Config } from './config.ts';
import { currentContext } from './log.ts';
import { orderingKeyResolver } from './ordering.ts';
import { upstashRequester } from './upstash-http.ts';

/**
 * One factory per client. The official clients read the standard *_EMULATOR_HOST variables, so the
 * same code talks to the emulators locally and to Google in production.
 */
export const createPubSub = (config: Pick<Config, 'GOOGLE_CLOUD_PROJECT'>) =>
  new PubSub({ projectId: config.GOOGLE_CLOUD_PROJECT });

export const createFirestore = (config: Pick<Config, 'GOOGLE_CLOUD_PROJECT'>) =>
  new Firestore({ projectId: config.GOOGLE_CLOUD_PROJECT, ignoreUndefinedProperties: true });

/**
 * PostgreSQL: a direct URL locally; in production the Cloud SQL Node connector (private IP, IAM
 * database authentication: no password, the function's service account is the database user).
 */
export async function createPgPool(
  config: Pick<Config, 'DATABASE_URL' | 'CLOUD_SQL_INSTANCE' | 'PGUSER' | 'PGDATABASE'> &
    Partial<Pick<Config, 'PG_STATEMENT_TIMEOUT_MS'>>,
  max = 10,
): Promise<pg.Pool> {
  const common = {
    max,
    connectionTimeoutMillis: 5_000,
    // no statement may hold a connection (and its locks) longer than this
    statement_timeout: config.PG_STATEMENT_TIMEOUT_MS ?? 10_000,
  };
  if (config.DATABASE_URL) return new pg.Pool({ ...common, connectionString: config.DATABASE_URL });
  const { Connector, IpAddressTypes, AuthTypes } = await import('@google-cloud/cloud-sql-connector');
  const options = await new Connector().getOptions({
    instanceConnectionName: config.CLOUD_SQL_INSTANCE!,
    ipType: IpAddressTypes.PRIVATE,
    authType: AuthTypes.IAM,
  });
  return new pg.Pool({ ...common, ...options, user: config.PGUSER, database: config.PGDATABASE });
}

/**
 * `@upstash/redis` on our transport with the library's auto-pipelining (commands issued in the same tick
 * share one /pipeline request): its own constructor turns that on only for its built-in fetch client.
 * Replies come back as Redis gives them (`automaticDeserialization: false`, the library's documented
 * option): its default runs JSON.parse on every string of every reply and catches the SyntaxError of each
 * one that is not JSON ('OK', 'pending', a key), about a tenth of the ingest handler's CPU
 * (docs/performance.md §2). What the room stores as JSON it parses where it reads it. Exported for tests
 * that need the same client over a transport of their own (a lossy one); everything else uses createRedis.
 */
export class PipelinedRedis extends Redis {
  constructor(requester: Requester) {
    super(requester);
    this.opts = { ...this.opts, automaticDeserialization: false };
    // biome-ignore lint/correctness/noConstructorReturn: the library's own constructor returns this proxy too
    return this.autoPipeline() as PipelinedRedis;
  }
}

/** Upstash Redis over its REST API: the official client on a keep-alive node:http transport (upstash-http.ts). */
export const createRedis = (
  config: Pick<Config, 'UPSTASH_REDIS_REST_URL' | 'UPSTASH_REDIS_REST_TOKEN'>,
): Redis =>
  new PipelinedRedis(
    upstashRequester({
      url: config.UPSTASH_REDIS_REST_URL,
      token: config.UPSTASH_REDIS_REST_TOKEN,
      retries: 1,
      backoffMs: 50,
    }),
  );

/** A pg.Pool stand-in that creates the real pool on first query or connect (and again after a failure). */
export function lazyPool(make: () => Promise<pg.Pool>): pg.Pool {
  let real: Promise<pg.Pool> | undefined;
  const get = () => {
    real ??= make().catch((err) => {
      real = undefined;
      throw err;
    });
    return real;
  };
  const lazy = {
    query: (...args: unknown[]) => get().then((p) => (p.query as (...a: unknown[]) => unknown)(...args)),
    connect: () => get().then((p) => p.connect()),
    end: async () => {
      if (real) await (await real).end();
    },
    on: () => lazy,
  };
  return lazy as unknown as pg.Pool;
}

/** Port: publishes CloudEvents to named topics with an ordering key. */
export interface Bus {
  publish(topic: string, event: LdrEvent, orderingKey?: string): Promise<string>;
  publishRaw(topic: string, message: PubsubMessage): Promise<string>;
}

export class BusUnavailable extends Error {}

export function createBus(
  pubsub: PubSub,
  timeoutMs = 10_000,
  keyFor: (topic: string, key: string | undefined) => string | undefined = orderingKeyResolver(),
): Bus {
  const topics = new Map<string, Topic>();
  const topicFor = (name: string) => {
    let t = topics.get(name);
    if (!t) {
      t = pubsub.topic(name, {
        messageOrdering: true,
        batching: { maxMessages: 100, maxMilliseconds: 5 },
        gaxOpts: { timeout: timeoutMs, retry: null } as never,
      });
      topics.set(name, t);
    }
    return t;
  };
  return {
    publish(topic, event, orderingKey) {
      const message = toMessage(event, keyFor(topic, orderingKey));
      // W3C trace context travels as the CloudEvents distributed-tracing extension
      const trace = currentContext()?.traceparent;
      if (trace && !message.attributes['ce-traceparent']) message.attributes['ce-traceparent'] = trace;
      return this.publishRaw(topic, message);
    },
    async publishRaw(topic, message) {
      const t = topicFor(topic);
      try {
        return await t.publishMessage(message);
      } catch (err) {
        // An ordered publish that failed pauses its key; resume so a retry can go through.
        if (message.orderingKey) t.resumePublishing(message.orderingKey);
        throw new BusUnavailable(`publish to ${topic} failed: ${(err as Error).message}`);
      }
    },
  };
}
