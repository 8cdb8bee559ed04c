import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { boundaryOf, Digest, MultipartRelatedSplitter } from './body.ts';
import { Crc32c } from './crc32c.ts';

const BOUNDARY = 'b0a3d7f2-6c1e-4e0e-9a57-1c2d3e4f5a6b';

function multipartBody(metadata: string, media: Buffer, mediaType = 'image/png') {
  return Buffer.concat([
    Buffer.from(`--${BOUNDARY}\r\nContent-Type: application/json\r\n\r\n${metadata}\r\n`),
    Buffer.from(`--${BOUNDARY}\r\nContent-Type: ${mediaType}\r\n\r\n`),
    media,
    Buffer.from(`\r\n--${BOUNDARY}--`),
  ]);
}

async function split(chunks: Buffer[]) {
  const splitter = new MultipartRelatedSplitter(BOUNDARY);
  const out: Buffer[] = [];
  for await (const part of Readable.from(chunks).pipe(splitter)) out.push(part as Buffer);
  return {
    media: Buffer.concat(out),
    metadata: splitter.metadata?.toString(),
    headers: splitter.mediaHeaders,
  };
}

describe('MultipartRelatedSplitter', () => {
  // Media that contains CRLFs and a near-miss of the delimiter.
  const media = Buffer.concat([
    randomBytes(300),
    Buffer.from(`\r\n--${BOUNDARY.slice(0, 10)}\r\n`),
    randomBytes(300),
  ]);
  const body = multipartBody('{"name":"a.png"}', media);

  it('splits metadata and media whatever the chunk boundaries', async () => {
    for (let at = 1; at < body.length; at++) {
      const result = await split([body.subarray(0, at), body.subarray(at)]);
      expect(result.metadata, `split at ${at}`).toBe('{"name":"a.png"}');
      expect(result.media.equals(media), `split at ${at}`).toBe(true);
      expect(result.headers['content-type']).toBe('image/png');
    }
  });

  it('handles one-byte chunks', async () => {
    const chunks = [...body].map((b) => Buffer.from([b]));
    const result = await split(chunks);
    expect(result.media.equals(media)).toBe(true);
  });

  it('keeps an empty media part empty', async () => {
    const result = await split([multipartBody('{}', Buffer.alloc(0))]);
    expect(result.media.length).toBe(0);
  });

  it('refuses a body without the closing boundary or with a third part', async () => {
    await expect(split([body.subarray(0, body.length - 4)])).rejects.toThrow(/closing boundary/);
    const threeParts = Buffer.concat([
      body.subarray(0, body.length - 2),
      Buffer.from(`\r\nContent-Type: text/plain\r\n\r\nx\r\n--${BOUNDARY}--`),
    ]);
    await expect(split([threeParts])).rejects.toThrow(/exactly two parts/);
  });

  it('reads the boundary from the content type', () => {
    expect(boundaryOf(`multipart/related; boundary=${BOUNDARY}`)).toBe(BOUNDARY);
    expect(boundaryOf('multipart/related; type="application/json"; boundary="q u"')).toBe('q u');
    expect(() => boundaryOf('application/json')).toThrow();
  });
});

describe('Digest and CRC32C', () => {
  it('matches the CRC32C check values', () => {
    expect(new Crc32c().update(Buffer.from('123456789')).value()).toBe(0xe3069283);
    expect(new Crc32c().update(Buffer.alloc(32)).value()).toBe(0x8a9136aa);
    expect(new Crc32c().update(Buffer.from('hello world')).base64()).toBe('yZRlqg==');
  });

  it('is the same computed in pieces as in one go', () => {
    const data = randomBytes(10_000);
    const whole = new Crc32c().update(data).value();
    const pieces = new Crc32c();
    for (let at = 0; at < data.length; at += 777) pieces.update(data.subarray(at, at + 777));
    expect(pieces.value()).toBe(whole);
  });

  it('drops skipped bytes and refuses more than maxBytes', async () => {
    const digest = new Digest(4, 2);
    const out: Buffer[] = [];
    for await (const c of Readable.from([Buffer.from('abc'), Buffer.from('def')]).pipe(digest))
      out.push(c as Buffer);
    expect(Buffer.concat(out).toString()).toBe('cdef');
    expect(digest.size).toBe(4);
    const limited = new Digest(3);
    await expect(
      (async () => {
        for await (const _ of Readable.from([Buffer.from('abcd')]).pipe(limited)) void _;
      })(),
    ).rejects.toThrow(/exceeds 3 bytes/);
  });
});
