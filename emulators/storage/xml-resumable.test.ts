import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import bucketCors from '../../shared/bucket-cors.json' with { type: 'json' };
import { ensureServiceAccountKey } from './keys.ts';
import type { Notice } from './notifications.ts';
import { type StorageEmulator, startStorageEmulator } from './server.ts';

/**
 * The XML API's signed resumable sessions (`getSignedUrl({action: 'resumable'})`): the signed POST that
 * starts one, chunk PUTs with Content-Range on the session URI, the status query, resuming after a
 * broken chunk, cancel, and the bucket CORS a page needs for all of it. One in-process emulator.
 */

const BUCKET = 'resumable-xml';
const ORIGIN = 'http://127.0.0.1:4999';
const KiB = 1024;
let dir: string;
let emulator: StorageEmulator;
let signing: Storage;
let plain: Storage;
const notices: Notice[] = [];
let n = 0;

const code = async (res: Response) => /<Code>([^<]+)<\/Code>/.exec(await res.text())?.[1];
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'storage-resumable-'));
  const key = await ensureServiceAccountKey(join(dir, 'keys'));
  emulator = await startStorageEmulator({
    port: 0,
    dataDir: join(dir, 'data'),
    projectId: 'demo-ldr',
    signers: [{ clientEmail: key.clientEmail, publicKeyPem: key.publicKeyPem }],
    notify: async (notice) => void notices.push(notice),
    cors: { origins: [ORIGIN], rules: bucketCors.cors },
  });
  emulator.addNotification(BUCKET, 'finalized');
  signing = new Storage({ apiEndpoint: emulator.url, projectId: 'demo-ldr', keyFilename: key.keyFile });
  plain = new Storage({ apiEndpoint: emulator.url, projectId: 'demo-ldr' });
});
afterAll(async () => {
  await emulator?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  notices.length = 0;
});

/** What lfsProxy hands out for a resumable upload. */
async function ticket(contentType = 'video/mp4') {
  const name = `artifacts/a${++n}/clip.mp4`;
  const extensionHeaders = { 'x-goog-if-generation-match': '0' };
  const [url] = await signing
    .bucket(BUCKET)
    .file(name)
    .getSignedUrl({
      version: 'v4',
      action: 'resumable',
      contentType,
      expires: Date.now() + 15 * 60_000,
      extensionHeaders,
    });
  const headers = { 'content-type': contentType, 'x-goog-resumable': 'start', ...extensionHeaders };
  return { name, url, headers };
}

async function start(t: Awaited<ReturnType<typeof ticket>>) {
  const res = await fetch(t.url, { method: 'POST', headers: t.headers });
  expect(res.status, await res.clone().text()).toBe(201);
  return res.headers.get('location')!;
}

const chunk = (session: string, bytes: Uint8Array, first: number, total: number | '*') =>
  fetch(session, {
    method: 'PUT',
    headers: { 'content-range': `bytes ${first}-${first + bytes.length - 1}/${total}` },
    body: bytes as Uint8Array<ArrayBuffer>,
  });
const status = (session: string, total: number | '*') =>
  fetch(session, { method: 'PUT', headers: { 'content-range': `bytes */${total}` } });

describe('XML API: signed resumable sessions', () => {
  it('POST starts a session (201 + Location); chunks get 308 + Range until the last, which stores and notifies', async () => {
    const t = await ticket();
    const session = await start(t);
    const u = new URL(session);
    expect(`${u.origin}${u.pathname}`).toBe(`${emulator.url}/${BUCKET}/${t.name}`);
    expect(u.searchParams.get('upload_id')).toMatch(/^[0-9a-f]{32}$/);
    expect([...u.searchParams.keys()]).toEqual(['upload_id']); // no signature: the URI is its own credential

    const bytes = randomBytes(600 * KiB);
    const empty = await status(session, '*');
    expect(empty.status).toBe(308);
    expect(empty.headers.get('range')).toBeNull();

    const first = await chunk(session, bytes.subarray(0, 256 * KiB), 0, bytes.length);
    expect(first.status).toBe(308);
    expect(first.headers.get('range')).toBe(`bytes=0-${256 * KiB - 1}`);
    const second = await chunk(session, bytes.subarray(256 * KiB, 512 * KiB), 256 * KiB, '*');
    expect(second.status).toBe(308);
    expect(second.headers.get('range')).toBe(`bytes=0-${512 * KiB - 1}`);
    const asked = await status(session, bytes.length);
    expect(asked.status).toBe(308);
    expect(asked.headers.get('range')).toBe(`bytes=0-${512 * KiB - 1}`);
    expect(notices).toHaveLength(0);

    const last = await chunk(session, bytes.subarray(512 * KiB), 512 * KiB, bytes.length);
    expect(last.status).toBe(200);
    expect(last.headers.get('x-goog-stored-content-length')).toBe(String(bytes.length));
    expect(last.headers.get('x-goog-generation')).toMatch(/^\d+$/);

    const [stored] = await plain.bucket(BUCKET).file(t.name).download();
    expect(sha(stored)).toBe(sha(bytes));
    const [meta] = await plain.bucket(BUCKET).file(t.name).getMetadata();
    expect(meta.contentType).toBe('video/mp4');
    expect(notices.map((x) => [x.attributes.eventType, x.attributes.objectId])).toEqual([
      ['OBJECT_FINALIZE', t.name],
    ]);
    // a finished session answers a status query with the object again, and stores nothing new
    const after = await status(session, bytes.length);
    expect(after.status).toBe(200);
    expect(after.headers.get('x-goog-generation')).toBe(last.headers.get('x-goog-generation'));
  });

  it('a chunk cut short keeps what arrived; the status query names it and the upload resumes from there', async () => {
    const t = await ticket();
    const session = await start(t);
    const bytes = randomBytes(512 * KiB);
    // the connection "drops" 100 KiB into the first chunk: only those bytes reach the server
    const cut = await fetch(session, {
      method: 'PUT',
      headers: { 'content-range': `bytes 0-${256 * KiB - 1}/${bytes.length}` },
      body: bytes.subarray(0, 100 * KiB) as Uint8Array<ArrayBuffer>,
    });
    expect(cut.status).toBe(308);
    const asked = await status(session, bytes.length);
    expect(asked.headers.get('range')).toBe(`bytes=0-${100 * KiB - 1}`);
    // resend from the offset the session holds; an overlapping resend is also accepted
    const overlap = await chunk(session, bytes.subarray(50 * KiB, 300 * KiB), 50 * KiB, bytes.length);
    expect(overlap.status).toBe(308);
    expect(overlap.headers.get('range')).toBe(`bytes=0-${300 * KiB - 1}`);
    expect((await chunk(session, bytes.subarray(300 * KiB), 300 * KiB, bytes.length)).status).toBe(200);
    const [stored] = await plain.bucket(BUCKET).file(t.name).download();
    expect(sha(stored)).toBe(sha(bytes));
  });

  it('a chunk past what the session holds is refused (400) and changes nothing', async () => {
    const t = await ticket();
    const session = await start(t);
    const res = await chunk(session, randomBytes(1024), 4096, 8192);
    expect(res.status).toBe(400);
    expect((await status(session, 8192)).headers.get('range')).toBeNull();
  });

  it.each([
    [
      'as a PUT',
      (t: Awaited<ReturnType<typeof ticket>>) => fetch(t.url, { method: 'PUT', headers: t.headers }),
    ],
    [
      'with another content type',
      (t: Awaited<ReturnType<typeof ticket>>) =>
        fetch(t.url, { method: 'POST', headers: { ...t.headers, 'content-type': 'text/html' } }),
    ],
    [
      'without x-goog-resumable',
      (t: Awaited<ReturnType<typeof ticket>>) =>
        fetch(t.url, {
          method: 'POST',
          headers: { 'content-type': 'video/mp4', 'x-goog-if-generation-match': '0' },
        }),
    ],
    [
      'without the create-only precondition',
      (t: Awaited<ReturnType<typeof ticket>>) =>
        fetch(t.url, {
          method: 'POST',
          headers: { 'content-type': 'video/mp4', 'x-goog-resumable': 'start' },
        }),
    ],
  ])('the signed start is bound: %s → 403 SignatureDoesNotMatch', async (_what, attempt) => {
    const res = await attempt(await ticket());
    expect(res.status).toBe(403);
    expect(await code(res)).toBe('SignatureDoesNotMatch');
  });

  it('an unsigned POST is refused', async () => {
    const res = await fetch(`${emulator.url}/${BUCKET}/x.bin`, {
      method: 'POST',
      headers: { 'x-goog-resumable': 'start' },
    });
    expect(res.status).toBe(403);
    expect(await code(res)).toBe('AccessDenied');
  });

  it('create-only: a session for an object that exists is refused at the start (412)', async () => {
    const t = await ticket();
    await plain.bucket(BUCKET).file(t.name).save('already here', { resumable: false });
    const res = await fetch(t.url, { method: 'POST', headers: t.headers });
    expect(res.status).toBe(412);
    expect(await code(res)).toBe('PreconditionFailed');
  });

  it('create-only holds at the end too: the object appearing meanwhile makes the last chunk 412', async () => {
    const t = await ticket();
    const session = await start(t);
    await plain.bucket(BUCKET).file(t.name).save('raced', { resumable: false });
    const res = await chunk(session, randomBytes(10), 0, 10);
    expect(res.status).toBe(412);
  });

  it('a session URI only works for its own object; unknown and cancelled sessions are 404', async () => {
    const t = await ticket();
    const session = await start(t);
    const other = new URL(session);
    other.pathname = `/${BUCKET}/somewhere/else.mp4`;
    expect((await status(other.href, '*')).status).toBe(404);
    const unknown = new URL(session);
    unknown.searchParams.set('upload_id', 'f'.repeat(32));
    expect((await status(unknown.href, '*')).status).toBe(404);
    expect((await fetch(session, { method: 'POST' })).status).toBe(405);
    expect((await fetch(session, { method: 'DELETE' })).status).toBe(499);
    const gone = await status(session, '*');
    expect(gone.status).toBe(404);
    expect(await code(gone)).toBe('NoSuchUpload');
  });

  it('bucket CORS (shared/bucket-cors.json) lets a page start a session, send chunks and read Location and Range', async () => {
    const t = await ticket();
    const preflight = (url: string, method: string, headers: string) =>
      fetch(url, {
        method: 'OPTIONS',
        headers: {
          origin: ORIGIN,
          'access-control-request-method': method,
          'access-control-request-headers': headers,
        },
      });
    const startPre = await preflight(
      t.url,
      'POST',
      'content-type,x-goog-if-generation-match,x-goog-resumable',
    );
    expect(startPre.status).toBe(200);
    expect(startPre.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(startPre.headers.get('access-control-allow-methods')).toContain('POST');

    const started = await fetch(t.url, { method: 'POST', headers: { ...t.headers, origin: ORIGIN } });
    expect(started.status).toBe(201);
    expect(started.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    const exposed = started.headers.get('access-control-expose-headers')!.toLowerCase().split(/,\s*/);
    expect(exposed).toEqual(expect.arrayContaining(['location', 'range']));
    const session = started.headers.get('location')!;

    const chunkPre = await preflight(session, 'PUT', 'content-range');
    expect(chunkPre.status).toBe(200);
    const partial = await fetch(session, {
      method: 'PUT',
      headers: { origin: ORIGIN, 'content-range': `bytes 0-${256 * KiB - 1}/*` },
      body: randomBytes(256 * KiB),
    });
    expect(partial.status).toBe(308);
    expect(partial.headers.get('access-control-allow-origin')).toBe(ORIGIN);

    // another origin is not allowed
    const evil = await fetch(session, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://evil.example',
        'access-control-request-method': 'PUT',
        'access-control-request-headers': 'content-range',
      },
    });
    expect(evil.status).toBe(403);
  });
});
