import type { Firestore } from '@google-cloud/firestore';
import type { PubSub } from '@google-cloud/pubsub';
import type { Redis } from '@upstash/redis';
import type pg from 'pg';
import { createVerifier, type Verifier } from './auth.ts';
import {
  type Bus,
  createBus,
  createFirestore,
  createPgPool,
  createPubSub,
  createRedis,
  lazyPool,
} from './clients.ts';
import { type Config, parseConfig, redacted } from './config.ts';
import type { Health } from './http.ts';
import { createLogger, type Logger } from './log.ts';
import { within } from './retry.ts';

/**
 * Everything one function instance needs, built once at cold start from the validated configuration.
 * Clients are created lazily so a function only opens what it uses.
 */
export interface Runtime {
  name: string;
  config: Config;
  log: Logger;
  pubsub(): PubSub;
  bus(): Bus;
  firestore(): Firestore;
  pg(): pg.Pool;
  redis(): Redis;
  verifier(): Verifier;
  health(deps: Array<'pubsub' | 'firestore' | 'postgres' | 'redis'>): Health;
}

const once = <T>(make: () => T) => {
  let v: T | undefined;
  return () => {
    v ??= make();
    return v;
  };
};

export function createRuntime(name: string, env: Record<string, string | undefined> = process.env): Runtime {
  const config = parseConfig(name, env);
  const log = createLogger(name, config.LOG_LEVEL);
  log.info({ config: redacted(config) }, 'configuration loaded');
  const pubsub = once(() => createPubSub(config));
  const bus = once(() => createBus(pubsub()));
  const firestore = once(() => createFirestore(config));
  // a pool whose connection options are resolved on first use (the Cloud SQL connector asks the
  // Cloud SQL Admin API), so no function opens or prepares a connection before its first request
  const pool = once(() =>
    lazyPool(async () => {
      const p = await createPgPool(config);
      p.on('error', (err) => log.warn({ err }, 'idle PostgreSQL client failed'));
      return p;
    }),
  );
  const redis = once(() => createRedis(config));
  const verifier = once(() =>
    createVerifier({
      jwks: new URL(config.JWKS_URL),
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      revocations: { isRevoked: async (jti) => (await redis().exists(`revoked:jti:${jti}`)) === 1 },
      onRevocationUnavailable: (err) =>
        log.warn({ err: String(err) }, 'revocation list unavailable; degraded'),
    }),
  );
  const checks = {
    // reachable is what counts: a permission error is an answer from the service (least privilege
    // gives functions no project-wide list permission)
    pubsub: () =>
      pubsub()
        .getTopics({ pageSize: 1, gaxOpts: { timeout: 6000, retry: null } as never })
        .catch((err: { code?: number }) => {
          if (err.code !== 7) throw err;
        }),
    firestore: () => firestore().collection('_health').limit(1).get(),
    postgres: () => pool().query('SELECT 1'),
    redis: () => redis().ping(),
  };
  return {
    name,
    config,
    log,
    pubsub,
    bus,
    firestore,
    pg: pool,
    redis,
    verifier,
    health: (deps) => async () => {
      const entries = await Promise.all(
        deps.map(async (d) => {
          try {
            await within(Promise.resolve(checks[d]()), 8000);
            return [d, 'ok'] as const;
          } catch {
            return [d, d === 'redis' ? ('degraded' as const) : ('down' as const)] as const;
          }
        }),
      );
      return Object.fromEntries(entries);
    },
  };
}
