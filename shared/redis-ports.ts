import type { Redis } from '@upstash/redis';
import type { Admission, AdmissionGate, ClaimState, DedupWindow, Quota } from './ports.ts';
import { within } from './retry.ts';

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

type Pipeline = ReturnType<Redis['pipeline']>;

/**
 * Sends the commands of calls made in one turn of the event loop (those of requests that arrived together)
 * as one /pipeline request, in the order given, and answers each call with its own results. Unlike the
 * client's auto-pipelining it keeps a call's reads and writes in the same request.
 */
export function tickPipeline(redis: Redis): (add: (p: Pipeline) => void) => Promise<unknown[]> {
  let open: { p: Pipeline; sent: Promise<Array<{ result?: unknown; error?: string }>> } | undefined;
  return (add) => {
    if (!open) {
      const p = redis.pipeline();
      const batch = {
        p,
        sent: new Promise<Array<{ result?: unknown; error?: string }>>((resolve, reject) =>
          setImmediate(() => {
            open = undefined;
            p.exec({ keepErrors: true }).then(resolve, reject);
          }),
        ),
      };
      open = batch;
    }
    const { p, sent } = open;
    const from = p.length();
    add(p);
    const to = p.length();
    return sent.then((all) =>
      all.slice(from, to).map((r) => {
        if (r.error) throw new Error(`Command failed: ${r.error}`);
        return r.result;
      }),
    );
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
      // the JSON list of slugs record() wrote, as Redis holds it (createRedis leaves replies raw)
      const v = await redis.hget<string>(bucket(ev), ev.id);
      let slugs: unknown;
      try {
        slugs = v ? JSON.parse(v) : [];
      } catch {
        slugs = []; // not a list this code wrote: nothing counts as handled, every partner gets the event
      }
      return new Set(Array.isArray(slugs) ? slugs.map(String) : []);
    },
    record: (ev: MarkedEvent, slugs: string[]) => write([{ bucket: bucket(ev), id: ev.id, slugs }]),
    seen: async (slug: string, id: string) => (await redis.exists(`mirror:${slug}:${id}`)) === 1,
    mark: async (slug: string, id: string) => {
      await redis.set(`mirror:${slug}:${id}`, 1, { ex: ttlSeconds });
    },
  };
}

/** Claims ids in the de-duplication window (the CLAIM script): each one's state, `new` if this call claimed it. */
async function claimIds(
  redis: Redis,
  ids: string[],
  pendingSeconds: number,
): Promise<Map<string, ClaimState>> {
  if (!ids.length) return new Map();
  const res = (await redis.eval(
    CLAIM,
    ids.map((id) => `dedup:${id}`),
    [String(pendingSeconds)],
  )) as string[];
  return new Map(
    ids.map((id, i) => [id, res[i] === 'done' ? 'done' : res[i] === 'pending' ? 'pending' : 'new']),
  );
}

/**
 * The 24 h window of published event ids: `pending` while a publish is in flight (a retry during that
 * time publishes again; consumers de-duplicate on ce-id), `done` once published.
 */
export function redisDedupWindow(redis: Redis, ttlSeconds: number, pendingSeconds = 120): DedupWindow {
  const key = (id: string) => `dedup:${id}`;
  return {
    claim: (ids) => claimIds(redis, ids, pendingSeconds),
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
 * Ingest's admission in one pipelined round trip (shared with the requests admitted in the same turn of the
 * event loop, tickPipeline), with no script: MGET of what it reads (the jti
 * deny-list entry and each quota's previous window), INCRBY of each quota's current window (a sliding
 * window per minute, the algorithm and keys of @upstash/ratelimit's slidingWindow) and SET NX 'pending' of
 * each de-duplication claim (as CLAIM above). Upstash bills every command, and a script's EVALSHA besides
 * the commands it runs, so an app's single event costs 3 billed commands (MGET, INCRBY, SET), where the
 * same steps in a script cost 4.
 * The request is counted and claimed before it is known to be admitted: a revoked token or a refused
 * quota takes back what it counted (DECRBY) and claimed (DEL) in a second round trip before its answer,
 * so all quotas are counted or none, and nothing of a refused request stays claimed. Concurrent requests
 * at a quota's edge can see each other's counts and both be refused (never both admitted over it).
 * An id already claimed is resolved by the CLAIM script (its state, or a new claim if it was released
 * meanwhile): another round trip, on the duplicate path only.
 */
export function redisAdmission(
  redis: Redis,
  opts: {
    pendingSeconds?: number;
    timeoutMs?: number;
    prefix?: string;
    now?: () => number;
    /**
     * The give-back of a refused request failed or did not answer within `timeoutMs` (Redis lost between the
     * two round trips): its counts may stay until their window expires and its claims for `pendingSeconds`,
     * so those ids answer `pending` meanwhile.
     */
    onGiveBackFailed?: (err: unknown, kept: { windows: string[]; claims: string[] }) => void;
  } = {},
): AdmissionGate {
  const pendingSeconds = opts.pendingSeconds ?? 120;
  const timeoutMs = opts.timeoutMs ?? 3000;
  const prefix = opts.prefix ?? 'rl';
  const now = opts.now ?? Date.now;
  const windowMs = 60_000;
  // one /pipeline request per turn of the event loop, shared by the requests admitted in it
  const send = tickPipeline(redis);
  const expire = coalesce<string>(async (keys) => {
    const p = redis.pipeline();
    for (const k of keys) p.pexpire(k, windowMs * 2 + 1000);
    await p.exec();
  });
  const unavailable = (jti: string | undefined, quotas: Quota[]): Admission => ({
    revocation: jti ? 'unavailable' : 'ok',
    limits: quotas.map(() => 'unavailable' as const),
    claims: 'unavailable',
  });
  return {
    async admit({ jti, quotas, claim }) {
      const t = now();
      const current = Math.floor(t / windowMs);
      const ids = quotas.map((q) => `${prefix}:${q.perMinute}:${q.key}`);
      const reads = [...(jti ? [`revoked:jti:${jti}`] : []), ...ids.map((id) => `${id}:${current - 1}`)];
      let res: unknown[];
      try {
        res = await within(
          send((p) => {
            if (reads.length) p.mget(...reads);
            ids.forEach((id, i) => {
              p.incrby(`${id}:${current}`, quotas[i]!.cost);
            });
            for (const id of claim) p.set(`dedup:${id}`, 'pending', { nx: true, ex: pendingSeconds });
          }),
          timeoutMs,
        );
      } catch {
        return unavailable(jti, quotas);
      }
      const read = (reads.length ? res.shift() : []) as Array<string | number | null>;
      const counted = res.splice(0, quotas.length).map(Number);
      const set = res;
      const revoked = !!jti && read[0] !== null && read[0] !== undefined;
      const pct = (t % windowMs) / windowMs;
      const prev = read.slice(jti ? 1 : 0);
      // used = what was counted before this request (the sliding window's estimate)
      const used = quotas.map((q, i) => counted[i]! - q.cost + Math.floor((1 - pct) * Number(prev[i] ?? 0)));
      const refused = revoked || quotas.some((q, i) => used[i]! + q.cost > q.perMinute);
      const claimed = claim.filter((_, i) => set[i] === 'OK');
      // a window's key gets its TTL from the request that created it, behind the answer; those of concurrent
      // requests go in one pipeline
      const opened = ids.flatMap((id, i) => (counted[i] === quotas[i]!.cost ? [`${id}:${current}`] : []));
      expire(opened).catch(() => {});
      if (refused) {
        // what a refused request took is given back before its answer
        const back = redis.pipeline();
        ids.forEach((id, i) => {
          back.decrby(`${id}:${current}`, quotas[i]!.cost);
        });
        if (claimed.length) back.del(...claimed.map((id) => `dedup:${id}`));
        await within(back.exec(), timeoutMs).catch((err) =>
          opts.onGiveBackFailed?.(err, {
            windows: ids.map((id) => `${id}:${current}`),
            claims: claimed.map((id) => `dedup:${id}`),
          }),
        );
      }
      if (revoked) return { revocation: 'revoked', limits: [], claims: new Map() };
      const reset = (current + 1) * windowMs;
      const limits: Admission['limits'] = quotas.map((q, i) => {
        const remaining = q.perMinute - (used[i]! + q.cost);
        return { success: remaining >= 0, limit: q.perMinute, remaining, reset };
      });
      const claims = new Map<string, ClaimState>();
      if (refused) return { revocation: 'ok', limits, claims };
      for (const id of claimed) claims.set(id, 'new');
      const taken = claim.filter((id, i) => set[i] !== 'OK' && !claims.has(id));
      try {
        for (const [id, state] of await within(claimIds(redis, taken, pendingSeconds), timeoutMs))
          claims.set(id, state);
      } catch {
        return { revocation: 'ok', limits, claims: 'unavailable' };
      }
      return { revocation: 'ok', limits, claims };
    },
  };
}
