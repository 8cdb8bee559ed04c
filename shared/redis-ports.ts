import { Ratelimit } from '@upstash/ratelimit';
import type { Redis } from '@upstash/redis';
import type { DedupWindow, RateLimiter } from './ports.ts';

/** Rate limits with @upstash/ratelimit (sliding window per minute); one limiter per configured rate. */
export function upstashRateLimiter(redis: Redis, prefix = 'rl'): RateLimiter {
  const limiters = new Map<number, Ratelimit>();
  const limiterFor = (perMinute: number) => {
    let l = limiters.get(perMinute);
    if (!l) {
      l = new Ratelimit({
        redis,
        limiter: Ratelimit.slidingWindow(perMinute, '60 s'),
        prefix: `${prefix}:${perMinute}`,
        // generous: a slow answer under load must not let a request past its limit; a Redis that is down is
        // reported at once by the REST endpoint (503), which also lets the request through
        timeout: 3000,
        analytics: false,
      });
      limiters.set(perMinute, l);
    }
    return l;
  };
  return {
    async limit(key, cost, perMinute) {
      try {
        const r = await limiterFor(perMinute).limit(key, { rate: cost });
        if (r.reason === 'timeout') return 'unavailable';
        return { success: r.success, limit: r.limit, remaining: r.remaining, reset: r.reset };
      } catch {
        return 'unavailable';
      }
    },
  };
}

const CLAIM = `
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('SET', k, 'pending', 'NX', 'EX', ARGV[1]) then
    out[i] = 'new'
  else
    out[i] = redis.call('GET', k) or 'new'
  end
end
return out`;

/**
 * The 24 h window of published event ids: `pending` while a publish is in flight (a retry during that
 * time publishes again; consumers de-duplicate on ce-id), `done` once published.
 */
export function redisDedupWindow(redis: Redis, ttlSeconds: number, pendingSeconds = 120): DedupWindow {
  const key = (id: string) => `dedup:${id}`;
  return {
    async claim(ids) {
      if (!ids.length) return new Map();
      const res = (await redis.eval(CLAIM, ids.map(key), [String(pendingSeconds)])) as string[];
      return new Map(
        ids.map((id, i) => [
          id,
          (res[i] === 'done' ? 'done' : res[i] === 'pending' ? 'pending' : 'new') as never,
        ]),
      );
    },
    async confirm(ids) {
      if (!ids.length) return;
      const p = redis.pipeline();
      for (const id of ids) p.set(key(id), 'done', { ex: ttlSeconds });
      await p.exec();
    },
    async release(ids) {
      if (!ids.length) return;
      await redis.del(...ids.map(key));
    },
  };
}
