import type { Redis } from '@upstash/redis';
import type { Admission, AdmissionGate, ClaimState, DedupWindow, Quota } from './ports.ts';

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
 * Batches writes: items that arrive while a batch is being sent wait for it and go together in the next
 * one (the first waits one turn of the event loop). The promise of an item settles with its batch.
 */
export function coalesce<T>(send: (batch: T[]) => Promise<void>): (items: T[]) => Promise<void> {
  let queued: T[] = [];
  let next: Promise<void> | undefined;
  let inFlight: Promise<void> | undefined;
  return (items) => {
    if (!items.length) return Promise.resolve();
    queued.push(...items);
    next ??= new Promise<void>((resolve, reject) => {
      const go = () => {
        const batch = queued;
        queued = [];
        next = undefined;
        inFlight = send(batch)
          .then(resolve, reject)
          .finally(() => {
            inFlight = undefined;
          });
      };
      if (inFlight) inFlight.then(go);
      else setImmediate(go);
    });
    return next;
  };
}

/** An event as the mirror marks key it: its ce-id and ce-time (both stable across redeliveries). */
export interface MarkedEvent {
  id: string;
  time: string;
}

/**
 * mirrorToPartners' marks: which partners an event's delivery handled, as one field (the ce-id) of a hash
 * per minute of the event's ce-time, so that the marks of concurrent deliveries are written by one HSET
 * (Upstash bills a command, not a field) in one round trip; each bucket's TTL is refreshed at most once a
 * minute per process, so every field lives at least `ttlSeconds`. A retry task's (partner, event) mark is
 * a key of its own (a rare path).
 */
export function redisMirrorMarks(redis: Redis, ttlSeconds = 86_400) {
  const bucket = (ev: MarkedEvent) => {
    const ms = Date.parse(ev.time);
    return `mirrored:${Number.isFinite(ms) ? Math.floor(ms / 60_000) : 'x'}`;
  };
  const refreshed = new Map<string, number>();
  const write = coalesce<{ bucket: string; id: string; slugs: string[] }>(async (batch) => {
    const byBucket = new Map<string, Record<string, string>>();
    for (const m of batch) {
      const fields = byBucket.get(m.bucket) ?? {};
      fields[m.id] = JSON.stringify(m.slugs);
      byBucket.set(m.bucket, fields);
    }
    const now = Date.now();
    for (const [b, at] of refreshed) if (now - at > 60_000) refreshed.delete(b);
    const p = redis.pipeline();
    for (const [b, fields] of byBucket) {
      p.hset(b, fields);
      if (!refreshed.has(b)) {
        p.expire(b, ttlSeconds + 60);
        refreshed.set(b, now);
      }
    }
    try {
      await p.exec();
    } catch (err) {
      for (const b of byBucket.keys()) refreshed.delete(b);
      throw err;
    }
  });
  return {
    async handled(ev: MarkedEvent): Promise<ReadonlySet<string>> {
      const v = await redis.hget<string[]>(bucket(ev), ev.id);
      return new Set(Array.isArray(v) ? v.map(String) : []);
    },
    record: (ev: MarkedEvent, slugs: string[]) => write([{ bucket: bucket(ev), id: ev.id, slugs }]),
    seen: async (slug: string, id: string) => (await redis.exists(`mirror:${slug}:${id}`)) === 1,
    mark: async (slug: string, id: string) => {
      await redis.set(`mirror:${slug}:${id}`, 1, { ex: ttlSeconds });
    },
  };
}

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
    // confirmations go out in one pipeline at a time: what arrives while one is in flight waits for it and
    // goes in the next, so under load there are far fewer confirmation round trips than requests
    confirm: coalesce<string>(async (batch) => {
      const p = redis.pipeline();
      for (const id of batch) p.set(key(id), 'done', { ex: ttlSeconds });
      await p.exec();
    }),
    async release(ids) {
      if (!ids.length) return;
      await redis.del(...ids.map(key));
    },
  };
}

/**
 * One script for ingest's admission: the jti deny-list, every quota (a sliding window per minute, the
 * algorithm and keys of @upstash/ratelimit's slidingWindow; all quotas are counted or none) and the
 * de-duplication claims (SET NX 'pending', as CLAIM above). Each step runs only if the previous let the
 * request through. KEYS: [revoked key], per quota (current window, previous window), dedup keys.
 * ARGV: now ms, window ms, pending seconds, quota count, has jti, per quota (limit, cost).
 * Returns {'revoked'} | {'limited', used…} | {'ok', used…, claim states…} (used = count before this request).
 * Upstash bills every command a script runs (and the EVALSHA itself), so it reads every key in one MGET:
 * a single event with one quota costs 4 billed commands (EVALSHA, MGET, INCRBY, SET), not 6.
 * Every key it touches is in KEYS, so on Upstash it locks only those keys (`allow-key-locking`); without the
 * flag an Upstash script holds the database's global lock while it runs.
 */
const ADMIT = `#!lua flags=allow-key-locking
local now, window, nq = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local v = {}
if #KEYS > 0 then v = redis.call('MGET', unpack(KEYS)) end
local k = 1
if ARGV[5] == '1' then
  if v[1] then return {'revoked'} end
  k = 2
end
local pct = (now % window) / window
local used, refused = {}, false
for q = 1, nq do
  local limit, cost = tonumber(ARGV[4 + 2 * q]), tonumber(ARGV[5 + 2 * q])
  local cur = tonumber(v[k + 2 * q - 2] or '0')
  local prev = tonumber(v[k + 2 * q - 1] or '0')
  used[q] = cur + math.floor((1 - pct) * prev)
  if used[q] + cost > limit then refused = true end
end
if refused then
  table.insert(used, 1, 'limited')
  return used
end
for q = 1, nq do
  local cost = tonumber(ARGV[5 + 2 * q])
  local key = KEYS[k + 2 * q - 2]
  if redis.call('INCRBY', key, cost) == cost then redis.call('PEXPIRE', key, window * 2 + 1000) end
end
local out = {'ok'}
for q = 1, nq do out[#out + 1] = used[q] end
for i = k + 2 * nq, #KEYS do
  if v[i] then
    out[#out + 1] = v[i]
  elseif redis.call('SET', KEYS[i], 'pending', 'NX', 'EX', ARGV[3]) then
    out[#out + 1] = 'new'
  else
    out[#out + 1] = redis.call('GET', KEYS[i]) or 'new' -- the same id twice in one request
  end
end
return out`;

/** The admission gate on Redis: one EVALSHA per request (EVAL once per process, on NOSCRIPT). */
export function redisAdmission(
  redis: Redis,
  opts: { pendingSeconds?: number; timeoutMs?: number; prefix?: string; now?: () => number } = {},
): AdmissionGate {
  const script = redis.createScript<Array<string | number>>(ADMIT);
  const pendingSeconds = opts.pendingSeconds ?? 120;
  const timeoutMs = opts.timeoutMs ?? 3000;
  const prefix = opts.prefix ?? 'rl';
  const now = opts.now ?? Date.now;
  const windowMs = 60_000;
  return {
    async admit({ jti, quotas, claim }) {
      const t = now();
      const current = Math.floor(t / windowMs);
      const keys: string[] = jti ? [`revoked:jti:${jti}`] : [];
      const args: string[] = [String(t), String(windowMs), String(pendingSeconds), String(quotas.length)];
      args.push(jti ? '1' : '0');
      for (const q of quotas) {
        const id = `${prefix}:${q.perMinute}:${q.key}`;
        keys.push(`${id}:${current}`, `${id}:${current - 1}`);
        args.push(String(q.perMinute), String(q.cost));
      }
      for (const id of claim) keys.push(`dedup:${id}`);
      let res: Array<string | number>;
      try {
        let timer: NodeJS.Timeout | undefined;
        res = await Promise.race([
          script.exec(keys, args),
          new Promise<never>((_, rej) => {
            timer = setTimeout(() => rej(new Error('timeout')), timeoutMs);
          }),
        ]).finally(() => clearTimeout(timer));
      } catch {
        return {
          revocation: jti ? 'unavailable' : 'ok',
          limits: quotas.map(() => 'unavailable' as const),
          claims: 'unavailable',
        };
      }
      if (res[0] === 'revoked') return { revocation: 'revoked', limits: [], claims: new Map() };
      const reset = (current + 1) * windowMs;
      const limits: Admission['limits'] = quotas.map((q: Quota, i) => {
        const remaining = q.perMinute - (Number(res[1 + i]) + q.cost);
        return { success: remaining >= 0, limit: q.perMinute, remaining, reset };
      });
      const claims = new Map<string, ClaimState>();
      if (res[0] === 'ok')
        claim.forEach((id, i) => {
          const s = res[1 + quotas.length + i];
          claims.set(id, s === 'done' ? 'done' : s === 'pending' ? 'pending' : 'new');
        });
      return { revocation: 'ok', limits, claims };
    },
  };
}
