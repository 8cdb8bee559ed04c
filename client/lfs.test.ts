import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { artifactIdOf, downloadUrl, LfsError, uploadArtifact } from './lfs.ts';

/**
 * A fake lfsProxy + storage on one port: enough to see what the client sends (declaration, signed
 * headers, bytes) and how it follows the artifact's state. The real thing is covered by tests/lfs.int.test.ts.
 */
interface Recorded {
  declarations: Array<Record<string, unknown>>;
  puts: Array<{ headers: http.IncomingHttpHeaders; sha256: string; size: number }>;
  gets: number;
}
let rec: Recorded;
let states: string[];
let putStatus: number;
let server: http.Server;
let baseUrl: string;
const dir = mkdtempSync(join(tmpdir(), 'lfs-client-'));

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const hash = createHash('sha256');
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      hash.update(c);
      size += c.length;
      if (req.method === 'POST') chunks.push(c);
    });
    req.on('end', () => {
      const json = (status: number, body: unknown, type = 'application/json') => {
        res.writeHead(status, { 'content-type': type });
        res.end(JSON.stringify(body));
      };
      if (req.method === 'POST' && req.url === '/lfs/uploads') {
        if (req.headers.authorization !== 'Bearer t')
          return json(401, { title: 'Unauthorized', status: 401 }, 'application/problem+json');
        const body = JSON.parse(Buffer.concat(chunks).toString());
        rec.declarations.push(body);
        if (body.contentType === 'application/x-bad') {
          return json(
            400,
            {
              title: 'Bad Request',
              status: 400,
              detail: '1 invalid field(s)',
              errors: [{ path: '/contentType', message: 'nope' }],
            },
            'application/problem+json',
          );
        }
        return json(201, {
          artifactId: 'a1',
          uri: 'lfs://a1',
          uploadUrl: `${baseUrl}/bucket/artifacts/a1/x?sig=1`,
          method: 'PUT',
          headers: {
            'content-type': body.contentType,
            'x-goog-content-length-range': `${body.size},${body.size}`,
            'x-goog-if-generation-match': '0',
          },
          expiresAt: new Date(Date.now() + 900_000).toISOString(),
        });
      }
      if (req.method === 'PUT' && req.url?.startsWith('/bucket/')) {
        rec.puts.push({ headers: req.headers, sha256: hash.digest('hex'), size });
        res.writeHead(putStatus, { 'content-type': 'application/xml' });
        return res.end(
          putStatus === 403 ? '<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code></Error>' : '',
        );
      }
      if (req.method === 'GET' && req.url === '/lfs/objects/a1') {
        rec.gets++;
        const state = states.length > 1 ? states.shift()! : states[0]!;
        return json(200, {
          artifactId: 'a1',
          uri: 'lfs://a1',
          state,
          ...(state === 'stored'
            ? { downloadUrl: `${baseUrl}/bucket/artifacts/a1/x?get`, expiresAt: '2030-01-01T00:00:00.000Z' }
            : {}),
          ...(state === 'rejected' ? { reason: 'sha256 mismatch' } : {}),
        });
      }
      json(404, { title: 'Not Found', status: 404, detail: 'no such artifact' }, 'application/problem+json');
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
  rec = { declarations: [], puts: [], gets: 0 };
  states = ['stored'];
  putStatus = 200;
});

const bytes = randomBytes(300_000);
const sha = createHash('sha256').update(bytes).digest('hex');
const lfs = () => `${baseUrl}/lfs/`;

describe('uploadArtifact', () => {
  it.each([
    ['a Blob (browser)', () => ({ file: new Blob([bytes], { type: 'video/mp4' }), filename: 'clip.mp4' })],
    [
      'a File (browser) with its own name and type',
      () => ({ file: new File([bytes], 'Übung 1.mp4', { type: 'video/mp4' }) }),
    ],
    ['a Buffer', () => ({ file: bytes, filename: 'clip.mp4', contentType: 'video/mp4' })],
    [
      'a Readable',
      () => ({
        file: Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]),
        filename: 'clip.mp4',
        contentType: 'video/mp4',
      }),
    ],
    [
      'a path',
      () => {
        const path = join(dir, 'clip.mp4');
        writeFileSync(path, bytes);
        return { path, contentType: 'video/mp4' };
      },
    ],
  ])(
    '%s: declares size and SHA-256, PUTs exactly the signed headers and the bytes',
    async (_what, source) => {
      const s = source();
      const r = await uploadArtifact({ baseUrl: lfs(), token: 't', ...s });
      expect(r).toEqual({ artifactId: 'a1', uri: 'lfs://a1' });
      expect(rec.declarations).toEqual([
        {
          filename: expect.stringMatching(/clip\.mp4|Übung 1\.mp4/),
          contentType: 'video/mp4',
          size: bytes.length,
          sha256: sha,
        },
      ]);
      expect(rec.puts).toHaveLength(1);
      const put = rec.puts[0]!;
      expect(put).toMatchObject({ sha256: sha, size: bytes.length });
      expect(put.headers).toMatchObject({
        'content-type': 'video/mp4',
        'x-goog-content-length-range': `${bytes.length},${bytes.length}`,
        'x-goog-if-generation-match': '0',
        'content-length': String(bytes.length),
      });
      expect(put.headers['transfer-encoding']).toBeUndefined();
    },
  );

  it('hashes a large Blob chunk by chunk (beyond the WebCrypto size)', async () => {
    const big = new Blob([randomBytes(65 * 1024 * 1024)]);
    const expected = createHash('sha256')
      .update(Buffer.from(await big.arrayBuffer()))
      .digest('hex');
    await uploadArtifact({
      baseUrl: lfs(),
      token: 't',
      file: big,
      filename: 'big.zip',
      contentType: 'application/zip',
    });
    expect(rec.declarations[0]!.sha256).toBe(expected);
  }, 30_000);

  it('passes studentId for app tokens', async () => {
    await uploadArtifact({
      baseUrl: lfs(),
      token: 't',
      file: bytes,
      filename: 'a.pdf',
      contentType: 'application/pdf',
      studentId: 'stu-1',
    });
    expect(rec.declarations[0]).toMatchObject({ studentId: 'stu-1' });
  });

  it('a refused declaration is an LfsError with the problem', async () => {
    const err = await uploadArtifact({
      baseUrl: lfs(),
      token: 't',
      file: bytes,
      filename: 'a',
      contentType: 'application/x-bad',
    }).catch((e) => e);
    expect(err).toBeInstanceOf(LfsError);
    expect(err.status).toBe(400);
    expect(err.details.errors).toEqual([{ path: '/contentType', message: 'nope' }]);
    expect(rec.puts).toHaveLength(0);
  });

  it('a refused PUT names the storage error code', async () => {
    putStatus = 403;
    await expect(
      uploadArtifact({ baseUrl: lfs(), token: 't', file: bytes, filename: 'a', contentType: 'video/mp4' }),
    ).rejects.toMatchObject({
      status: 403,
      details: { code: 'SignatureDoesNotMatch' },
    });
  });

  it('412 (the create-only object already exists: an earlier attempt landed) counts as uploaded', async () => {
    putStatus = 412;
    await expect(
      uploadArtifact({ baseUrl: lfs(), token: 't', file: bytes, filename: 'a', contentType: 'video/mp4' }),
    ).resolves.toEqual({
      artifactId: 'a1',
      uri: 'lfs://a1',
    });
  });

  it('needs a content type and a source', async () => {
    await expect(uploadArtifact({ baseUrl: lfs(), token: 't', file: bytes, filename: 'a' })).rejects.toThrow(
      /contentType/,
    );
    await expect(
      uploadArtifact({ baseUrl: lfs(), token: 't', filename: 'a', contentType: 'video/mp4' }),
    ).rejects.toThrow(/file or path/);
  });
});

describe('downloadUrl', () => {
  it('polls while pending, then returns the signed URL', async () => {
    states = ['pending', 'pending', 'stored'];
    const r = await downloadUrl({ baseUrl: lfs(), token: 't', uri: 'lfs://a1', pollMs: 10 });
    expect(r).toEqual({ url: `${baseUrl}/bucket/artifacts/a1/x?get`, expiresAt: '2030-01-01T00:00:00.000Z' });
    expect(rec.gets).toBe(3);
  });

  it('a rejected artifact is an error with the reason', async () => {
    states = ['rejected'];
    await expect(downloadUrl({ baseUrl: lfs(), token: 't', uri: 'lfs://a1' })).rejects.toThrow(
      /rejected: sha256 mismatch/,
    );
  });

  it('gives up at the deadline', async () => {
    states = ['pending'];
    await expect(
      downloadUrl({ baseUrl: lfs(), token: 't', uri: 'lfs://a1', timeoutMs: 200, pollMs: 20 }),
    ).rejects.toThrow(/still pending/);
  });

  it('404 for an unknown artifact; a malformed URI never reaches the server', async () => {
    await expect(downloadUrl({ baseUrl: lfs(), token: 't', uri: 'lfs://zz' })).rejects.toMatchObject({
      status: 404,
    });
    expect(() => artifactIdOf('https://x/y')).toThrow(LfsError);
    expect(() => artifactIdOf('lfs://a/../b')).toThrow(LfsError);
  });
});
