import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { heldBytes, LfsError, uploadArtifact } from './lfs.ts';

/**
 * The client's side of a Cloud Storage resumable session, against a fake lfsProxy + session behind an
 * injected `fetch`: chunking, Content-Range, progress, and resuming after a failed chunk by asking the
 * session for its offset. The real protocol is checked in emulators/storage/xml-resumable.test.ts and
 * end to end in tests/lfs.int.test.ts.
 */

const KiB = 1024;
const BASE = 'http://lfs.test/lfs';
const START = 'http://gcs.test/bucket/artifacts/a1/x?X-Goog-Signature=abc';
const SESSION = 'http://gcs.test/bucket/artifacts/a1/x?upload_id=s1';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

type Fault = 'drop-after-half' | 'drop-before' | 503 | 404;
interface Call {
  method: string;
  url: string;
  headers: Record<string, string>;
  size: number;
}
let calls: Call[];
let declarations: Array<Record<string, unknown>>;
let held: Buffer;
let done: boolean;
/** faults to inject, by the index of the chunk PUT (0-based, status queries not counted) */
let faults: Map<number, Fault>;
let chunkPuts: number;
let startStatus: number;

beforeEach(() => {
  calls = [];
  declarations = [];
  held = Buffer.alloc(0);
  done = false;
  faults = new Map();
  chunkPuts = 0;
  startStatus = 201;
});

const fakeFetch: typeof fetch = async (input, init = {}) => {
  const url = String(input);
  const method = init.method ?? 'GET';
  const headers = Object.fromEntries(new Headers(init.headers).entries());
  const body =
    init.body === undefined ? Buffer.alloc(0) : Buffer.from(await new Response(init.body).arrayBuffer());
  calls.push({ method, url, headers, size: body.length });
  if (url === `${BASE}/uploads`) {
    const d = JSON.parse(body.toString()) as Record<string, unknown>;
    declarations.push(d);
    return Response.json(
      {
        artifactId: 'a1',
        uri: 'lfs://a1',
        uploadUrl: START,
        method: 'POST',
        headers: {
          'content-type': d.contentType,
          'x-goog-resumable': 'start',
          'x-goog-if-generation-match': '0',
        },
        expiresAt: new Date(Date.now() + 900_000).toISOString(),
      },
      { status: 201 },
    );
  }
  if (url === START && method === 'POST') {
    return new Response(null, {
      status: startStatus,
      headers: startStatus === 201 ? { location: SESSION } : {},
    });
  }
  if (url === SESSION && method === 'PUT') {
    const incomplete = () =>
      new Response(null, {
        status: 308,
        headers: held.length ? { range: `bytes=0-${held.length - 1}` } : {},
      });
    const m = /^bytes (?:\*|(\d+)-(\d+))\/(\d+|\*)$/.exec(headers['content-range'] ?? '');
    if (!m) return new Response('bad range', { status: 400 });
    const total = m[3] === '*' ? undefined : Number(m[3]);
    if (m[1] === undefined) {
      if (done || (total !== undefined && held.length === total)) return new Response(null, { status: 200 });
      return incomplete();
    }
    const first = Number(m[1]);
    const fault = faults.get(chunkPuts++);
    if (fault === 503 || fault === 404)
      return new Response('<Error><Code>X</Code></Error>', { status: fault });
    if (fault === 'drop-before') throw new TypeError('fetch failed');
    if (first > held.length) return new Response('gap', { status: 400 });
    const arrived = fault === 'drop-after-half' ? body.subarray(0, body.length >> 1) : body;
    held = Buffer.concat([held.subarray(0, first), arrived]);
    if (fault === 'drop-after-half') throw new TypeError('fetch failed: other side closed');
    if (total !== undefined && held.length === total) {
      done = true;
      return new Response(null, { status: 200 });
    }
    return incomplete();
  }
  return new Response('unexpected', { status: 500 });
};

const chunks = () =>
  calls.filter((c) => c.url === SESSION && !c.headers['content-range']?.startsWith('bytes */'));
const queries = () =>
  calls.filter((c) => c.url === SESSION && c.headers['content-range']?.startsWith('bytes */'));
const opts = { baseUrl: BASE, token: 't', fetch: fakeFetch, contentType: 'video/mp4', filename: 'x.mp4' };

describe('resumable uploads: chunks, progress, resume', () => {
  it('starts the session with exactly the signed headers, then PUTs chunk after chunk with Content-Range', async () => {
    const bytes = randomBytes(600 * KiB);
    const seen: number[] = [];
    const r = await uploadArtifact({
      ...opts,
      file: bytes,
      chunkSize: 256 * KiB,
      resumable: true,
      onProgress: (p) => seen.push(p.loaded),
    });
    expect(r).toEqual({ artifactId: 'a1', uri: 'lfs://a1' });
    expect(declarations[0]).toMatchObject({ size: bytes.length, sha256: sha(bytes), resumable: true });
    const start = calls.find((c) => c.url === START)!;
    expect(start).toMatchObject({ method: 'POST', size: 0 });
    expect(start.headers).toMatchObject({
      'content-type': 'video/mp4',
      'x-goog-resumable': 'start',
      'x-goog-if-generation-match': '0',
    });
    expect(chunks().map((c) => [c.headers['content-range'], c.size])).toEqual([
      [`bytes 0-${256 * KiB - 1}/${bytes.length}`, 256 * KiB],
      [`bytes ${256 * KiB}-${512 * KiB - 1}/${bytes.length}`, 256 * KiB],
      [`bytes ${512 * KiB}-${bytes.length - 1}/${bytes.length}`, bytes.length - 512 * KiB],
    ]);
    expect(queries()).toEqual([]);
    expect(sha(held)).toBe(sha(bytes));
    expect(seen.at(-1)).toBe(bytes.length);
    expect(seen).toEqual([...seen].sort((a, b) => a - b)); // without failures, progress only grows
  });

  it('a chunk whose connection drops half-way: asks the session (bytes */size) and goes on from its Range', async () => {
    const bytes = randomBytes(768 * KiB);
    faults.set(1, 'drop-after-half');
    const seen: number[] = [];
    await uploadArtifact({
      ...opts,
      file: bytes,
      chunkSize: 256 * KiB,
      retryDelayMs: 1,
      onProgress: (p) => seen.push(p.loaded),
    });
    expect(sha(held)).toBe(sha(bytes));
    expect(queries().map((c) => c.headers['content-range'])).toEqual([`bytes */${bytes.length}`]);
    // resumed at the byte the session named (256 KiB + half a chunk), not at a chunk boundary
    expect(chunks().map((c) => c.headers['content-range'])).toEqual([
      `bytes 0-${256 * KiB - 1}/${bytes.length}`,
      `bytes ${256 * KiB}-${512 * KiB - 1}/${bytes.length}`,
      `bytes ${384 * KiB}-${640 * KiB - 1}/${bytes.length}`,
      `bytes ${640 * KiB}-${bytes.length - 1}/${bytes.length}`,
    ]);
    expect(seen).toContain(384 * KiB);
    expect(seen.at(-1)).toBe(bytes.length);
  });

  it('a 503 or a request that never left: query, then the same chunk again', async () => {
    const bytes = randomBytes(512 * KiB);
    faults.set(0, 503);
    faults.set(2, 'drop-before');
    await uploadArtifact({ ...opts, file: bytes, chunkSize: 256 * KiB, retryDelayMs: 1 });
    expect(sha(held)).toBe(sha(bytes));
    expect(queries()).toHaveLength(2);
    expect(chunks().map((c) => c.headers['content-range'])).toEqual([
      `bytes 0-${256 * KiB - 1}/${bytes.length}`,
      `bytes 0-${256 * KiB - 1}/${bytes.length}`,
      `bytes ${256 * KiB}-${512 * KiB - 1}/${bytes.length}`,
      `bytes ${256 * KiB}-${512 * KiB - 1}/${bytes.length}`,
    ]);
  });

  it('a Blob is sliced per chunk; the last chunk alone completes the object', async () => {
    const bytes = randomBytes(300 * KiB);
    await uploadArtifact({ ...opts, file: new Blob([bytes]), chunkSize: 256 * KiB });
    expect(chunks().map((c) => c.size)).toEqual([256 * KiB, 44 * KiB]);
    expect(sha(held)).toBe(sha(bytes));
  });

  it('Node: a file on disk is streamed chunk by chunk with its length stated', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lfs-resumable-'));
    try {
      const bytes = randomBytes(700 * KiB);
      const path = join(dir, 'lecture.mp4');
      writeFileSync(path, bytes);
      faults.set(1, 'drop-after-half');
      await uploadArtifact({ ...opts, path, chunkSize: 512 * KiB, retryDelayMs: 1 });
      expect(sha(held)).toBe(sha(bytes));
      expect(chunks().map((c) => [c.headers['content-length'], c.size])).toEqual([
        [String(512 * KiB), 512 * KiB],
        [String(188 * KiB), 188 * KiB],
        [String(94 * KiB), 94 * KiB],
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives up after maxRetries failures in a row without progress', async () => {
    const bytes = randomBytes(256 * KiB);
    for (let i = 0; i < 10; i++) faults.set(i, 503);
    const err = await uploadArtifact({
      ...opts,
      file: bytes,
      chunkSize: 256 * KiB,
      maxRetries: 2,
      retryDelayMs: 1,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LfsError);
    expect((err as Error).message).toMatch(/after 2 retries: 503/);
    expect(chunks()).toHaveLength(3);
  });

  it('an expired or unknown session (404) is not retried', async () => {
    faults.set(0, 404);
    const err = await uploadArtifact({ ...opts, file: randomBytes(1000), retryDelayMs: 1 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LfsError);
    expect(err).toMatchObject({ status: 404, details: { code: 'X' } });
    expect(chunks()).toHaveLength(1);
    expect(queries()).toHaveLength(0);
  });

  it('412 at the start (create-only, the object exists: an earlier attempt landed) counts as uploaded', async () => {
    startStatus = 412;
    await expect(uploadArtifact({ ...opts, file: randomBytes(1000) })).resolves.toEqual({
      artifactId: 'a1',
      uri: 'lfs://a1',
    });
    expect(chunks()).toHaveLength(0);
  });

  it('chunkSize must be a multiple of 256 KiB; nothing is sent otherwise', async () => {
    await expect(uploadArtifact({ ...opts, file: randomBytes(10), chunkSize: 100_000 })).rejects.toThrow(
      /chunkSize: must be a positive multiple of 262144/,
    );
    expect(calls).toEqual([]);
  });

  it.each([
    [null, 0],
    ['bytes=0-0', 1],
    ['bytes=0-262143', 262144],
  ])('Range %s → %i bytes held', (range, n) => {
    expect(heldBytes(range)).toBe(n);
  });
});
