import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createClient,
  fileQueue,
  type Interaction,
  type LdrClient,
  type LdrClientOptions,
  type LdrError,
} from './index.ts';

/**
 * A fake of the room's HTTP answers on 127.0.0.1: each test decides what `POST /ingestInteraction`
 * (and the reads) answer; every request is recorded with its arrival time.
 */
interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
  body: any;
  bytes: number;
  at: number;
}
type Answer = { status: number; headers?: Record<string, string>; body?: unknown };
let seen: Seen[];
let answer: (req: Seen, n: number) => Answer;
let server: http.Server;
let baseUrl: string;
const dir = mkdtempSync(join(tmpdir(), 'ldr-client-'));
const clients: LdrClient[] = [];

const accepted = (req: Seen): Answer => ({
  status: 202,
  body: {
    accepted: req.body.events.length,
    duplicates: 0,
    results: req.body.events.map((e: Interaction) => ({ id: e.id, status: 'accepted' })),
  },
});
const problem = (
  status: number,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) => ({
  status,
  headers: { 'content-type': 'application/problem+json', ...headers },
  body: { type: 'about:blank', title: String(status), status, ...extra },
});

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const rec: Seen = {
        method: req.method!,
        url: req.url!,
        auth: req.headers.authorization,
        body: raw.length ? JSON.parse(raw.toString()) : undefined,
        bytes: raw.length,
        at: Date.now(),
      };
      seen.push(rec);
      const a = answer(rec, seen.length);
      res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
      res.end(a.body === undefined ? '' : JSON.stringify(a.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  seen = [];
  answer = accepted;
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
});

function client(o: Partial<LdrClientOptions> = {}) {
  const c = createClient({
    baseUrl,
    token: () => 't',
    studentId: 'stu-1',
    instanceId: 'app-1',
    flushAt: 1000,
    flushIntervalMs: 60_000,
    retry: { minDelayMs: 20, maxDelayMs: 100 },
    listen: false,
    ...o,
  });
  clients.push(c);
  return c;
}

/** Polls until `check` holds; fails after the deadline. */
async function until(check: () => boolean, deadlineMs = 5000) {
  const end = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met before the deadline');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const quiz = { quizId: 'q1', correct: true, score: 1 };
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('track and send', () => {
  it('assigns UUIDv7 ids and posts the events as one batch to ingestInteraction', async () => {
    const c = client();
    const a = await c.track('quiz_answer', quiz, { topic: 'python.loops' });
    const [b] = await c.send([
      {
        studentId: 'stu-1',
        instanceId: 'app-1',
        occurredAt: new Date().toISOString(),
        kind: 'session',
        payload: { action: 'start' },
      },
    ]);
    expect(a).toMatch(UUID_V7);
    expect(b).toMatch(UUID_V7);
    expect(await c.flush()).toEqual({ delivered: 2, dropped: 0, remaining: 0 });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.url).toBe('/ingestInteraction');
    expect(seen[0]!.auth).toBe('Bearer t');
    expect(seen[0]!.body.events.map((e: Interaction) => e.id)).toEqual([a, b]);
    expect(seen[0]!.body.events[0]).toMatchObject({
      kind: 'quiz_answer',
      payload: quiz,
      topic: 'python.loops',
      studentId: 'stu-1',
    });
  });

  it('keeps the same ids on every retry after 503 and a network error', async () => {
    answer = (req, n) => (n === 1 ? problem(503, {}, { 'retry-after': '0' }) : accepted(req));
    const c = client();
    const ids = [await c.track('quiz_answer', quiz), await c.track('quiz_answer', quiz)];
    expect((await c.flush()).remaining).toBe(2);
    await until(() => seen.length === 2);
    expect(seen.map((s) => s.body.events.map((e: Interaction) => e.id))).toEqual([ids, ids]);
    expect((await c.flush()).remaining).toBe(0);
    expect(await c.queued()).toEqual([]);
  });

  it('waits for Retry-After on 429 before trying again', async () => {
    answer = (req, n) => (n === 1 ? problem(429, {}, { 'retry-after': '1' }) : accepted(req));
    const c = client({ retry: { minDelayMs: 1, maxDelayMs: 1 } });
    await c.track('quiz_answer', quiz);
    await c.flush();
    await until(() => seen.length === 2, 5000);
    expect(seen[1]!.at - seen[0]!.at).toBeGreaterThanOrEqual(1000);
  });

  it('backs off exponentially with jitter when no Retry-After is given', async () => {
    answer = (req, n) => (n <= 3 ? problem(503) : accepted(req));
    const c = client({ retry: { minDelayMs: 100, maxDelayMs: 10_000 }, random: () => 1 });
    await c.track('quiz_answer', quiz);
    await c.flush();
    await until(() => seen.length === 4, 5000);
    const gaps = seen.slice(1).map((s, i) => s.at - seen[i]!.at);
    // 100, 200, 400 ms (random() = 1 gives the full step)
    expect(gaps[0]).toBeGreaterThanOrEqual(95);
    expect(gaps[1]).toBeGreaterThanOrEqual(195);
    expect(gaps[2]).toBeGreaterThanOrEqual(395);
  });

  it('drops the events a 400 names, reports them, and delivers the rest; never retries the bad one', async () => {
    answer = (req) =>
      req.body.events.length === 3
        ? problem(400, {
            detail: '1 invalid field(s); nothing was published',
            errors: [{ path: '/events/1/payload/score', message: 'must be between 0 and 1' }],
          })
        : accepted(req);
    const errors: Array<[LdrError, Interaction[]]> = [];
    const c = client({ onError: (e, evs) => errors.push([e, evs]) });
    const ids = [
      await c.track('quiz_answer', quiz),
      await c.track('quiz_answer', { ...quiz, score: 7 }),
      await c.track('quiz_answer', quiz),
    ];
    expect(await c.flush()).toEqual({ delivered: 2, dropped: 1, remaining: 0 });
    expect(seen).toHaveLength(2);
    expect(seen[1]!.body.events.map((e: Interaction) => e.id)).toEqual([ids[0], ids[2]]);
    expect(errors).toHaveLength(1);
    expect(errors[0]![0].status).toBe(400);
    expect(errors[0]![0].message).toContain('/events/1/payload/score must be between 0 and 1');
    expect(errors[0]![1].map((e) => e.id)).toEqual([ids[1]]);
  });

  it.each([403, 413, 415])(
    'drops a batch answered %i that names no event, without retrying',
    async (status) => {
      answer = () => problem(status, { detail: 'no' });
      const errors: LdrError[] = [];
      const c = client({ onError: (e) => errors.push(e) });
      await c.track('quiz_answer', quiz);
      expect(await c.flush()).toEqual({ delivered: 0, dropped: 1, remaining: 0 });
      await new Promise((r) => setTimeout(r, 150)); // longer than the largest backoff: nothing follows
      expect(seen).toHaveLength(1);
      expect(errors.map((e) => e.status)).toEqual([status]);
      expect(errors[0]!.problem?.detail).toBe('no');
    },
  );

  it('asks the token provider again after a 401 and retries once with the fresh token', async () => {
    answer = (req) => (req.auth === 'Bearer fresh' ? accepted(req) : problem(401));
    const calls: boolean[] = [];
    const c = client({
      token: ({ refresh }) => {
        calls.push(refresh);
        return refresh ? 'fresh' : 'stale';
      },
    });
    await c.track('quiz_answer', quiz);
    expect((await c.flush()).delivered).toBe(1);
    expect(seen.map((s) => s.auth)).toEqual(['Bearer stale', 'Bearer fresh']);
    expect(calls).toEqual([false, true]);
  });

  it('keeps the events and reports when the fresh token is refused too (one refresh per attempt)', async () => {
    answer = () => problem(401);
    const errors: LdrError[] = [];
    const c = client({ onError: (e) => errors.push(e), retry: { minDelayMs: 60_000, maxDelayMs: 60_000 } });
    await c.track('quiz_answer', quiz);
    expect(await c.flush()).toEqual({ delivered: 0, dropped: 0, remaining: 1 });
    expect(seen).toHaveLength(2);
    expect(errors.map((e) => [e.status, e.retryable])).toEqual([[401, true]]);
  });
});

describe('batching', () => {
  it('sends at most 500 events per request', async () => {
    const c = client();
    await c.send(
      Array.from({ length: 1200 }, (_, i) => ({
        studentId: 'stu-1',
        instanceId: 'app-1',
        occurredAt: new Date().toISOString(),
        kind: 'session' as const,
        payload: { action: i % 2 ? ('end' as const) : ('start' as const) },
      })),
    );
    expect(await c.flush()).toEqual({ delivered: 1200, dropped: 0, remaining: 0 });
    expect(seen.map((s) => s.body.events.length)).toEqual([500, 500, 200]);
    expect(new Set(seen.flatMap((s) => s.body.events.map((e: Interaction) => e.id))).size).toBe(1200);
  });

  it('keeps every request body at or under 1 MiB', async () => {
    const c = client();
    const text = 'x'.repeat(15_000);
    for (let i = 0; i < 150; i++) await c.track('reflection', { text });
    expect((await c.flush()).delivered).toBe(150);
    expect(seen.length).toBeGreaterThan(1);
    for (const s of seen) expect(s.bytes).toBeLessThanOrEqual(1024 * 1024);
    expect(seen.reduce((n, s) => n + s.body.events.length, 0)).toBe(150);
  });

  it('flushes as soon as flushAt events wait', async () => {
    const c = client({ flushAt: 3 });
    await c.track('quiz_answer', quiz);
    await c.track('quiz_answer', quiz);
    expect(seen).toHaveLength(0);
    await c.track('quiz_answer', quiz);
    await until(() => seen.length === 1);
    expect(seen[0]!.body.events).toHaveLength(3);
  });

  it('flushes flushIntervalMs after the first waiting event otherwise', async () => {
    const c = client({ flushAt: 100, flushIntervalMs: 150 });
    const t0 = Date.now();
    await c.track('quiz_answer', quiz);
    await until(() => seen.length === 1);
    expect(seen[0]!.at - t0).toBeGreaterThanOrEqual(140);
    expect(seen[0]!.body.events).toHaveLength(1);
  });
});

describe('offline queue', () => {
  it('persists events in a file while the room is unreachable; a new client delivers them with the same ids', async () => {
    const path = join(dir, 'queue.json');
    const offline = client({
      queue: fileQueue(path),
      fetch: async () => {
        throw new TypeError('fetch failed');
      },
      retry: { minDelayMs: 60_000, maxDelayMs: 60_000 },
    });
    const ids = [
      await offline.track('quiz_answer', quiz),
      await offline.track('help_request', { text: 'stuck' }),
    ];
    expect((await offline.flush()).remaining).toBe(2);
    expect(JSON.parse(readFileSync(path, 'utf8')).map((q: { id: string }) => q.id)).toEqual(ids);

    // "reload": a new client on the same file, online now
    const online = client({ queue: fileQueue(path) });
    expect((await online.queued()).map((e) => e.id)).toEqual(ids);
    expect(await online.flush()).toEqual({ delivered: 2, dropped: 0, remaining: 0 });
    expect(seen[0]!.body.events.map((e: Interaction) => e.id)).toEqual(ids);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual([]);
  });

  it('flushes when the browser comes back online, and sends keepalive chunks ≤ 64 KiB on pagehide', async () => {
    const win = new EventTarget();
    (globalThis as any).window = win;
    try {
      let online = false;
      const inits: RequestInit[] = [];
      const c = client({
        listen: true,
        retry: { minDelayMs: 60_000, maxDelayMs: 60_000 },
        fetch: async (url, init) => {
          inits.push(init!);
          if (!online) throw new TypeError('offline');
          return fetch(url, init);
        },
      });
      const text = 'y'.repeat(10_000);
      for (let i = 0; i < 12; i++) await c.track('reflection', { text });
      expect((await c.flush()).remaining).toBe(12);

      win.dispatchEvent(new Event('pagehide'));
      const keepalive = inits.filter((i) => i.keepalive);
      // the oldest events that fit the browser's 64 KiB keepalive budget (shared by all such requests)
      expect(keepalive.length).toBeGreaterThan(0);
      const total = keepalive.reduce((n, i) => n + Buffer.byteLength(String(i.body)), 0);
      expect(total).toBeLessThanOrEqual(64 * 1024);
      const sent = keepalive.flatMap((i) => JSON.parse(String(i.body)).events);
      expect(sent.length).toBeGreaterThan(1);
      expect(sent.length).toBeLessThan(12);

      online = true;
      win.dispatchEvent(new Event('online'));
      await until(() => seen.reduce((n, s) => n + s.body.events.length, 0) >= 12);
      await until(() => seen.length > 0 && inits.length > keepalive.length + 1);
      const delivered = new Set(seen.flatMap((s) => s.body.events.map((e: Interaction) => e.id)));
      expect(delivered.size).toBe(12);
    } finally {
      delete (globalThis as any).window;
    }
  });
});

describe('reads', () => {
  it('progress, alerts, and history pages following nextCursor', async () => {
    answer = (req) => {
      if (req.url === '/progressApi/students/stu-1')
        return { status: 200, body: { studentId: 'stu-1', topics: [] } };
      if (req.url === '/progressApi/students/stu-1/alerts')
        return { status: 200, body: { alerts: [{ topic: 't' }] } };
      if (req.url.startsWith('/progressApi/students/stu-1/history')) {
        const u = new URL(req.url, baseUrl);
        return u.searchParams.get('cursor') === 'c2'
          ? { status: 200, body: { items: [{ id: 'b' }] } }
          : { status: 200, body: { items: [{ id: 'a' }], nextCursor: 'c2' } };
      }
      return problem(404);
    };
    const c = client();
    expect(await c.progress('stu-1')).toEqual({ studentId: 'stu-1', topics: [] });
    expect(await c.alerts('stu-1')).toEqual([{ topic: 't' }]);
    const pages = [];
    for await (const p of c.history('stu-1', { from: '2024-01-01T00:00:00Z', limit: 1 })) pages.push(p);
    expect(pages.map((p) => p.items.map((i) => i.id))).toEqual([['a'], ['b']]);
    const history = seen.filter((s) => s.url.includes('/history'));
    expect(new URL(history[0]!.url, baseUrl).searchParams.get('from')).toBe('2024-01-01T00:00:00.000Z');
    expect(new URL(history[1]!.url, baseUrl).searchParams.get('cursor')).toBe('c2');
  });

  it('a refused read throws an error naming the fields', async () => {
    answer = () =>
      problem(400, {
        detail: '1 invalid query parameter(s)',
        errors: [{ path: '/query/from', message: 'must be an RFC 3339 timestamp' }],
      });
    const c = client();
    await expect(c.history('stu-1').next()).rejects.toThrow('/query/from must be an RFC 3339 timestamp');
  });
});

describe('uploads', () => {
  it('reports progress up to the full size and returns the lfs:// URI', async () => {
    answer = (req) => {
      if (req.method === 'POST' && req.url === '/lfsProxy/uploads') {
        return {
          status: 201,
          body: {
            artifactId: 'a1',
            uri: 'lfs://a1',
            uploadUrl: `${baseUrl}/bucket/a1`,
            method: 'PUT',
            headers: { 'content-type': req.body.contentType },
            expiresAt: new Date().toISOString(),
          },
        };
      }
      return { status: 200 };
    };
    const progress: number[] = [];
    const bytes = new Uint8Array(300_000).fill(7);
    const put: { size: number }[] = [];
    const fetchSpy: typeof fetch = async (url, init) => {
      if (String(url).endsWith('/bucket/a1')) {
        const body = init?.body as ReadableStream<Uint8Array>;
        let size = 0;
        for await (const chunk of body as any) size += chunk.byteLength;
        put.push({ size });
        return new Response(null, { status: 200 });
      }
      return fetch(url, init);
    };
    // the PUT goes through a fetch of the test's own, which reads the counted stream like a server would
    const c = client({ fetch: fetchSpy });
    const r = await c.upload(bytes, {
      filename: 'p.heic',
      contentType: 'image/heic',
      onProgress: (p) => progress.push(p.loaded),
    });
    expect(r).toEqual({ artifactId: 'a1', uri: 'lfs://a1' });
    expect(put).toEqual([{ size: 300_000 }]);
    expect(progress.at(-1)).toBe(300_000);
    expect(progress.length).toBeGreaterThan(0);
  });

  it('names the offending field when lfsProxy refuses the declaration', async () => {
    answer = () =>
      problem(400, {
        detail: '1 invalid field(s)',
        errors: [{ path: '/contentType', message: 'must be one of video/mp4' }],
      });
    const c = client();
    await expect(
      c.upload(new Uint8Array([1]), { filename: 'x.exe', contentType: 'application/x-msdownload' }),
    ).rejects.toThrow(/\/contentType must be one of video\/mp4/);
  });
});
