import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from '@upstash/redis';
import { createRedis } from '../../shared/clients.ts';
import { freePort } from '../procs.ts';
import { type RedisServer, startRedisServer } from './redis-server.ts';
import { startUpstashRest, type UpstashRest } from './upstash-rest.ts';

/**
 * A private redis-server behind the local Upstash REST endpoint, and the room's own client for it
 * (`createRedis`: the transport the functions use): for tests and benchmarks that count what reaches Redis.
 */
export async function startLocalUpstash(token: string): Promise<{
  rest: UpstashRest;
  redis: Redis;
  stop(): Promise<void>;
}> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ldr-upstash-'));
  let server: RedisServer | undefined;
  try {
    server = await startRedisServer({ port: await freePort(), dir });
    const rest = await startUpstashRest({ port: 0, redisPort: server.port, token });
    const redis = createRedis({ UPSTASH_REDIS_REST_URL: rest.url, UPSTASH_REDIS_REST_TOKEN: token });
    return {
      rest,
      redis,
      async stop() {
        await rest.stop();
        await server?.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
