import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Bucket, Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ensureServiceAccountKey, type ServiceAccountKey } from './keys.ts';
import type { Notice } from './notifications.ts';
import { type StorageEmulator, startStorageEmulator } from './server.ts';

const PROJECT = 'demo-ldr';
const MiB = 1024 * 1024;

let dir: string;
let key: ServiceAccountKey;
let emulator: StorageEmulator;
let storage: Storage;
let clockSkewMs = 0;
const notices: Notice[] = [];
/** Filled by the notify callback: did the object already exist when its finalize was delivered? */
const existedAtNotify: boolean[] = [];

const md5 = (data: Buffer) => createHash('md5').update(data).digest('base64');
const xmlCode = (body: string) => /<Code>([^<]+)<\/Code>/.exec(body)?.[1];

async function sha256OfStream(stream: NodeJS.ReadableStream): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'storage-emulator-'));
  key = await ensureServiceAccountKey(join(dir, 'keys'));
  emulator = await startStorageEmulator({
    port: 0,
    dataDir: join(dir, 'data'),
    projectId: PROJECT,
    signers: [{ clientEmail: key.clientEmail, publicKeyPem: key.publicKeyPem }],
    now: () => Date.now() + clockSkewMs,
    notify: async (notice) => {
      notices.push(notice);
      const object = JSON.parse(notice.data.toString()) as { bucket: string; name: string };
      if (notice.attributes.eventType === 'OBJECT_FINALIZE') {
        const [exists] = await storage.bucket(object.bucket).file(object.name).exists();
        existedAtNotify.push(exists);
      }
    },
  });
  storage = new Storage({ apiEndpoint: emulator.url, projectId: PROJECT, keyFilename: key.keyFile });
});

afterAll(async () => {
  await emulator?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  clockSkewMs = 0;
  notices.length = 0;
  existedAtNotify.length = 0;
});

describe('health and buckets', () => {
  it('answers /healthz and / for readiness', async () => {
    expect((await fetch(`${emulator.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${emulator.url}/`)).status).toBe(200);
  });

  it('creates, gets, lists and refuses to re-create buckets', async () => {
    const [bucket] = await storage.createBucket('buckets-test');
    const [metadata] = await bucket.getMetadata();
    expect(metadata).toMatchObject({
      kind: 'storage#bucket',
      name: 'buckets-test',
      storageClass: 'STANDARD',
    });
    const [buckets] = await storage.getBuckets();
    expect(buckets.map((b) => b.name)).toContain('buckets-test');
    await expect(storage.createBucket('buckets-test')).rejects.toMatchObject({ code: 409 });
    expect((await storage.bucket('no-such-bucket').exists())[0]).toBe(false);
  });

  it('creates a bucket on the first upload into it', async () => {
    await storage.bucket('auto-created').file('a.txt').save('x', { resumable: false });
    expect((await storage.bucket('auto-created').exists())[0]).toBe(true);
  });
});

describe('JSON API objects', () => {
  let bucket: Bucket;
  beforeAll(async () => {
    [bucket] = await storage.createBucket('objects-test');
  });

  it('multipart upload returns the production object resource', async () => {
    const data = Buffer.from('hello world');
    const file = bucket.file('docs/hello.txt');
    await file.save(data, {
      resumable: false,
      contentType: 'text/plain',
      metadata: { metadata: { owner: 's-1' } },
    });
    const [m] = await file.getMetadata();
    expect(m).toMatchObject({
      kind: 'storage#object',
      name: 'docs/hello.txt',
      bucket: 'objects-test',
      contentType: 'text/plain',
      size: '11',
      metageneration: '1',
      md5Hash: md5(data),
      crc32c: 'yZRlqg==', // CRC32C("hello world") = 0xc99465aa
      metadata: { owner: 's-1' },
    });
    expect(m.id).toBe(`objects-test/docs/hello.txt/${m.generation}`);
    expect(m.generation).toMatch(/^\d+$/);
    expect(m.selfLink).toBe(`${emulator.url}/storage/v1/b/objects-test/o/docs%2Fhello.txt`);
    expect(m.mediaLink).toContain('/download/storage/v1/b/objects-test/o/docs%2Fhello.txt');
    expect(typeof m.etag).toBe('string');
    expect(new Date(m.timeCreated!).toISOString()).toBe(m.timeCreated);
    expect(m.updated).toBe(m.timeCreated);
    // mediaLink serves the bytes
    expect(await (await fetch(m.mediaLink!)).text()).toBe('hello world');
  });

  it('simple upload (uploadType=media) stores the body with its content type', async () => {
    const res = await fetch(
      `${emulator.url}/upload/storage/v1/b/objects-test/o?uploadType=media&name=simple.json`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"a":1}',
      },
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      name: 'simple.json',
      contentType: 'application/json',
      size: '7',
    });
    const [content] = await bucket.file('simple.json').download();
    expect(content.toString()).toBe('{"a":1}');
  });

  it('refuses an upload whose X-Goog-Hash does not match, storing nothing', async () => {
    const res = await fetch(
      `${emulator.url}/upload/storage/v1/b/objects-test/o?uploadType=media&name=bad-hash`,
      {
        method: 'POST',
        headers: { 'x-goog-hash': `md5=${md5(Buffer.from('other'))}` },
        body: 'content',
      },
    );
    expect(res.status).toBe(400);
    expect((await bucket.file('bad-hash').exists())[0]).toBe(false);
  });

  it('resumable upload of a multi-MiB file, then a streamed download with matching checksum', async () => {
    const source = join(dir, 'big.bin');
    await writeFile(source, randomBytes(12 * MiB + 123));
    await bucket.upload(source, { destination: 'big/single.bin', resumable: true });
    await bucket.upload(source, { destination: 'big/chunked.bin', resumable: true, chunkSize: 2 * MiB });
    const expected = await sha256OfStream(createReadStream(source));
    for (const name of ['big/single.bin', 'big/chunked.bin']) {
      const file = bucket.file(name);
      const [m] = await file.getMetadata();
      expect(m.size).toBe(String(12 * MiB + 123));
      // The client validates the crc32c from x-goog-hash while streaming; a mismatch would reject here.
      expect(await sha256OfStream(file.createReadStream({ validation: 'crc32c' }))).toBe(expected);
      expect(await sha256OfStream(file.createReadStream({ validation: 'md5' }))).toBe(expected);
    }
  });

  it('answers the resumable status query and lets the client resume a session', async () => {
    const data = randomBytes(3 * MiB);
    const file = bucket.file('resumed.bin');
    const [uri] = await file.createResumableUpload();
    const firstChunk = data.subarray(0, 256 * 1024);
    const put = await fetch(uri, {
      method: 'PUT',
      headers: { 'content-range': `bytes 0-${firstChunk.length - 1}/*` },
      body: firstChunk,
    });
    expect(put.status).toBe(308);
    expect(put.headers.get('range')).toBe(`bytes=0-${firstChunk.length - 1}`);
    const status = await fetch(uri, { method: 'PUT', headers: { 'content-range': 'bytes */*' } });
    expect(status.status).toBe(308);
    expect(status.headers.get('range')).toBe(`bytes=0-${firstChunk.length - 1}`);

    // The client asks for the offset itself (bytes */*) and skips what the server already has.
    await pipeline(
      Readable.from([data]),
      file.createWriteStream({ uri, resumable: true, validation: false }),
    );
    const [content] = await file.download();
    expect(content.equals(data)).toBe(true);
    const done = await fetch(uri, { method: 'PUT', headers: { 'content-range': 'bytes */*' } });
    expect(done.status).toBe(200);
    expect((await done.json()).name).toBe('resumed.bin');
  });

  it('serves byte ranges', async () => {
    const file = bucket.file('range.txt');
    await file.save('0123456789', { resumable: false });
    const [slice] = await file.download({ start: 2, end: 5 });
    expect(slice.toString()).toBe('2345');
    const tail = await fetch(`${emulator.url}/storage/v1/b/objects-test/o/range.txt?alt=media`, {
      headers: { range: 'bytes=-3' },
    });
    expect(tail.status).toBe(206);
    expect(tail.headers.get('content-range')).toBe('bytes 7-9/10');
    expect(await tail.text()).toBe('789');
    const beyond = await fetch(`${emulator.url}/storage/v1/b/objects-test/o/range.txt?alt=media`, {
      headers: { range: 'bytes=20-' },
    });
    expect(beyond.status).toBe(416);
  });

  it('lists with prefix, delimiter and page tokens', async () => {
    const [listing] = await storage.createBucket('listing-test');
    const names = ['a/1', 'a/2', 'a/b/3', 'b/1', 'c', 'd', 'e/1'];
    for (const name of names) await listing.file(name).save(name, { resumable: false });

    const [underA] = await listing.getFiles({ prefix: 'a/' });
    expect(underA.map((f) => f.name)).toEqual(['a/1', 'a/2', 'a/b/3']);

    const [top, , response] = await listing.getFiles({ delimiter: '/', autoPaginate: false });
    expect(top.map((f) => f.name)).toEqual(['c', 'd']);
    expect((response as { prefixes: string[] }).prefixes).toEqual(['a/', 'b/', 'e/']);

    const seen: string[] = [];
    let query: Record<string, unknown> | null = { maxResults: 2, autoPaginate: false };
    let pages = 0;
    while (query) {
      const [files, next]: [Array<{ name: string }>, Record<string, unknown> | null] =
        (await listing.getFiles(query)) as never;
      seen.push(...files.map((f) => f.name));
      query = next;
      pages++;
    }
    expect(seen).toEqual(names);
    expect(pages).toBe(4);
  });

  it('patches metadata and bumps the metageneration', async () => {
    const file = bucket.file('patch.txt');
    await file.save('x', { resumable: false, metadata: { metadata: { keep: '1', drop: '2' } } });
    const [m] = await file.setMetadata({
      contentType: 'text/markdown',
      metadata: { drop: null, added: 'yes' },
    });
    expect(m).toMatchObject({
      contentType: 'text/markdown',
      metageneration: '2',
      metadata: { keep: '1', added: 'yes' },
    });
    expect(m.metadata).not.toHaveProperty('drop');
  });

  it('deletes objects; a missing object is a 404', async () => {
    const file = bucket.file('to-delete.txt');
    await file.save('bye', { resumable: false });
    await file.delete();
    expect((await file.exists())[0]).toBe(false);
    await expect(file.getMetadata()).rejects.toMatchObject({ code: 404 });
    await expect(file.delete()).rejects.toMatchObject({ code: 404 });
  });

  it('honours ifGenerationMatch=0 (create only)', async () => {
    const file = bucket.file('once.txt');
    await file.save('1', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    await expect(
      file.save('2', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }),
    ).rejects.toMatchObject({
      code: 412,
    });
    expect((await file.download())[0].toString()).toBe('1');
  });

  it('works through STORAGE_EMULATOR_HOST as well as apiEndpoint', async () => {
    process.env.STORAGE_EMULATOR_HOST = emulator.url;
    try {
      const viaEnv = new Storage({ projectId: PROJECT });
      const file = viaEnv.bucket('objects-test').file('via-env.txt');
      await file.save('env', { resumable: true });
      expect((await file.download())[0].toString()).toBe('env');
      const [files] = await viaEnv.bucket('objects-test').getFiles({ prefix: 'via-env' });
      expect(files.map((f) => f.name)).toEqual(['via-env.txt']);
    } finally {
      delete process.env.STORAGE_EMULATOR_HOST;
    }
  });
});

describe('V4 signed URLs (XML API)', () => {
  const bucketName = 'signed-test';
  const expires = () => Date.now() + 15 * 60 * 1000;
  const lengthRange = { 'x-goog-content-length-range': '10,10' };

  beforeAll(async () => {
    await storage.createBucket(bucketName);
    emulator.addNotification(bucketName, 'artifact-uploads');
  });

  const signPut = (name: string, contentType = 'text/plain') =>
    storage
      .bucket(bucketName)
      .file(name)
      .getSignedUrl({
        version: 'v4',
        action: 'write',
        contentType,
        expires: expires(),
        extensionHeaders: lengthRange,
      })
      .then(([url]) => url);

  const put = (url: string, body: BodyInit, headers: Record<string, string> = {}) =>
    fetch(url, {
      method: 'PUT',
      body,
      headers: { 'content-type': 'text/plain', ...lengthRange, ...headers },
      ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
    } as RequestInit);

  const exists = async (name: string) => (await storage.bucket(bucketName).file(name).exists())[0];

  it('signs path-style URLs against the emulator host', async () => {
    const url = new URL(await signPut('shape.txt'));
    expect(url.origin).toBe(emulator.url);
    expect(url.pathname).toBe(`/${bucketName}/shape.txt`);
    expect(url.searchParams.get('X-Goog-Algorithm')).toBe('GOOG4-RSA-SHA256');
  });

  it('accepts a signed PUT, stores the object and fires finalize after it is stored', async () => {
    const res = await put(await signPut('upload.txt'), '0123456789');
    expect(res.status).toBe(200);
    expect(res.headers.get('x-goog-generation')).toMatch(/^\d+$/);

    const [m] = await storage.bucket(bucketName).file('upload.txt').getMetadata();
    expect(m).toMatchObject({
      contentType: 'text/plain',
      size: '10',
      md5Hash: md5(Buffer.from('0123456789')),
    });

    expect(notices).toHaveLength(1);
    const [notice] = notices;
    expect(notice!.topic).toBe(`projects/${PROJECT}/topics/artifact-uploads`);
    expect(notice!.attributes).toEqual({
      notificationConfig: expect.stringMatching(
        new RegExp(`^projects/_/buckets/${bucketName}/notificationConfigs/\\d+$`),
      ),
      eventType: 'OBJECT_FINALIZE',
      payloadFormat: 'JSON_API_V1',
      bucketId: bucketName,
      objectId: 'upload.txt',
      objectGeneration: m.generation,
      eventTime: m.timeCreated,
    });
    expect(JSON.parse(notice!.data.toString())).toEqual(JSON.parse(JSON.stringify(m)));
    expect(existedAtNotify).toEqual([true]);
  });

  it('serves a signed GET and verifies it', async () => {
    const file = storage.bucket(bucketName).file('upload.txt');
    const [url] = await file.getSignedUrl({ version: 'v4', action: 'read', expires: expires() });
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('0123456789');
    expect(res.headers.get('content-type')).toBe('text/plain');

    const ranged = await fetch(url, { headers: { range: 'bytes=2-4' } });
    expect(ranged.status).toBe(206);
    expect(await ranged.text()).toBe('234');

    const tampered = await fetch(
      url.replace(
        /X-Goog-Signature=([0-9a-f])/,
        (_m, c: string) => `X-Goog-Signature=${c === '0' ? '1' : '0'}`,
      ),
    );
    expect(tampered.status).toBe(403);
    expect(xmlCode(await tampered.text())).toBe('SignatureDoesNotMatch');

    const [missingUrl] = await storage
      .bucket(bucketName)
      .file('missing.txt')
      .getSignedUrl({ version: 'v4', action: 'read', expires: expires() });
    const missing = await fetch(missingUrl);
    expect(missing.status).toBe(404);
    expect(xmlCode(await missing.text())).toBe('NoSuchKey');
  });

  it('refuses unsigned XML API requests', async () => {
    const res = await fetch(`${emulator.url}/${bucketName}/upload.txt`);
    expect(res.status).toBe(403);
    expect(xmlCode(await res.text())).toBe('AccessDenied');
  });

  it('refuses a PUT whose content type differs from the signed one', async () => {
    const res = await put(await signPut('wrong-type.txt'), '0123456789', {
      'content-type': 'application/pdf',
    });
    expect(res.status).toBe(403);
    expect(xmlCode(await res.text())).toBe('SignatureDoesNotMatch');
    expect(await exists('wrong-type.txt')).toBe(false);
    expect(notices).toHaveLength(0);
  });

  it('refuses bodies outside x-goog-content-length-range and stores nothing', async () => {
    const url = await signPut('sized.txt');
    const tooLarge = await put(url, '0123456789A');
    expect(tooLarge.status).toBe(403);
    expect(xmlCode(await tooLarge.text())).toBe('EntityTooLarge');
    const tooSmall = await put(url, '012345678');
    expect(tooSmall.status).toBe(403);
    expect(xmlCode(await tooSmall.text())).toBe('EntityTooSmall');
    expect(await exists('sized.txt')).toBe(false);
    expect(notices).toHaveLength(0);
  });

  it('enforces the length range while streaming a body of unknown length', async () => {
    const url = await signPut('streamed.txt');
    const chunks = ['01234', '56789', 'ABCDE'].map((s) => new TextEncoder().encode(s));
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks.shift();
        if (next) controller.enqueue(next);
        else controller.close();
      },
    });
    const res = await put(url, body);
    expect(res.status).toBe(403);
    expect(xmlCode(await res.text())).toBe('EntityTooLarge');
    expect(await exists('streamed.txt')).toBe(false);
  });

  it('refuses the signed length-range header when it is left out or changed', async () => {
    const url = await signPut('no-range.txt');
    const res = await fetch(url, {
      method: 'PUT',
      body: '0123456789',
      headers: { 'content-type': 'text/plain' },
    });
    expect(res.status).toBe(403);
    const changed = await put(url, '0123456789', { 'x-goog-content-length-range': '0,100' });
    expect(changed.status).toBe(403);
    expect(xmlCode(await changed.text())).toBe('SignatureDoesNotMatch');
    expect(await exists('no-range.txt')).toBe(false);
  });

  it('refuses an expired URL (ExpiredToken)', async () => {
    const url = await signPut('late.txt');
    clockSkewMs = 16 * 60 * 1000;
    const res = await put(url, '0123456789');
    expect(res.status).toBe(403);
    expect(xmlCode(await res.text())).toBe('ExpiredToken');
    expect(await exists('late.txt')).toBe(false);
  });

  it('refuses a URL used before its X-Goog-Date', async () => {
    const url = await signPut('early.txt');
    clockSkewMs = -60 * 1000;
    expect((await put(url, '0123456789')).status).toBe(403);
  });

  it('refuses tampered signatures, query parameters and paths', async () => {
    const url = new URL(await signPut('tamper.txt'));
    const variants: Array<(u: URL) => void> = [
      (u) =>
        u.searchParams.set('X-Goog-Signature', `${u.searchParams.get('X-Goog-Signature')!.slice(0, -2)}00`),
      (u) => u.searchParams.set('X-Goog-Expires', '604800'),
      (u) => u.searchParams.set('X-Goog-SignedHeaders', 'host'),
      (u) => u.searchParams.set('extra', '1'),
      (u) => {
        u.pathname = `/${bucketName}/other.txt`;
      },
    ];
    for (const tamper of variants) {
      const tampered = new URL(url);
      tamper(tampered);
      const res = await put(tampered.href, '0123456789');
      expect(res.status, tampered.search).toBe(403);
      expect(xmlCode(await res.text())).toBe('SignatureDoesNotMatch');
    }
    const noSignature = new URL(url);
    noSignature.searchParams.delete('X-Goog-Signature');
    expect((await put(noSignature.href, '0123456789')).status).toBe(403);
    expect(await exists('tamper.txt')).toBe(false);
    expect(await exists('other.txt')).toBe(false);
  });

  it('refuses URLs signed by an unknown service account', async () => {
    const stranger = await ensureServiceAccountKey(join(dir, 'stranger'), { accountId: 'stranger' });
    const strangerStorage = new Storage({
      apiEndpoint: emulator.url,
      projectId: PROJECT,
      keyFilename: stranger.keyFile,
    });
    const [url] = await strangerStorage.bucket(bucketName).file('stranger.txt').getSignedUrl({
      version: 'v4',
      action: 'write',
      contentType: 'text/plain',
      expires: expires(),
      extensionHeaders: lengthRange,
    });
    expect((await put(url, '0123456789')).status).toBe(403);
    // same email, different key
    const impostor = await ensureServiceAccountKey(join(dir, 'impostor'));
    expect(impostor.clientEmail).toBe(key.clientEmail);
    const impostorStorage = new Storage({
      apiEndpoint: emulator.url,
      projectId: PROJECT,
      keyFilename: impostor.keyFile,
    });
    const [forged] = await impostorStorage.bucket(bucketName).file('stranger.txt').getSignedUrl({
      version: 'v4',
      action: 'write',
      contentType: 'text/plain',
      expires: expires(),
      extensionHeaders: lengthRange,
    });
    const res = await put(forged, '0123456789');
    expect(res.status).toBe(403);
    expect(xmlCode(await res.text())).toBe('SignatureDoesNotMatch');
  });

  it('verifies object names that need percent-encoding', async () => {
    const name = 'art/s 1/(draft) ü+1!.txt';
    const [url] = await storage.bucket(bucketName).file(name).getSignedUrl({
      version: 'v4',
      action: 'write',
      contentType: 'text/plain',
      expires: expires(),
      extensionHeaders: lengthRange,
    });
    expect((await put(url, '0123456789')).status).toBe(200);
    expect(await exists(name)).toBe(true);
  });
});

describe('notifications', () => {
  it('delivers finalize, metadata-update and delete events to JSON-API configurations', async () => {
    const [bucket] = await storage.createBucket('notify-test');
    const [config] = await bucket.createNotification('all-events', { customAttributes: { origin: 'test' } });
    const [configs] = await bucket.getNotifications();
    expect(configs.map((c) => c.id)).toEqual([config.id]);

    const file = bucket.file('n.txt');
    await file.save('one', { resumable: false });
    await file.save('two', { resumable: false });
    await file.setMetadata({ metadata: { k: 'v' } });
    await file.delete();

    const events = notices.map((n) => [n.attributes.eventType, n.attributes.objectId, n.attributes.origin]);
    expect(events).toEqual([
      ['OBJECT_FINALIZE', 'n.txt', 'test'],
      ['OBJECT_FINALIZE', 'n.txt', 'test'],
      ['OBJECT_DELETE', 'n.txt', 'test'],
      ['OBJECT_METADATA_UPDATE', 'n.txt', 'test'],
      ['OBJECT_DELETE', 'n.txt', 'test'],
    ]);
    const [first, second, overwritten] = notices;
    expect(second!.attributes.overwroteGeneration).toBe(first!.attributes.objectGeneration);
    expect(overwritten!.attributes.overwrittenByGeneration).toBe(second!.attributes.objectGeneration);
    expect(notices.every((n) => n.topic === `projects/${PROJECT}/topics/all-events`)).toBe(true);

    await config.delete();
    notices.length = 0;
    await file.save('three', { resumable: false });
    expect(notices).toHaveLength(0);
  });
});

/** Streams `size` bytes (a repeated random block, chunked encoding) from a child Node process. */
function runUploader(url: string, size: number): Promise<string> {
  const script = `
    const http = require('node:http');
    const { once } = require('node:events');
    const crypto = require('node:crypto');
    const block = crypto.randomBytes(1024 * 1024);
    const md5 = crypto.createHash('md5');
    (async () => {
      const req = http.request(process.argv[1], { method: 'POST', headers: { 'content-type': 'application/octet-stream' } });
      const response = once(req, 'response');
      for (let sent = 0; sent < Number(process.argv[2]); sent += block.length) {
        md5.update(block);
        if (!req.write(block)) await once(req, 'drain');
      }
      req.end();
      const [res] = await response;
      let body = '';
      for await (const chunk of res) body += chunk;
      process.stdout.write(JSON.stringify({ status: res.statusCode, body, md5: md5.digest('base64') }));
    })().catch((err) => { console.error(err); process.exit(1); });`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script, url, String(size)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`uploader exited with ${code}`)),
    );
  });
}

describe('durability', () => {
  it('keeps objects across a restart on the same data dir', async () => {
    const dataDir = join(dir, 'restart');
    const first = await startStorageEmulator({ port: 0, dataDir, projectId: PROJECT, signers: [] });
    const client1 = new Storage({ apiEndpoint: first.url, projectId: PROJECT });
    await client1
      .bucket('persist')
      .file('p.txt')
      .save('persisted', { resumable: false, contentType: 'text/plain' });
    const [before] = await client1.bucket('persist').file('p.txt').getMetadata();
    await first.stop();

    const second = await startStorageEmulator({ port: 0, dataDir, projectId: PROJECT, signers: [] });
    try {
      const client2 = new Storage({ apiEndpoint: second.url, projectId: PROJECT });
      const file = client2.bucket('persist').file('p.txt');
      const [after] = await file.getMetadata();
      expect(after.generation).toBe(before.generation);
      expect((await file.download())[0].toString()).toBe('persisted');
      await file.save('newer', { resumable: false });
      expect(Number((await file.getMetadata())[0].generation)).toBeGreaterThan(Number(before.generation));
    } finally {
      await second.stop();
    }
  });

  it('answers 404 for unknown buckets when auto-creation is off', async () => {
    const strict = await startStorageEmulator({
      port: 0,
      dataDir: join(dir, 'strict'),
      projectId: PROJECT,
      signers: [],
      autoCreateBuckets: false,
    });
    try {
      const client = new Storage({ apiEndpoint: strict.url, projectId: PROJECT });
      await expect(client.bucket('absent').file('x').save('x', { resumable: false })).rejects.toMatchObject({
        code: 404,
      });
    } finally {
      await strict.stop();
    }
  });

  it('streams a 200 MiB upload to disk without buffering it', async () => {
    const size = 200 * MiB;
    const { rss: baseline } = process.memoryUsage();
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    let output: string;
    try {
      // The uploader runs in its own process, so only the emulator's memory is measured here.
      output = await runUploader(
        `${emulator.url}/upload/storage/v1/b/objects-test/o?uploadType=media&name=huge.bin`,
        size,
      );
    } finally {
      clearInterval(sampler);
    }
    const {
      status,
      body,
      md5: sentMd5,
    } = JSON.parse(output) as { status: number; body: string; md5: string };
    expect(status).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ size: String(size), md5Hash: sentMd5 });
    expect(peak - baseline).toBeLessThan(50 * MiB);
  }, 120_000);
});

describe('credentials on the JSON API (issue 11 #16)', () => {
  const TOKEN = 'suite-token-for-tests';
  let secured: StorageEmulator;
  // What makes the official client authenticate against a custom endpoint offline: with
  // `useAuthWithCustomEndpoint` alone it asks www.googleapis.com for an OAuth token (the key's token_uri
  // is ignored); in a non-default universe it signs its own RS256 JWT with the key instead, which the
  // emulator verifies with the signer's public key.
  const authedOptions = (keyFilename: string) => ({
    apiEndpoint: secured.url,
    projectId: PROJECT,
    keyFilename,
    useAuthWithCustomEndpoint: true,
    universeDomain: 'ldr.local',
  });

  beforeAll(async () => {
    secured = await startStorageEmulator({
      port: 0,
      dataDir: join(dir, 'secured'),
      projectId: PROJECT,
      signers: [{ clientEmail: key.clientEmail, publicKeyPem: key.publicKeyPem }],
      auth: { tokens: [TOKEN] },
    });
    const client = new Storage(authedOptions(key.keyFile));
    await client.bucket('private').file('secret.txt').save('top secret', { resumable: false });
  });
  afterAll(() => secured?.stop());

  it('lists and downloads nothing without a credential, or with a wrong one', async () => {
    for (const path of [
      '/storage/v1/b?project=demo-ldr',
      '/storage/v1/b/private/o',
      '/storage/v1/b/private/o/secret.txt?alt=media',
      '/download/storage/v1/b/private/o/secret.txt?alt=media',
    ]) {
      for (const headers of [
        {} as Record<string, string>,
        { authorization: 'Bearer nope' },
        { authorization: `Basic ${TOKEN}` },
      ]) {
        const res = await fetch(`${secured.url}${path}`, { headers });
        expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
        expect(await res.text()).not.toContain('top secret');
      }
    }
    const anonymous = new Storage({ apiEndpoint: secured.url, projectId: PROJECT });
    await expect(anonymous.bucket('private').getFiles()).rejects.toMatchObject({ code: 401 });
  });

  it('serves the suite’s bearer token (any case of the scheme)', async () => {
    const res = await fetch(`${secured.url}/storage/v1/b/private/o/secret.txt?alt=media`, {
      headers: { authorization: `bearer ${TOKEN}` },
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('top secret');
  });

  it('serves the official client with the signer’s key', async () => {
    const client = new Storage(authedOptions(key.keyFile));
    const file = client.bucket('private').file('simple.txt');
    await file.save('simple', { resumable: false });
    expect((await file.download())[0].toString()).toBe('simple');
    const [files] = await client.bucket('private').getFiles();
    expect(files.map((f) => f.name).sort()).toEqual(['secret.txt', 'simple.txt']);
  });

  it('refuses a self-signed JWT of an account that is not a signer', async () => {
    const stranger = await ensureServiceAccountKey(join(dir, 'stranger-auth'), {
      accountId: 'stranger-auth',
    });
    const client = new Storage(authedOptions(stranger.keyFile));
    await expect(client.bucket('private').getFiles()).rejects.toMatchObject({ code: 401 });
  });

  it('V4 signed URLs still work without any header', async () => {
    const client = new Storage({ apiEndpoint: secured.url, projectId: PROJECT, keyFilename: key.keyFile });
    const [url] = await client
      .bucket('private')
      .file('secret.txt')
      .getSignedUrl({
        version: 'v4',
        action: 'read',
        expires: Date.now() + 60_000,
      });
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('top secret');
  });
});
