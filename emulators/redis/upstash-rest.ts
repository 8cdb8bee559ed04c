import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type ChainableCommander, Redis, ReplyError } from 'ioredis';
import { createLogger } from '../../shared/log.ts';

/**
 * An Upstash-compatible REST endpoint (the subset @upstash/redis and @upstash/ratelimit use) in front of a
 * local redis-server:
 *   POST /            ["SET","k","v"]                -> {"result": …} | 400 {"error": …}
 *   POST /pipeline    [["SET","k","v"],["GET","k"]]  -> [{"result": …} | {"error": …}, …]
 *   POST /multi-exec  same, run inside MULTI/EXEC
 *   GET|POST /set/k/v path-style command (a POST body is appended as the last argument)
 *   GET /healthz      no auth; 200 when Redis is connected, 503 otherwise
 * With `Upstash-Encoding: base64` every string in a result is base64, except a top-level "OK".
 */

const log = createLogger('upstash-rest');

const MAX_BODY_BYTES = 10 * 1024 * 1024;
const OK = Buffer.from('OK');
/** Commands that would change the state of the shared connection. */
// biome-ignore format: a table
const REFUSED = new Set([
  'subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe', 'monitor',
  'multi', 'exec', 'discard', 'watch', 'unwatch', 'select', 'quit', 'reset', 'hello', 'auth',
]);

/**
 * Round trips (HTTP requests answered) and commands, counted since start; also served at GET /_stats, which
 * adds `billed`: the commands as Upstash bills them — every command sent plus every command a script runs
 * (Upstash's own cost table for @upstash/ratelimit counts `EVAL, GET, GET, INCR, PEXPIRE` as 5 commands:
 * https://upstash.com/docs/redis/sdks/ratelimit-ts/costs). Read from Redis's `INFO commandstats` (which
 * counts commands called from scripts too), so it assumes this endpoint is Redis's only client.
 */
export interface RestStats {
  requests: number;
  commands: number;
  byCommand: Record<string, number>;
}

export interface UpstashRest {
  url: string;
  port: number;
  stats: RestStats;
  /** the commands as Upstash bills them (see RestStats), counted by Redis */
  billed(): Promise<{ total: number; byCommand: Record<string, number> }>;
  stop(): Promise<void>;
}

type Reply = unknown;
type Prepared = { args: string[]; fix?: (reply: Reply) => Reply };
class ClientError extends Error {}

export async function startUpstashRest(opts: {
  port: number;
  redisPort: number;
  token: string;
}): Promise<UpstashRest> {
  if (!opts.token) throw new Error('startUpstashRest: token must not be empty');
  const token = Buffer.from(`Bearer ${opts.token}`);

  const redis = new Redis({
    host: '127.0.0.1',
    port: opts.redisPort,
    protocol: 2, // Upstash answers in RESP2 shapes (flat arrays, doubles as strings)
    connectionName: 'upstash-rest',
    disableClientInfo: true,
    enableOfflineQueue: false, // fail fast while Redis is down…
    maxRetriesPerRequest: 0,
    connectTimeout: 1_000,
    commandTimeout: 5_000,
    retryStrategy: (times) => Math.min(times * 50, 500), // …and keep reconnecting
  });
  let down = false;
  redis.on('ready', () => {
    if (down) log.info({ redisPort: opts.redisPort }, 'redis reachable again');
    down = false;
  });
  redis.on('error', (err) => {
    if (!down) log.warn({ redisPort: opts.redisPort, err: err.message }, 'redis unreachable');
    down = true;
  });
  const scripts = new ScriptMap();
  const stats: RestStats = { requests: 0, commands: 0, byCommand: {} };
  const count = (args: string[]) => {
    const name = String(args[0] ?? '').toLowerCase();
    stats.commands++;
    stats.byCommand[name] = (stats.byCommand[name] ?? 0) + 1;
  };

  // commands Redis ran since this endpoint started (scripts' commands included), minus its own INFO/CLIENT
  let base: Record<string, number> = {};
  const executed = async () => {
    const info = String(await redis.info('commandstats'));
    const byCommand: Record<string, number> = {};
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      if (!/^(info|client|hello|command|config)\b/.test(m[1]!)) byCommand[m[1]!] = Number(m[2]);
    }
    return byCommand;
  };
  const billed = async () => {
    const now = await executed();
    // Redis restarted: its counters started again
    if (Object.entries(base).some(([name, n]) => (now[name] ?? 0) < n)) base = {};
    const byCommand: Record<string, number> = {};
    let total = 0;
    for (const [name, n] of Object.entries(now)) {
      const d = n - (base[name] ?? 0);
      if (d > 0) byCommand[name] = d;
      total += d;
    }
    return { total, byCommand };
  };

  const server = http.createServer((req, res) => {
    handle(req).then(
      ({ status, body, headers }) => send(res, status, body, headers),
      (err: unknown) => {
        log.error({ err }, 'unexpected error');
        send(res, 500, { error: 'ERR internal error' });
      },
    );
  });

  async function handle(
    req: http.IncomingMessage,
  ): Promise<{ status: number; body: unknown; headers?: Record<string, string> }> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz' && req.method === 'GET') {
      const ready = redis.status === 'ready';
      return {
        status: ready ? 200 : 503,
        body: { status: ready ? 'ok' : 'unavailable', redis: redis.status },
      };
    }
    if (!authorized(req.headers.authorization)) {
      return {
        status: 401,
        body: { error: 'Unauthorized' },
        headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
      };
    }
    if (req.method !== 'POST' && req.method !== 'GET') {
      return { status: 405, body: { error: 'ERR method not allowed' } };
    }
    if (url.pathname === '/_stats' && req.method === 'GET') {
      const b = await billed().catch(() => undefined);
      return {
        status: 200,
        body: { ...stats, billed: b?.total ?? null, billedByCommand: b?.byCommand ?? null },
      };
    }
    stats.requests++;
    const base64 = String(req.headers['upstash-encoding'] ?? '').toLowerCase() === 'base64';
    try {
      const text = await readBody(req);
      if (url.pathname === '/pipeline' || url.pathname === '/multi-exec') {
        const commands = parseJson(text);
        if (!Array.isArray(commands) || commands.length === 0) {
          throw new ClientError('ERR expected an array of commands');
        }
        const prepared = commands.map((c) => {
          const args = toArgs(c);
          count(args);
          return prepare(args);
        });
        const replies = await pipeline(prepared, url.pathname === '/multi-exec');
        return {
          status: 200,
          body: replies.map((r) => ('error' in r ? r : { result: encode(r.result, base64) })),
        };
      }
      const args = url.pathname === '/' ? toArgs(parseJson(text)) : pathArgs(url.pathname, req.method, text);
      count(args);
      const { args: sent, fix } = prepare(args);
      log.debug({ command: sent[0] }, 'command');
      const reply = await redis.callBuffer(sent[0]!, ...sent.slice(1));
      return { status: 200, body: { result: encode(fix ? fix(reply) : reply, base64) } };
    } catch (err) {
      if (err instanceof ClientError || err instanceof ReplyError) {
        return { status: 400, body: { error: (err as Error).message } };
      }
      log.warn({ err: (err as Error).message }, 'redis unavailable');
      return { status: 503, body: { error: `ERR redis unavailable: ${(err as Error).message}` } };
    }
  }

  /** Runs commands in one round trip; a transaction aborted by Redis (EXECABORT) throws a ReplyError. */
  async function pipeline(prepared: Prepared[], transaction: boolean) {
    const chain: ChainableCommander = transaction ? redis.multi() : redis.pipeline();
    for (const { args } of prepared) chain.callBuffer(args[0]!, ...args.slice(1));
    const results = await chain.exec();
    if (!results) throw new ReplyError('EXECABORT Transaction discarded');
    return results.map(([err, reply], i): { error: string } | { result: Reply } => {
      if (!err) return { result: prepared[i]!.fix ? prepared[i]!.fix!(reply) : reply };
      if (err instanceof ReplyError) return { error: err.message };
      throw err; // connection trouble: fail the whole request
    });
  }

  /** Validates a command, refuses connection-state commands, and rewrites scripts for Redis 7.0. */
  function prepare(args: string[]): Prepared {
    const name = args[0]!.toLowerCase();
    if (REFUSED.has(name)) {
      throw new ClientError(`ERR command '${args[0]}' is not supported by this endpoint`);
    }
    return scripts.rewrite(name, args);
  }

  function authorized(header: string | undefined): boolean {
    const given = Buffer.from(header ?? '');
    return given.length === token.length && timingSafeEqual(given, token);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  await waitForReady(redis, 3_000).then(
    async () => {
      base = await executed();
    },
    () => log.warn({ redisPort: opts.redisPort }, 'redis not reachable yet; answering 503 until it is'),
  );
  log.info({ port, redisPort: opts.redisPort }, 'upstash rest endpoint listening');

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stats,
    billed,
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections(); // the client keeps connections alive
      await closed;
      redis.disconnect();
    },
  };
}

/**
 * @upstash/ratelimit scripts start with `#!lua flags=allow-key-locking`, a flag Redis 7.0 rejects. The client
 * computes EVALSHA hashes over the original text, so remember sha1(original) -> rewritten script and turn an
 * EVALSHA of a known hash into an EVAL of the rewritten script. Unknown hashes go to Redis unchanged, which
 * answers NOSCRIPT, and the client falls back to EVAL.
 */
class ScriptMap {
  private readonly byOriginalSha = new Map<string, string>();

  rewrite(name: string, args: string[]): Prepared {
    const [cmd, first, ...rest] = args as [string, string | undefined, ...string[]];
    if ((name === 'eval' || name === 'eval_ro') && first !== undefined) {
      return { args: [cmd, this.remember(first), ...rest] };
    }
    if ((name === 'evalsha' || name === 'evalsha_ro') && first !== undefined) {
      const script = this.byOriginalSha.get(first.toLowerCase());
      return { args: script ? [name === 'evalsha' ? 'eval' : 'eval_ro', script, ...rest] : args };
    }
    if (name === 'script' && first !== undefined) {
      const sub = first.toLowerCase();
      if (sub === 'load' && rest[0] !== undefined) {
        const sha = sha1(rest[0]);
        return { args: [cmd, first, this.remember(rest[0])], fix: () => sha };
      }
      if (sub === 'exists') {
        const shas = rest.map((s) => {
          const script = this.byOriginalSha.get(s.toLowerCase());
          return script ? sha1(script) : s;
        });
        return { args: [cmd, first, ...shas] };
      }
      if (sub === 'flush') this.byOriginalSha.clear();
    }
    return { args };
  }

  private remember(script: string): string {
    const rewritten = stripKeyLocking(script);
    if (rewritten !== script) this.byOriginalSha.set(sha1(script), rewritten);
    return rewritten;
  }
}

/** Drops `allow-key-locking` from a leading `#!lua flags=…` line; the line is kept (empty) so line numbers hold. */
export function stripKeyLocking(script: string): string {
  const first = /^#!lua[^\n]*/.exec(script)?.[0];
  if (!first?.includes('allow-key-locking')) return script;
  const flags = /flags=(\S*)/.exec(first)?.[1]?.split(',') ?? [];
  const kept = flags.filter((f) => f && f !== 'allow-key-locking');
  const line = kept.length ? `#!lua flags=${kept.join(',')}` : '';
  return line + script.slice(first.length);
}

/** Upstash reply encoding: strings base64 (when asked) except a top-level "OK"; numbers and null unchanged. */
export function encode(reply: Reply, base64: boolean, top = true): unknown {
  if (typeof reply === 'string') reply = Buffer.from(reply);
  if (Buffer.isBuffer(reply)) {
    if (!base64) return reply.toString('utf8');
    return top && reply.equals(OK) ? 'OK' : reply.toString('base64');
  }
  if (Array.isArray(reply)) return reply.map((r) => encode(r, base64, false));
  if (reply instanceof Error) return encode(reply.message, base64, false);
  // ioredis turns HGETALL into an object even for callBuffer; Upstash answers the flat RESP2 array.
  if (reply && typeof reply === 'object') return encode(Object.entries(reply).flat(), base64, false);
  return reply ?? null;
}

function toArgs(value: unknown): string[] {
  const ok =
    Array.isArray(value) &&
    value.length > 0 &&
    value.every((v) => ['string', 'number', 'boolean'].includes(typeof v));
  if (!ok) throw new ClientError('ERR a command must be a non-empty array of strings, numbers or booleans');
  return (value as unknown[]).map(String);
}

function pathArgs(pathname: string, method: string | undefined, body: string): string[] {
  let args: string[];
  try {
    args = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    throw new ClientError('ERR malformed path');
  }
  if (method === 'POST' && body) args.push(body);
  if (args.length === 0) throw new ClientError('ERR no command');
  return args;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ClientError('ERR request body is not valid JSON');
  }
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new ClientError('ERR request body too large'));
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function waitForReady(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new Error('timeout'));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');
