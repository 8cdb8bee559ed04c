/**
 * @ldr/client — the room's client SDK for browsers and Node (ESM, no dependencies; `fetch` only).
 *
 * - `track` / `send`: interactions get a UUIDv7 id here, before they are queued, so every retry of an
 *   event carries the same id and the room counts it once. Events wait in a persisted queue (IndexedDB in
 *   browsers, a file or memory in Node), go out in batches (≤ 500 events, ≤ 1 MiB) when `flushAt` are
 *   waiting or after `flushIntervalMs`, and are retried with exponential backoff and jitter (429/503 wait
 *   for `Retry-After`). A 4xx that cannot succeed drops the events it names and reports them to `onError`.
 * - `upload` / `downloadUrl`: large files through lfsProxy's signed URLs (client/lfs.ts).
 * - `progress`, `history` (async iterator over pages), `alerts`: progressApi reads.
 */
import { downloadUrl, LfsError, type UploadArtifactOptions, uploadArtifact } from './lfs.ts';
import { indexedDbQueue, memoryQueue, type QueuedEvent, type QueueStore } from './queue.ts';
import type {
  Alert,
  HistoryPage,
  IngestResult,
  Interaction,
  InteractionEnvelope,
  Kind,
  Payloads,
  Problem,
  Progress,
} from './types.ts';
import { KINDS } from './types.ts';
import { uuidv7 } from './uuidv7.ts';

export * from './lfs.ts';
export * from './queue.ts';
export * from './types.ts';
export { uuidv7 } from './uuidv7.ts';

export type FunctionName = 'ingestInteraction' | 'lfsProxy' | 'progressApi';

export interface LdrClientOptions {
  /** where the functions live: `<baseUrl>/<functionName>`, e.g. `http://127.0.0.1:5001/demo-ldr/europe-west3` */
  baseUrl?: string;
  /** per-function URLs; override `baseUrl` */
  urls?: Partial<Record<FunctionName, string>>;
  /** the caller's bearer JWT; called before requests and again with `{refresh: true}` after a 401 */
  token: (o: { refresh: boolean }) => Promise<string> | string;
  /** defaults for `track` */
  studentId?: string;
  instanceId?: string;
  /** the offline queue; default: IndexedDB in browsers, memory elsewhere (use `fileQueue(path)` in Node) */
  queue?: QueueStore;
  fetch?: typeof fetch;
  /** send as soon as this many events wait (default 20) */
  flushAt?: number;
  /** otherwise send this long after the first waiting event (default 2000 ms) */
  flushIntervalMs?: number;
  /** per request (default 500 events, 1 MiB: the room's limits) */
  maxBatchEvents?: number;
  maxBatchBytes?: number;
  /** exponential backoff between retries: min · 2^attempt, capped, with jitter (defaults 500 ms, 60 s) */
  retry?: { minDelayMs?: number; maxDelayMs?: number };
  /** events the room refused for good (dropped from the queue), or a failure worth knowing about */
  onError?: (error: LdrError, events: Interaction[]) => void;
  /** per-event results of every accepted request */
  onDelivered?: (results: IngestResult['results']) => void;
  /** listen to `online` and `pagehide` (default: when `window` exists) */
  listen?: boolean;
  /** for tests: the jitter source (default Math.random) */
  random?: () => number;
}

export interface TrackOptions {
  studentId?: string;
  instanceId?: string;
  topic?: string;
  sponsor?: string;
  artifacts?: string[];
  /** default: now */
  occurredAt?: string | Date;
  /** default: a new UUIDv7 */
  id?: string;
}

export interface FlushResult {
  delivered: number;
  dropped: number;
  /** still queued (a retry is scheduled when > 0) */
  remaining: number;
}

/** A failed call: the HTTP status and the problem+json when the room answered; a network error otherwise. */
export class LdrError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly problem?: Problem,
    /** whether the same request may succeed later */
    readonly retryable = false,
  ) {
    super(message);
    this.name = 'LdrError';
  }
}

const te = new TextEncoder();
const bytesOf = (s: string) => te.encode(s).length;
/** keepalive bodies share a 64 KiB budget per page; a little is left for other requests */
const KEEPALIVE_BUDGET = 60 * 1024;
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

export type LdrClient = ReturnType<typeof createClient>;

export function createClient(o: LdrClientOptions) {
  const f = o.fetch ?? ((...a: Parameters<typeof fetch>) => globalThis.fetch(...a));
  const flushAt = o.flushAt ?? 20;
  const flushIntervalMs = o.flushIntervalMs ?? 2000;
  const maxEvents = Math.min(o.maxBatchEvents ?? 500, 500);
  const maxBytes = Math.min(o.maxBatchBytes ?? 1024 * 1024, 1024 * 1024);
  const minDelay = o.retry?.minDelayMs ?? 500;
  const maxDelay = o.retry?.maxDelayMs ?? 60_000;
  const random = o.random ?? Math.random;
  const store = o.queue ?? defaultQueue();
  const onError = o.onError ?? (() => {});

  const urlOf = (fn: FunctionName) => {
    const u = o.urls?.[fn] ?? (o.baseUrl ? `${o.baseUrl.replace(/\/+$/, '')}/${fn}` : undefined);
    if (!u) throw new LdrError(`no URL for ${fn}: set baseUrl or urls.${fn}`);
    return u.replace(/\/+$/, '');
  };

  let pending: QueuedEvent[] = [];
  const ready = store.load().then((list) => {
    pending = list;
  });
  let flushing: Promise<FlushResult> | undefined;
  let attempt = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let lastToken: string | undefined;
  let closed = false;

  async function token(refresh: boolean) {
    lastToken = await o.token({ refresh });
    return lastToken;
  }

  /** fetch with the bearer token; a 401 asks the provider for a fresh token and tries once more */
  async function authed(url: string, init: RequestInit): Promise<Response> {
    const go = async (refresh: boolean) =>
      f(url, {
        ...init,
        headers: {
          ...(init.headers as Record<string, string>),
          authorization: `Bearer ${await token(refresh)}`,
        },
      });
    const res = await go(false);
    if (res.status !== 401) return res;
    await res.body?.cancel().catch(() => {});
    return go(true);
  }

  function schedule(ms: number) {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      void flush().catch(() => {});
    }, ms);
    (timer as { unref?: () => void }).unref?.();
  }

  function backoff(retryAfterMs?: number) {
    if (retryAfterMs !== undefined) return retryAfterMs + random() * Math.min(1000, retryAfterMs * 0.1);
    const cap = Math.min(maxDelay, minDelay * 2 ** attempt);
    return cap / 2 + (random() * cap) / 2;
  }

  /** The oldest events that fit one request. */
  function nextBatch(from: QueuedEvent[], limitBytes: number, limitEvents: number): QueuedEvent[] {
    const batch: QueuedEvent[] = [];
    let size = bytesOf('{"events":[]}');
    for (const q of from) {
      const n = bytesOf(JSON.stringify(q.event)) + (batch.length ? 1 : 0);
      if (batch.length >= limitEvents || size + n > limitBytes) break;
      batch.push(q);
      size += n;
    }
    // one event larger than the limit goes alone: the room answers 413 and it is dropped
    if (!batch.length && from.length && limitBytes >= maxBytes) batch.push(from[0]!);
    return batch;
  }

  async function forget(ids: string[]) {
    const gone = new Set(ids);
    pending = pending.filter((q) => !gone.has(q.id));
    await store.remove(ids);
  }

  type Outcome = { delivered: number; dropped: number; retryAfterMs?: number; retry: boolean };

  async function post(batch: QueuedEvent[]): Promise<Outcome> {
    let res: Response;
    try {
      res = await authed(urlOf('ingestInteraction'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ events: batch.map((q) => q.event) }),
      });
    } catch (err) {
      if (err instanceof LdrError) throw err;
      return { delivered: 0, dropped: 0, retry: true };
    }
    if (res.status === 202 || res.status === 200) {
      const result = (await res.json().catch(() => undefined)) as IngestResult | undefined;
      await forget(batch.map((q) => q.id));
      if (result) o.onDelivered?.(result.results);
      return { delivered: batch.length, dropped: 0, retry: false };
    }
    const problem = await readProblem(res);
    const message = describe(res.status, problem);
    if (res.status === 401 || RETRYABLE.has(res.status) || res.status >= 500) {
      // a token that stays refused is reported, but the events are fine: they wait for a better token
      if (res.status === 401)
        onError(
          new LdrError(message, 401, problem, true),
          batch.map((q) => q.event),
        );
      return {
        delivered: 0,
        dropped: 0,
        retry: true,
        ...(retryAfter(res) !== undefined ? { retryAfterMs: retryAfter(res)! } : {}),
      };
    }
    // 400, 403, 413, 415 …: sending the same again cannot succeed. Drop the events the problem names
    // (`/events/<i>/…`), or the whole batch when it names none; the others go again.
    const named = new Set<number>();
    for (const p of [...(problem?.errors ?? []).map((e) => e.path), problem?.detail ?? '']) {
      for (const m of p.matchAll(/\/events\/(\d+)/g)) named.add(Number(m[1]));
    }
    const bad =
      named.size && [...named].every((i) => i < batch.length) ? [...named].map((i) => batch[i]!) : batch;
    await forget(bad.map((q) => q.id));
    onError(
      new LdrError(message, res.status, problem, false),
      bad.map((q) => q.event),
    );
    return { delivered: 0, dropped: bad.length, retry: false };
  }

  async function run(): Promise<FlushResult> {
    await ready;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    const total = { delivered: 0, dropped: 0 };
    while (pending.length) {
      const outcome = await post(nextBatch(pending, maxBytes, maxEvents));
      total.delivered += outcome.delivered;
      total.dropped += outcome.dropped;
      if (outcome.retry) {
        schedule(backoff(outcome.retryAfterMs));
        attempt++;
        break;
      }
      attempt = 0;
    }
    return { ...total, remaining: pending.length };
  }

  /** Sends what is queued now; resolves when the queue is empty or a retry has been scheduled. */
  function flush(): Promise<FlushResult> {
    flushing ??= run().finally(() => {
      flushing = undefined;
    });
    return flushing;
  }

  async function enqueue(events: Interaction[]): Promise<string[]> {
    await ready;
    const now = Date.now();
    const items = events.map((event, i) => {
      const id = event.id ?? uuidv7(now);
      return { id, event: { ...event, id }, queuedAt: now + i / 1000 } as QueuedEvent;
    });
    await store.add(items);
    const known = new Set(pending.map((q) => q.id));
    pending.push(...items.filter((q) => !known.has(q.id)));
    if (pending.length >= flushAt) void flush().catch(() => {});
    else if (timer === undefined) schedule(flushIntervalMs);
    return items.map((q) => q.id);
  }

  /** `pagehide`: the page may be gone before a normal request ends; keepalive requests outlive it. */
  function flushKeepalive() {
    if (!pending.length || !lastToken) return;
    let budget = KEEPALIVE_BUDGET;
    let rest = pending;
    while (rest.length && budget > 0) {
      const batch = nextBatch(rest, budget, maxEvents);
      if (!batch.length) break;
      rest = rest.slice(batch.length);
      const body = JSON.stringify({ events: batch.map((q) => q.event) });
      budget -= bytesOf(body);
      // what is not confirmed stays queued and goes again on the next visit: the ids make that safe
      void f(urlOf('ingestInteraction'), {
        method: 'POST',
        keepalive: true,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${lastToken}` },
        body,
      })
        .then((res) => (res.status === 202 ? forget(batch.map((q) => q.id)) : undefined))
        .catch(() => {});
    }
  }

  const onOnline = () => {
    attempt = 0;
    void flush().catch(() => {});
  };
  const listening =
    o.listen ?? (typeof window !== 'undefined' && typeof window.addEventListener === 'function');
  if (listening) {
    window.addEventListener('online', onOnline);
    window.addEventListener('pagehide', flushKeepalive);
  }

  async function getJson<T>(fn: FunctionName, path: string): Promise<T> {
    let res: Response;
    try {
      res = await authed(`${urlOf(fn)}${path}`, { headers: { accept: 'application/json' } });
    } catch (err) {
      throw new LdrError(`${fn} unreachable: ${(err as Error).message}`, undefined, undefined, true);
    }
    if (res.status === 200) return (await res.json()) as T;
    const problem = await readProblem(res);
    throw new LdrError(describe(res.status, problem), res.status, problem, RETRYABLE.has(res.status));
  }

  const enc = encodeURIComponent;
  // without a custom fetch, browsers upload through XMLHttpRequest, which reports progress
  const lfsFetch = o.fetch ? { fetch: o.fetch } : {};
  const withToken = async <T>(call: (t: string) => Promise<T>): Promise<T> => {
    try {
      return await call(await token(false));
    } catch (err) {
      if (!(err instanceof LfsError) || err.status !== 401) throw err;
      return call(await token(true));
    }
  };

  return {
    /** Queues one interaction; resolves with its id once it is persisted in the queue. */
    track<K extends Kind>(kind: K, payload: Payloads[K], options: TrackOptions = {}): Promise<string> {
      return enqueue([build(kind, payload, options)]).then((ids) => ids[0]!);
    },
    /** Queues interactions as given (ids assigned where absent); resolves with their ids. */
    send(events: Interaction[]): Promise<string[]> {
      return enqueue(events);
    },
    flush,
    /** Events waiting in the queue. */
    async queued(): Promise<Interaction[]> {
      await ready;
      return pending.map((q) => q.event);
    },
    /** Flushes, stops timers and listeners. */
    async close(): Promise<FlushResult> {
      const result = await flush();
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      if (listening) {
        window.removeEventListener('online', onOnline);
        window.removeEventListener('pagehide', flushKeepalive);
      }
      return result;
    },
    /** Uploads a file through lfsProxy; resolves with its `lfs://` URI once the bytes are in storage. */
    upload(
      file: NonNullable<UploadArtifactOptions['file']>,
      options: Omit<UploadArtifactOptions, 'baseUrl' | 'token' | 'file' | 'path' | 'fetch'> = {},
    ) {
      return withToken((t) =>
        uploadArtifact({ ...options, file, baseUrl: urlOf('lfsProxy'), token: t, ...lfsFetch }),
      );
    },
    /** Node: uploads a file from disk (streamed). */
    uploadPath(
      path: string,
      options: Omit<UploadArtifactOptions, 'baseUrl' | 'token' | 'file' | 'path' | 'fetch'> = {},
    ) {
      return withToken((t) =>
        uploadArtifact({ ...options, path, baseUrl: urlOf('lfsProxy'), token: t, ...lfsFetch }),
      );
    },
    /** A signed download URL; waits while the upload is being verified. */
    downloadUrl(uri: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}) {
      return withToken((t) =>
        downloadUrl({ ...options, uri, baseUrl: urlOf('lfsProxy'), token: t, ...lfsFetch }),
      );
    },
    /** Mastery per topic. */
    progress(studentId: string): Promise<Progress> {
      return getJson<Progress>('progressApi', `/students/${enc(studentId)}`);
    },
    /** History pages, oldest first, following `nextCursor` until the last page. */
    async *history(
      studentId: string,
      q: { from?: string | Date; to?: string | Date; limit?: number } = {},
    ): AsyncGenerator<HistoryPage> {
      let cursor: string | undefined;
      do {
        const params = new URLSearchParams();
        if (q.from) params.set('from', new Date(q.from).toISOString());
        if (q.to) params.set('to', new Date(q.to).toISOString());
        if (q.limit) params.set('limit', String(q.limit));
        if (cursor) params.set('cursor', cursor);
        const qs = params.size ? `?${params}` : '';
        const page = await getJson<HistoryPage>('progressApi', `/students/${enc(studentId)}/history${qs}`);
        yield page;
        cursor = page.nextCursor;
      } while (cursor);
    },
    /** Struggle alerts, newest first. */
    async alerts(studentId: string): Promise<Alert[]> {
      return (await getJson<{ alerts: Alert[] }>('progressApi', `/students/${enc(studentId)}/alerts`)).alerts;
    },
  };

  function build<K extends Kind>(kind: K, payload: Payloads[K], t: TrackOptions): Interaction {
    if (!KINDS.includes(kind)) throw new LdrError(`kind: must be one of ${KINDS.join(', ')}`);
    const studentId = t.studentId ?? o.studentId;
    const instanceId = t.instanceId ?? o.instanceId;
    if (!studentId) throw new LdrError('studentId: is required (track options or createClient)');
    if (!instanceId) throw new LdrError('instanceId: is required (track options or createClient)');
    const envelope: InteractionEnvelope = {
      ...(t.id !== undefined ? { id: t.id } : {}),
      studentId,
      instanceId,
      occurredAt: t.occurredAt ? new Date(t.occurredAt).toISOString() : new Date().toISOString(),
      ...(t.topic !== undefined ? { topic: t.topic } : {}),
      ...(t.sponsor !== undefined ? { sponsor: t.sponsor } : {}),
      ...(t.artifacts !== undefined ? { artifacts: t.artifacts } : {}),
    };
    return { ...envelope, kind, payload } as Interaction;
  }
}

const defaultQueue = (): QueueStore => (typeof indexedDB !== 'undefined' ? indexedDbQueue() : memoryQueue());

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date. */
function retryAfter(res: Response): number | undefined {
  const h = res.headers.get('retry-after');
  if (!h) return undefined;
  const ms = /^\d+$/.test(h.trim()) ? Number(h) * 1000 : Date.parse(h) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), 3_600_000) : undefined;
}

async function readProblem(res: Response): Promise<Problem | undefined> {
  const text = await res.text().catch(() => '');
  try {
    const p = JSON.parse(text) as Problem;
    return p && typeof p === 'object' ? p : undefined;
  } catch {
    return undefined;
  }
}

/** The message names the fields: `400 invalid content: /events/0/payload/score must be between 0 and 1`. */
function describe(status: number, p: Problem | undefined): string {
  const fields = (p?.errors ?? []).map((e) => `${e.path} ${e.message}`).join('; ');
  return [`${status}`, p?.detail ?? p?.title, fields].filter(Boolean).join(': ');
}
