/**
 * The room's large-file client, for the SkillR frontend (browser: `File`/`Blob`, WebCrypto) and for
 * Node (a path, a `Buffer` or a `Readable`). Dependency-free: `fetch` only; Node modules are imported
 * lazily, and only on the Node paths, so a browser bundle never reaches them.
 *
 * ```ts
 * const { uri } = await uploadArtifact({ baseUrl, token, file, contentType: 'video/mp4' });
 * // reference `uri` in an interaction's `artifacts`, later:
 * const { url, expiresAt } = await downloadUrl({ baseUrl, token, uri });
 * ```
 * Large files (lfsProxy decides: from 8 MiB by default, or `resumable: true`) go through a Cloud Storage
 * resumable session: the signed POST starts it, chunks (`chunkSize`, a multiple of 256 KiB) are PUT with
 * `Content-Range`, and after a failed chunk the client asks the session how far it got
 * (`Content-Range: bytes *` + `/<size>` → 308 + `Range`) and goes on from there.
 * `baseUrl` is the lfsProxy base, e.g. `https://…/lfsProxy` or locally
 * `http://127.0.0.1:5001/demo-ldr/europe-west3/lfsProxy`.
 */
import { Sha256, toHex } from './sha256.ts';
import type { ArtifactInfo, UploadTicket } from './types.ts';

export interface ClientOptions {
  baseUrl: string;
  /** bearer JWT of the caller */
  token: string;
  fetch?: typeof fetch;
  signal?: AbortSignal;
}

export interface UploadArtifactOptions extends ClientOptions {
  /** the content: a browser `File`/`Blob`, or in Node a `Buffer`/`Uint8Array` or a `Readable` (any async iterable of bytes) */
  file?: Blob | Uint8Array | AsyncIterable<Uint8Array>;
  /** Node: a file to stream from disk (never read into memory whole) */
  path?: string;
  /** defaults to the `File`'s name or the path's last segment; the server sanitises it */
  filename?: string;
  /** must be one the server allows; defaults to the `File`'s type */
  contentType?: string;
  /** for app tokens: the learner the artifact belongs to */
  studentId?: string;
  /** bytes sent to storage so far (browser: XMLHttpRequest upload events; Node: as the body is read);
   * after a failed chunk of a resumable upload it steps back to what the session holds */
  onProgress?: (p: { loaded: number; total: number }) => void;
  /** true: ask for a resumable session whatever the size; false: one PUT; default: lfsProxy decides by size */
  resumable?: boolean;
  /** resumable uploads: bytes per chunk, a multiple of 256 KiB (default 8 MiB) */
  chunkSize?: number;
  /** resumable uploads: failed attempts in a row before giving up (default 5) */
  maxRetries?: number;
  /** resumable uploads: first delay before asking the session after a failure (default 500 ms, doubling) */
  retryDelayMs?: number;
}

export interface UploadedArtifact {
  artifactId: string;
  uri: string;
}

export interface DownloadUrlOptions extends ClientOptions {
  uri: string;
  /** how long to wait for a pending artifact to be verified and stored (default 60 s) */
  timeoutMs?: number;
  /** first delay between polls (default 250 ms, doubling up to 2 s) */
  pollMs?: number;
}

/** What lfsProxy answers to `GET /objects/<id>` and `POST /uploads` (generated from its schemas). */
export type { ArtifactInfo, UploadTicket };

export class LfsError extends Error {
  constructor(
    message: string,
    /** HTTP status of the failed call, when there was one */
    readonly status?: number,
    /** problem+json from lfsProxy, or `{ code }` from Cloud Storage */
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'LfsError';
  }
}

const LFS_URI_RE = /^lfs:\/\/([A-Za-z0-9_-]{1,64})$/;
/** Cloud Storage takes resumable chunks in multiples of 256 KiB (all but the last). */
export const CHUNK_GRANULARITY = 256 * 1024;
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;
/** Up to this size a Blob is hashed with WebCrypto in one piece; larger ones are streamed. */
const WEBCRYPTO_MAX_BYTES = 64 * 1024 * 1024;

/** Hashes the file, asks lfsProxy for a signed URL, PUTs the bytes and returns the `lfs://` URI. */
export async function uploadArtifact(o: UploadArtifactOptions): Promise<UploadedArtifact> {
  const chunkSize = o.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize <= 0 || chunkSize % CHUNK_GRANULARITY !== 0) {
    throw new LfsError(`chunkSize: must be a positive multiple of ${CHUNK_GRANULARITY} bytes (256 KiB)`);
  }
  const source = await openSource(o);
  try {
    const filename = o.filename ?? source.name;
    const contentType = o.contentType ?? source.type;
    if (!filename) throw new LfsError('filename: is required (no File name to take it from)');
    if (!contentType) throw new LfsError('contentType: is required (no File type to take it from)');
    const ticket = await requestUpload(o, {
      filename,
      contentType,
      size: source.size,
      sha256: source.sha256,
      ...(o.studentId !== undefined ? { studentId: o.studentId } : {}),
      ...(o.resumable !== undefined ? { resumable: o.resumable } : {}),
    });
    if (ticket.method === 'POST') await uploadResumable(o, ticket, source, chunkSize);
    else await putBytes(o, ticket, source, o.onProgress);
    return { artifactId: ticket.artifactId, uri: ticket.uri };
  } finally {
    await source.dispose();
  }
}

/** `POST /uploads`: the signed upload for a declared file. */
export async function requestUpload(
  o: ClientOptions,
  body: {
    filename: string;
    contentType: string;
    size: number;
    sha256: string;
    studentId?: string;
    resumable?: boolean;
  },
): Promise<UploadTicket> {
  const res = await (o.fetch ?? fetch)(endpoint(o.baseUrl, '/uploads'), {
    method: 'POST',
    headers: {
      authorization: `Bearer ${o.token}`,
      'content-type': 'application/json',
      accept: 'application/json',
    },
    body: JSON.stringify(body),
    ...(o.signal ? { signal: o.signal } : {}),
  });
  if (res.status !== 201) throw await problem(res, 'upload request refused');
  return (await res.json()) as UploadTicket;
}

/** `GET /objects/<id>`: the artifact's metadata and, once stored, a signed download URL. */
export async function getArtifact(o: ClientOptions & { uri: string }): Promise<ArtifactInfo> {
  const res = await (o.fetch ?? fetch)(
    endpoint(o.baseUrl, `/objects/${encodeURIComponent(artifactIdOf(o.uri))}`),
    {
      headers: { authorization: `Bearer ${o.token}`, accept: 'application/json' },
      ...(o.signal ? { signal: o.signal } : {}),
    },
  );
  if (res.status !== 200) throw await problem(res, 'artifact lookup refused');
  return (await res.json()) as ArtifactInfo;
}

/** A signed GET URL for a stored artifact; waits (polling) while it is still being verified. */
export async function downloadUrl(o: DownloadUrlOptions): Promise<{ url: string; expiresAt: string }> {
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  let delay = o.pollMs ?? 250;
  for (;;) {
    const info = await getArtifact(o);
    if (info.state === 'stored' && info.downloadUrl && info.expiresAt) {
      return { url: info.downloadUrl, expiresAt: info.expiresAt };
    }
    if (info.state === 'rejected') {
      throw new LfsError(
        `artifact ${info.artifactId} was rejected: ${info.reason ?? 'no reason given'}`,
        200,
        info,
      );
    }
    if (Date.now() + delay > deadline) {
      throw new LfsError(`artifact ${info.artifactId} is still ${info.state} after the deadline`, 200, info);
    }
    await sleep(delay, o.signal);
    delay = Math.min(delay * 2, 2000);
  }
}

export function artifactIdOf(uri: string): string {
  const m = LFS_URI_RE.exec(uri);
  if (!m) throw new LfsError(`not an lfs://<artifactId> URI: ${uri}`);
  return m[1]!;
}

// -------------------------------------------------------------------------------------------------

interface Source {
  size: number;
  sha256: string;
  name?: string;
  type?: string;
  /**
   * A fresh body for the PUT (or bytes [start, end) of it, for a chunk), and whether it is a stream (which
   * needs duplex and a content-length).
   */
  body(range?: ByteRange): Promise<{ body: BodyInit; streamed: boolean }>;
  dispose(): Promise<void>;
}

/** bytes [start, end) */
interface ByteRange {
  start: number;
  end: number;
}

const nothing = async () => {};
const isAsyncIterable = (x: unknown): x is AsyncIterable<Uint8Array> =>
  typeof (x as AsyncIterable<Uint8Array> | undefined)?.[Symbol.asyncIterator] === 'function';

async function openSource(o: UploadArtifactOptions): Promise<Source> {
  if (o.path !== undefined && o.file !== undefined) throw new LfsError('pass either file or path, not both');
  if (o.path !== undefined) return fileSource(o.path);
  const f = o.file;
  if (f === undefined) throw new LfsError('file or path is required');
  if (typeof Blob !== 'undefined' && f instanceof Blob) {
    const name = (f as Blob & { name?: unknown }).name;
    return {
      size: f.size,
      sha256: await hashBlob(f),
      ...(typeof name === 'string' && name ? { name } : {}),
      ...(f.type ? { type: f.type } : {}),
      body: async (r) => ({ body: r ? f.slice(r.start, r.end) : f, streamed: false }),
      dispose: nothing,
    };
  }
  if (f instanceof Uint8Array) {
    return {
      size: f.byteLength,
      sha256: await hashBytes(f),
      body: async (r) => ({
        body: (r ? f.subarray(r.start, r.end) : f) as unknown as BodyInit,
        streamed: false,
      }),
      dispose: nothing,
    };
  }
  if (isAsyncIterable(f)) return spooledSource(f);
  throw new LfsError('file must be a Blob, a Uint8Array or an async iterable of bytes');
}

async function hashBytes(bytes: Uint8Array): Promise<string> {
  if (globalThis.crypto?.subtle) {
    return toHex(
      new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)),
    );
  }
  return new Sha256().update(bytes).hex();
}

/** Small blobs through WebCrypto; large ones chunk by chunk, so a big video is never held in memory. */
async function hashBlob(blob: Blob): Promise<string> {
  if (blob.size <= WEBCRYPTO_MAX_BYTES) return hashBytes(new Uint8Array(await blob.arrayBuffer()));
  const hash = new Sha256();
  const reader = blob.stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    hash.update(value);
  }
  return hash.hex();
}

/** Node: a file on disk, hashed and uploaded as streams. */
async function fileSource(path: string): Promise<Source> {
  const [{ createReadStream }, { stat }, { createHash }, { Readable }, { basename }] = await Promise.all([
    import('node:fs'),
    import('node:fs/promises'),
    import('node:crypto'),
    import('node:stream'),
    import('node:path'),
  ]);
  const { size } = await stat(path);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }))
    hash.update(chunk as Buffer);
  return {
    size,
    sha256: hash.digest('hex'),
    name: basename(path),
    body: async (r) => ({
      body: Readable.toWeb(
        createReadStream(path, {
          highWaterMark: 1024 * 1024,
          ...(r ? { start: r.start, end: r.end - 1 } : {}), // fs ranges are inclusive
        }),
      ) as unknown as BodyInit,
      streamed: true,
    }),
    dispose: nothing,
  };
}

/**
 * Node: a one-shot stream must be hashed before the URL is asked for and read again for the PUT, so it
 * is spooled to a private temporary file on the way (hashing as it goes) and uploaded from there.
 */
async function spooledSource(stream: AsyncIterable<Uint8Array>): Promise<Source> {
  const [{ mkdtemp, rm }, { tmpdir }, { join }, { createWriteStream }, { pipeline }] = await Promise.all([
    import('node:fs/promises'),
    import('node:os'),
    import('node:path'),
    import('node:fs'),
    import('node:stream/promises'),
  ]);
  const dir = await mkdtemp(join(tmpdir(), 'lfs-upload-'));
  const path = join(dir, 'spool');
  try {
    await pipeline(stream, createWriteStream(path, { mode: 0o600 }));
    const source = await fileSource(path);
    const { name: _spool, ...rest } = source;
    return { ...rest, dispose: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

type Progress = (p: { loaded: number; total: number }) => void;

/** The single signed PUT. */
async function putBytes(o: ClientOptions, ticket: UploadTicket, source: Source, onProgress?: Progress) {
  const { body, streamed } = await source.body();
  let res: Sent;
  try {
    res = await send(o, {
      method: ticket.method,
      url: ticket.uploadUrl,
      headers: ticket.headers,
      body,
      streamed,
      length: source.size,
      ...(onProgress ? { onProgress: (loaded: number) => onProgress({ loaded, total: source.size }) } : {}),
    });
  } catch (err) {
    throw networkError(err, o.signal);
  }
  // 412: the create-only precondition failed, i.e. an earlier attempt of this very upload already landed
  const text = await res.text();
  if (res.ok || res.status === 412) {
    onProgress?.({ loaded: source.size, total: source.size });
    return;
  }
  throw storageError(res, text);
}

/**
 * A Cloud Storage resumable session (https://cloud.google.com/storage/docs/performing-resumable-uploads):
 * the signed POST starts it (201, session URI in `Location`); each chunk is a PUT with
 * `Content-Range: bytes a-b/size`, answered 308 with `Range: bytes=0-<held-1>` until the last (200/201).
 * A chunk that fails (network, 408, 429, 5xx) is followed, after a backoff, by the status query
 * `Content-Range: bytes *` + `/size`, and the upload goes on from the offset the session names.
 */
async function uploadResumable(
  o: UploadArtifactOptions,
  ticket: UploadTicket,
  source: Source,
  chunkSize: number,
) {
  const total = source.size;
  const progress = (loaded: number) => o.onProgress?.({ loaded, total });
  const maxRetries = o.maxRetries ?? 5;
  let delay = o.retryDelayMs ?? 500;

  let started: Sent;
  try {
    started = await send(o, { method: 'POST', url: ticket.uploadUrl, headers: ticket.headers });
  } catch (err) {
    throw networkError(err, o.signal);
  }
  // 412: create-only, and the object exists: an earlier attempt of this very upload already landed
  const startText = await started.text();
  if (started.status === 412) return progress(total);
  if (started.status !== 201 && started.status !== 200) throw storageError(started, startText);
  const session = started.header('location');
  if (!session) throw new LfsError('upload to storage failed: the session start named no Location');

  let offset = 0;
  /** failed attempts since the session last moved forward */
  let failures = 0;
  /** the last attempt failed: ask the session for its offset before sending again */
  let lost = false;
  const fail = async (why: string) => {
    lost = true;
    if (++failures > maxRetries) {
      throw new LfsError(`upload to storage failed after ${maxRetries} retries: ${why}`, undefined, {
        offset,
      });
    }
    await sleep(delay, o.signal);
    delay = Math.min(delay * 2, 30_000);
  };
  for (;;) {
    // a chunk from the offset the session holds, or (after a failure) the status query
    const query = lost || offset >= total;
    const end = Math.min(offset + chunkSize, total);
    const { body, streamed } = query
      ? { body: undefined, streamed: false }
      : await source.body({ start: offset, end });
    const base = offset;
    let res: Sent;
    try {
      res = await send(o, {
        method: 'PUT',
        url: session,
        headers: { 'content-range': query ? `bytes */${total}` : `bytes ${offset}-${end - 1}/${total}` },
        ...(body === undefined ? {} : { body, streamed, length: end - offset }),
        ...(o.onProgress && !query ? { onProgress: (loaded: number) => progress(base + loaded) } : {}),
      });
    } catch (err) {
      if (o.signal?.aborted) throw o.signal.reason;
      await fail((err as Error).message);
      continue;
    }
    if (res.status === 200 || res.status === 201) {
      await res.text();
      return progress(total);
    }
    if (res.status === 308) {
      await res.text();
      const held = heldBytes(res.header('range'));
      if (held > offset) {
        failures = 0;
        delay = o.retryDelayMs ?? 500;
      }
      offset = held;
      lost = false;
      progress(offset);
      continue;
    }
    if (!RETRYABLE_STATUS.has(res.status)) throw storageError(res, await res.text());
    await fail(`${res.status}`);
  }
}

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** `Range: bytes=0-N` → N + 1 bytes held; no Range → none. */
export function heldBytes(range: string | null): number {
  if (!range) return 0;
  const m = /^bytes=0-(\d+)$/.exec(range.trim());
  if (!m) throw new LfsError(`upload to storage failed: unexpected Range ${range}`);
  return Number(m[1]) + 1;
}

/** What `send` answers: enough of a Response for both transports. */
interface Sent {
  status: number;
  ok: boolean;
  header(name: string): string | null;
  text(): Promise<string>;
}

interface Outgoing {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: BodyInit;
  streamed?: boolean;
  /** the body's length (stated for streams) */
  length?: number;
  /** bytes of this body sent so far */
  onProgress?: (loaded: number) => void;
}

/**
 * One request to storage. Browsers without a custom fetch use XMLHttpRequest when progress is wanted (the
 * one browser API that reports upload progress); otherwise fetch, counting the bytes as it reads the body.
 * Network failures throw.
 */
async function send(o: ClientOptions, r: Outgoing): Promise<Sent> {
  if (r.onProgress && typeof XMLHttpRequest !== 'undefined' && !r.streamed && !o.fetch) {
    return xhrSend(r, o.signal);
  }
  const counted = r.onProgress && r.body !== undefined ? countingStream(r.body, r.onProgress) : undefined;
  const body = counted ?? r.body;
  const streamed = Boolean(r.streamed) || counted !== undefined;
  const init: RequestInit & { duplex?: 'half' } = {
    method: r.method,
    // exactly the signed headers; a stream also needs its length stated (a browser computes it itself)
    headers: streamed ? { ...r.headers, 'content-length': String(r.length) } : r.headers,
    ...(body !== undefined ? { body } : {}),
    ...(streamed ? { duplex: 'half' as const } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  };
  const res = await (o.fetch ?? fetch)(r.url, init);
  return {
    status: res.status,
    ok: res.ok,
    header: (name) => res.headers.get(name),
    text: () => res.text(),
  };
}

function xhrSend(r: Outgoing, signal?: AbortSignal): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(r.method, r.url);
    for (const [k, v] of Object.entries(r.headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => r.onProgress?.(e.loaded);
    xhr.onload = () =>
      resolve({
        status: xhr.status,
        ok: xhr.status >= 200 && xhr.status < 300,
        header: (name) => xhr.getResponseHeader(name),
        text: async () => xhr.responseText,
      });
    xhr.onerror = () => reject(new LfsError('upload to storage failed: network error'));
    signal?.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.onabort = () => reject(signal?.reason ?? new LfsError('upload aborted'));
    xhr.send((r.body ?? null) as XMLHttpRequestBodyInit | null);
  });
}

function networkError(err: unknown, signal?: AbortSignal): unknown {
  if (signal?.aborted || err instanceof LfsError) return err;
  return new LfsError(`upload to storage failed: ${(err as Error).message}`);
}

function storageError(res: Sent, text?: string): LfsError {
  const code = text === undefined ? undefined : /<Code>([^<]+)<\/Code>/.exec(text)?.[1];
  return new LfsError(`upload to storage failed: ${res.status}${code ? ` ${code}` : ''}`, res.status, {
    code,
  });
}

/** The body as a stream that reports how many bytes have been read from it. */
function countingStream(
  body: BodyInit,
  onProgress: (loaded: number) => void,
): ReadableStream<Uint8Array> | undefined {
  const source =
    body instanceof ReadableStream
      ? (body as ReadableStream<Uint8Array>)
      : typeof Blob !== 'undefined' && body instanceof Blob
        ? body.stream()
        : body instanceof Uint8Array
          ? new Blob([body as Uint8Array<ArrayBuffer>]).stream()
          : undefined;
  if (!source) return undefined;
  let loaded = 0;
  return source.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        loaded += chunk.byteLength;
        onProgress(loaded);
        controller.enqueue(chunk);
      },
    }),
  );
}

async function problem(res: Response, fallback: string): Promise<LfsError> {
  const text = await res.text();
  let details: unknown = text;
  let message = `${fallback}: ${res.status}`;
  try {
    const p = JSON.parse(text) as {
      title?: string;
      detail?: string;
      errors?: { path: string; message: string }[];
    };
    details = p;
    // name every offending field: "upload request refused: 400 1 invalid field(s): /contentType must be one of …"
    const fields = (p.errors ?? []).map((e) => `${e.path} ${e.message}`).join('; ');
    message = `${fallback}: ${res.status} ${p.detail ?? p.title ?? ''}${fields ? `: ${fields}` : ''}`.trim();
  } catch {
    // not JSON: keep the text
  }
  return new LfsError(message, res.status, details);
}

const endpoint = (baseUrl: string, path: string) => `${baseUrl.replace(/\/+$/, '')}${path}`;

function sleep(ms: number, signal?: AbortSignal) {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
