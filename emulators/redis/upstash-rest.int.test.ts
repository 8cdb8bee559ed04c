import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Ratelimit } from '@upstash/ratelimit';
import { errors, Redis } from '@upstash/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upstashRequester } from '../../shared/upstash-http.ts';
import { type RedisServer, startRedisServer } from './redis-server.ts';
import { startUpstashRest, stripKeyLocking, type UpstashRest } from './upstash-rest.ts';

const TOKEN = 'local-test-token';
const SHEBANG_SCRIPT = "#!lua flags=allow-key-locking\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])";

let dir: string;
let redisPort: number;
let redisServer: RedisServer | undefined;
let rest: UpstashRest;
let redis: Redis;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function raw(pathname: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${rest.url}${pathname}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}

async function eventually<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const key = (name: string) => `${name}:${Math.random().toString(36).slice(2)}`;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ldr-redis-'));
  redisPort = await freePort();
  redisServer = await startRedisServer({ port: redisPort, dir });
  rest = await startUpstashRest({ port: 0, redisPort, token: TOKEN });
  redis = new Redis({ url: rest.url, token: TOKEN, enableTelemetry: false });
});

afterAll(async () => {
  await rest?.stop();
  await redisServer?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.each([
  ['its own fetch client', () => new Redis({ url: rest.url, token: TOKEN, enableTelemetry: false })],
  ['the room’s node:http transport', () => new Redis(upstashRequester({ url: rest.url, token: TOKEN }))],
])('@upstash/redis with %s against the local endpoint', (_, client) => {
  beforeAll(() => {
    redis = client();
  });

  it('sets and gets strings, numbers and JSON objects', async () => {
    const k = key('str');
    expect(await redis.set(k, 'héllo wörld ✓')).toBe('OK');
    expect(await redis.get(k)).toBe('héllo wörld ✓');
    await redis.set(`${k}:n`, 42);
    expect(await redis.get(`${k}:n`)).toBe(42);
    await redis.set(`${k}:o`, { a: 1, b: ['x', null], c: { d: true } });
    expect(await redis.get(`${k}:o`)).toEqual({ a: 1, b: ['x', null], c: { d: true } });
    expect(await redis.get(key('missing'))).toBeNull();
    expect(await redis.set(`${k}:ok`, 'OK')).toBe('OK');
    expect(await redis.get(`${k}:ok`)).toBe('OK');
  });

  it('incr, expire and ttl', async () => {
    const k = key('ctr');
    expect(await redis.incr(k)).toBe(1);
    expect(await redis.incrby(k, 5)).toBe(6);
    expect(await redis.ttl(k)).toBe(-1);
    expect(await redis.expire(k, 60)).toBe(1);
    const ttl = await redis.ttl(k);
    expect(ttl).toBeGreaterThan(55);
    expect(ttl).toBeLessThanOrEqual(60);
  });

  it('set nx ex: the dedup pattern', async () => {
    const k = key('dedup');
    expect(await redis.set(k, '1', { nx: true, ex: 30 })).toBe('OK');
    expect(await redis.set(k, '1', { nx: true, ex: 30 })).toBeNull();
    expect(await redis.ttl(k)).toBeGreaterThan(0);
  });

  it('hashes and lists keep their shapes', async () => {
    const k = key('h');
    await redis.hset(k, { name: 'ada', age: 36 });
    expect(await redis.hgetall(k)).toEqual({ name: 'ada', age: 36 });
    await redis.rpush(`${k}:l`, 'a', 'b', 'OK');
    expect(await redis.lrange(`${k}:l`, 0, -1)).toEqual(['a', 'b', 'OK']);
  });

  it('pipeline', async () => {
    const k = key('pipe');
    const p = redis.pipeline();
    p.set(k, 'v');
    p.get(k);
    p.incr(`${k}:n`);
    p.hset(k, { f: 1 }); // WRONGTYPE
    const results = await p.exec({ keepErrors: true });
    expect(results.map((r) => r.result)).toEqual(['OK', 'v', 1, undefined]);
    expect(results[3]!.error).toMatch(/WRONGTYPE/);
  });

  it('multi-exec runs as a transaction', async () => {
    const k = key('tx');
    const tx = redis.multi();
    tx.set(k, 10);
    tx.incrby(k, 5);
    tx.get(k);
    tx.expire(k, 30);
    expect(await tx.exec()).toEqual(['OK', 15, 15, 1]);
  });

  it('multi-exec blocks do not interleave under concurrency', async () => {
    const k = key('atomic');
    const runs = await Promise.all(
      Array.from({ length: 30 }, () => redis.multi().incr(k).incr(k).exec<[number, number]>()),
    );
    for (const [a, b] of runs) expect(b).toBe(a + 1);
    expect(await redis.get(k)).toBe(60);
  });

  it('eval, including the allow-key-locking shebang and nested OK', async () => {
    const k = key('eval');
    expect(await redis.eval('return {KEYS[1], ARGV[1], 7}', [k], ['v'])).toEqual([k, 'v', 7]);
    expect(await redis.eval(SHEBANG_SCRIPT, [k], [3])).toBe(3);
    expect(await redis.eval("return {redis.call('SET', KEYS[1], 'x')}", [`${k}:s`], [])).toEqual(['OK']);
  });

  it('scripts: EVALSHA of the original text falls back to EVAL, then hits', async () => {
    const k = key('script');
    const script = redis.createScript<number>(SHEBANG_SCRIPT);
    expect(await script.exec([k], ['2'])).toBe(2); // NOSCRIPT -> EVAL
    expect(await script.evalsha([k], ['2'])).toBe(4); // mapped sha -> rewritten script
    const other = `${SHEBANG_SCRIPT} -- ${k}`;
    const sha = await redis.scriptLoad(other);
    expect(sha).toBe(createHash('sha1').update(other).digest('hex'));
    expect(await redis.evalsha(sha, [k], [1])).toBe(5);
    expect(await redis.scriptExists(sha, '0'.repeat(40))).toEqual([1, 0]);
    await expect(redis.evalsha('0'.repeat(40), [k], [])).rejects.toThrow(/NOSCRIPT/);
  });

  it('counts billed commands as Upstash does: a script is EVAL plus every command it runs', async () => {
    const k = key('billed');
    const before = (await raw('/_stats')).json;
    await redis.eval("redis.call('SET', KEYS[1], 1); redis.call('INCR', KEYS[1]); return 0", [k], []);
    await redis.pipeline().get(k).get(k).exec();
    await redis.get(k);
    const after = (await raw('/_stats')).json;
    expect(Number(after.commands) - Number(before.commands)).toBe(4); // EVAL, GET, GET, GET
    expect(Number(after.billed) - Number(before.billed)).toBe(6); // + SET and INCR inside the script
  });
});

describe('@upstash/ratelimit against the local endpoint', () => {
  for (const [name, limiter] of [
    ['slidingWindow', Ratelimit.slidingWindow(5, '10 s')],
    ['fixedWindow', Ratelimit.fixedWindow(5, '10 s')],
  ] as const) {
    it(`${name}: allows 5, denies the 6th`, async () => {
      const ratelimit = new Ratelimit({
        redis,
        limiter,
        prefix: key(name),
        analytics: false,
        ephemeralCache: false,
      });
      const results = [];
      for (let i = 0; i < 6; i++) results.push(await ratelimit.limit('user-1'));
      expect(results.map((r) => r.success)).toEqual([true, true, true, true, true, false]);
      expect(results.map((r) => r.remaining)).toEqual([4, 3, 2, 1, 0, 0]);
      const last = results[5]!;
      expect(last.limit).toBe(5);
      expect(last.reset).toBeGreaterThan(Date.now());
      expect(last.reset).toBeLessThanOrEqual(Date.now() + 10_000);
      expect((await ratelimit.limit('user-2')).success).toBe(true);
      expect((await ratelimit.getRemaining('user-1')).remaining).toBe(0);
    });
  }
});

describe('the room’s transport (shared/upstash-http.ts)', () => {
  it('refuses a wrong token as an UpstashError naming the command', async () => {
    const wrong = new Redis(upstashRequester({ url: rest.url, token: 'wrong' }));
    const err = await wrong.get('x').catch((e: Error) => e);
    expect(err).toBeInstanceOf(errors.UpstashError);
    expect(String(err)).toMatch(/get/i);
  });

  it('retries a refused connection once, then fails', async () => {
    const port = await freePort();
    let attempts = 0;
    const counting = upstashRequester({
      url: `http://127.0.0.1:${port}`,
      token: TOKEN,
      retries: 1,
      backoffMs: 10,
    });
    const request = counting.request.bind(counting);
    const down = new Redis({
      request: (r) => {
        attempts++;
        return request(r);
      },
    });
    await expect(down.get('x')).rejects.toThrow(/ECONNREFUSED/);
    expect(attempts).toBe(1); // one request, retried inside the transport
    const started = Date.now();
    await expect(counting.request({ body: ['get', 'x'] })).rejects.toThrow(/ECONNREFUSED/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(10); // the retry waited its backoff
  });
});

describe('the REST protocol', () => {
  it('refuses a wrong or missing token with 401', async () => {
    const wrong = new Redis({ url: rest.url, token: 'wrong', enableTelemetry: false });
    await expect(wrong.get('x')).rejects.toThrow(/Unauthorized/);
    const res = await fetch(`${rest.url}/`, { method: 'POST', body: '["PING"]' });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('invalid_token');
  });

  it('encodes strings as base64 only when asked, except OK', async () => {
    const k = key('enc');
    const b64 = { 'Upstash-Encoding': 'base64' };
    expect((await raw('/', ['SET', k, 'héllo'], b64)).json).toEqual({ result: 'OK' });
    expect((await raw('/', ['GET', k], b64)).json).toEqual({
      result: Buffer.from('héllo').toString('base64'),
    });
    expect((await raw('/', ['GET', k])).json).toEqual({ result: 'héllo' });
    expect((await raw('/', ['PING'], b64)).json).toEqual({ result: Buffer.from('PONG').toString('base64') });
    expect(
      (
        await raw('/pipeline', [
          ['SET', k, 'OK'],
          ['GET', k],
          ['INCR', k],
        ])
      ).json,
    ).toEqual([{ result: 'OK' }, { result: 'OK' }, { error: 'ERR value is not an integer or out of range' }]);
  });

  it('answers command errors with 400 and bad requests clearly', async () => {
    const res = await raw('/', ['GET']);
    expect(res.status).toBe(400);
    expect(res.json.error).toMatch(/wrong number of arguments/);
    expect((await raw('/', 'not json')).status).toBe(400);
    expect((await raw('/', [])).status).toBe(400);
    expect((await raw('/', ['SUBSCRIBE', 'c'])).status).toBe(400);
  });

  it('supports path-style commands and /healthz', async () => {
    const k = key('path');
    expect((await raw(`/set/${encodeURIComponent(k)}/bar`)).json).toEqual({ result: 'OK' });
    expect((await raw(`/get/${encodeURIComponent(k)}`)).json).toEqual({ result: 'bar' });
    expect((await raw(`/set/${encodeURIComponent(k)}`, 'from body')).json).toEqual({ result: 'OK' });
    expect((await raw(`/get/${encodeURIComponent(k)}`)).json).toEqual({ result: 'from body' });
    const health = await fetch(`${rest.url}/healthz`);
    expect(health.status).toBe(200);
  });

  it('strips only the allow-key-locking flag', () => {
    expect(stripKeyLocking('#!lua flags=allow-key-locking\nreturn 1')).toBe('\nreturn 1');
    expect(stripKeyLocking('#!lua flags=no-writes,allow-key-locking\nreturn 1')).toBe(
      '#!lua flags=no-writes\nreturn 1',
    );
    expect(stripKeyLocking('#!lua flags=no-writes\nreturn 1')).toBe('#!lua flags=no-writes\nreturn 1');
    expect(stripKeyLocking('return 1')).toBe('return 1');
  });
});

describe('Redis outage', () => {
  it('fails fast while Redis is down and recovers when it is back on the same port', async () => {
    await redisServer!.stop();
    redisServer = undefined;

    const started = Date.now();
    await expect(redis.get('x')).rejects.toThrow(/unavailable/);
    await expect(redis.pipeline().get('x').exec()).rejects.toThrow(/unavailable/);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect((await fetch(`${rest.url}/healthz`)).status).toBe(503);

    redisServer = await startRedisServer({ port: redisPort, dir });
    await eventually(() => redis.ping(), 5_000);
    const k = key('after');
    await redis.set(k, 'back');
    expect(await redis.get(k)).toBe('back');
    // Redis lost its script cache; the endpoint's sha map still serves the client's EVALSHA.
    const ratelimit = new Ratelimit({
      redis,
      limiter: Ratelimit.slidingWindow(1, '10 s'),
      prefix: key('rl-after'),
      analytics: false,
      ephemeralCache: false,
    });
    expect((await ratelimit.limit('u')).success).toBe(true);
    expect((await ratelimit.limit('u')).success).toBe(false);
    expect((await fetch(`${rest.url}/healthz`)).status).toBe(200);
  });
});
