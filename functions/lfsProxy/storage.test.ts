import { createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureServiceAccountKey } from '../../emulators/storage/keys.ts';
import { verifySignedRequest } from '../../emulators/storage/signed-url.ts';
import { createStorage, gcsUrlSigner, signerChoice, storageClientOptions } from './storage.ts';

describe('signerChoice: the configuration picks the signer', () => {
  it.each([
    [
      { LFS_SIGNER: 'key' },
      { GOOGLE_APPLICATION_CREDENTIALS: '/k/sa.json' },
      { kind: 'key', keyFile: '/k/sa.json' },
    ],
    [{ LFS_SIGNER: 'iam' }, {}, { kind: 'iam' }],
    [
      { LFS_SIGNER: 'iam' },
      { LFS_SIGNING_ENDPOINT: 'https://iam.example/v1/sa' },
      { kind: 'iam', signingEndpoint: 'https://iam.example/v1/sa/' },
    ],
  ] as const)('%j + %j → %j', (config, env, choice) => {
    expect(signerChoice(config, env)).toEqual(choice);
  });

  it.each([
    [{ LFS_SIGNER: 'key' }, {}, /LFS_SIGNER=key needs GOOGLE_APPLICATION_CREDENTIALS/],
    [{ LFS_SIGNER: 'key' }, { GOOGLE_APPLICATION_CREDENTIALS: '  ' }, /needs GOOGLE_APPLICATION_CREDENTIALS/],
    [
      { LFS_SIGNER: 'iam' },
      { GOOGLE_APPLICATION_CREDENTIALS: '/k/sa.json' },
      /unset GOOGLE_APPLICATION_CREDENTIALS/,
    ],
    [{ LFS_SIGNER: 'iam' }, { LFS_SIGNING_ENDPOINT: 'not a url' }, /LFS_SIGNING_ENDPOINT/],
  ] as const)('%j + %j is refused at boot', (config, env, message) => {
    expect(() => signerChoice(config, env)).toThrow(message);
  });

  it('key: the client gets the key file; iam: no credentials at all (ADC → metadata server → signBlob)', () => {
    // useAuthWithCustomEndpoint: credentials go to the emulator too, which requires them like Cloud Storage
    expect(storageClientOptions('p', { kind: 'key', keyFile: '/k/sa.json' })).toEqual({
      projectId: 'p',
      useAuthWithCustomEndpoint: true,
      keyFilename: '/k/sa.json',
    });
    expect(storageClientOptions('p', { kind: 'iam' })).toEqual({
      projectId: 'p',
      useAuthWithCustomEndpoint: true,
    });
    expect(storageClientOptions('p')).toEqual({ projectId: 'p', useAuthWithCustomEndpoint: true });
  });
});

/** Checks a signed PUT (or resumable POST) the way Cloud Storage (and the local emulator) does. */
function verifyUpload(
  url: string,
  headers: Record<string, string>,
  signers: Map<string, ReturnType<typeof createPublicKey>>,
  method = 'PUT',
) {
  const u = new URL(url);
  const [, bucket, ...object] = u.pathname.split('/');
  return verifySignedRequest(
    {
      method,
      bucket: decodeURIComponent(bucket!),
      object: decodeURIComponent(object.join('/')),
      rawQuery: u.search.slice(1),
      headers: { host: u.host, ...headers },
    },
    signers,
    Date.now(),
  );
}

const upload = { objectName: 'artifacts/a1/Übung_ü.pdf', contentType: 'application/pdf', size: 42 };

describe('one getSignedUrl path, two signers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lfs-signer-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('key: signs locally with the service-account key; the signature binds type, size and create-only', async () => {
    const key = await ensureServiceAccountKey(join(dir, 'keys'));
    const signer = { kind: 'key', keyFile: key.keyFile } as const;
    const urls = gcsUrlSigner(createStorage('demo-ldr', signer), 'ldr-artifacts', signer);
    const expiresAt = new Date(Date.now() + 15 * 60_000);
    const signed = await urls.upload({ ...upload, expiresAt });
    expect(signed.method).toBe('PUT');
    expect(signed.headers).toEqual({
      'content-type': 'application/pdf',
      'x-goog-content-length-range': '42,42',
      'x-goog-if-generation-match': '0',
    });
    const q = new URL(signed.url).searchParams;
    expect(q.get('X-Goog-Expires')).toBe('900');
    expect(q.get('X-Goog-Credential')).toMatch(new RegExp(`^${key.clientEmail}/`));
    const signers = new Map([[key.clientEmail, createPublicKey(key.publicKeyPem)]]);
    expect(verifyUpload(signed.url, signed.headers, signers).signedHeaders).toEqual([
      'content-type',
      'host',
      'x-goog-content-length-range',
      'x-goog-if-generation-match',
    ]);
    expect(() =>
      verifyUpload(signed.url, { ...signed.headers, 'content-type': 'video/mp4' }, signers),
    ).toThrow();
    expect(() =>
      verifyUpload(signed.url, { ...signed.headers, 'x-goog-content-length-range': '0,9999' }, signers),
    ).toThrow();
  });

  it('key, resumable: a signed POST that starts a session, bound to type, x-goog-resumable and create-only', async () => {
    const key = await ensureServiceAccountKey(join(dir, 'keys'));
    const signer = { kind: 'key', keyFile: key.keyFile } as const;
    const urls = gcsUrlSigner(createStorage('demo-ldr', signer), 'ldr-artifacts', signer);
    const signed = await urls.upload({
      ...upload,
      expiresAt: new Date(Date.now() + 15 * 60_000),
      resumable: true,
    });
    expect(signed.method).toBe('POST');
    expect(signed.headers).toEqual({
      'content-type': 'application/pdf',
      'x-goog-resumable': 'start',
      'x-goog-if-generation-match': '0',
    });
    const signers = new Map([[key.clientEmail, createPublicKey(key.publicKeyPem)]]);
    expect(verifyUpload(signed.url, signed.headers, signers, 'POST').signedHeaders).toEqual([
      'content-type',
      'host',
      'x-goog-if-generation-match',
      'x-goog-resumable',
    ]);
    expect(() => verifyUpload(signed.url, signed.headers, signers, 'PUT')).toThrow();
    expect(() =>
      verifyUpload(signed.url, { ...signed.headers, 'content-type': 'text/html' }, signers, 'POST'),
    ).toThrow();
    const { 'x-goog-if-generation-match': _dropped, ...withoutPrecondition } = signed.headers;
    expect(() => verifyUpload(signed.url, withoutPrecondition, signers, 'POST')).toThrow();
  });

  describe('iam: no key anywhere; the blob goes to IAM Credentials signBlob as the attached service account', () => {
    const email = 'fn-lfs-proxy@demo-ldr.iam.gserviceaccount.com';
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const calls: Array<{ path: string; authorization?: string }> = [];
    const saved = { ...process.env };
    let server: http.Server;
    let base: string;

    beforeAll(async () => {
      // A stand-in for the metadata server (service-account email and token) and for IAM Credentials.
      server = http.createServer((req, res) => {
        let body = '';
        req.on('data', (c) => (body += c));
        req.on('end', () => {
          const path = req.url ?? '';
          calls.push({ path, authorization: req.headers.authorization });
          const meta = (status: number, text: string, type = 'text/plain') => {
            res.writeHead(status, { 'Metadata-Flavor': 'Google', 'content-type': type });
            res.end(text);
          };
          if (path.startsWith('/computeMetadata/v1/instance/service-accounts/default/email'))
            return meta(200, email);
          if (path.startsWith('/computeMetadata/v1/instance/service-accounts/default/token')) {
            return meta(
              200,
              JSON.stringify({ access_token: 'ya29.test', expires_in: 3600, token_type: 'Bearer' }),
              'application/json',
            );
          }
          if (path.startsWith('/computeMetadata/')) return meta(404, 'not found');
          const m = /^\/iam\/([^/]+):signBlob$/.exec(path);
          if (req.method === 'POST' && m && decodeURIComponent(m[1]!) === email) {
            const payload = Buffer.from(JSON.parse(body).payload as string, 'base64');
            const signedBlob = sign('RSA-SHA256', payload, privateKey).toString('base64');
            res.writeHead(200, { 'content-type': 'application/json' });
            return res.end(JSON.stringify({ keyId: 'k1', signedBlob }));
          }
          res.writeHead(404).end();
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      base = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
      Object.assign(process.env, {
        GCE_METADATA_HOST: base,
        METADATA_SERVER_DETECTION: 'assume-present',
        HOME: dir, // no gcloud user credentials either
      });
    });
    afterAll(async () => {
      process.env = saved;
      await new Promise((r) => server.close(r));
    });

    it('signs through signBlob with the metadata server’s account and token', async () => {
      const signer = signerChoice({ LFS_SIGNER: 'iam' }, { LFS_SIGNING_ENDPOINT: `http://${base}/iam/` });
      const urls = gcsUrlSigner(createStorage('demo-ldr', signer), 'ldr-artifacts', signer);
      const signed = await urls.upload({ ...upload, expiresAt: new Date(Date.now() + 15 * 60_000) });

      expect(new URL(signed.url).searchParams.get('X-Goog-Credential')).toMatch(new RegExp(`^${email}/`));
      const signBlob = calls.filter((c) => c.path.endsWith(':signBlob'));
      expect(signBlob).toEqual([{ path: `/iam/${email}:signBlob`, authorization: 'Bearer ya29.test' }]);
      const verified = verifyUpload(signed.url, signed.headers, new Map([[email, publicKey]]));
      expect(verified.clientEmail).toBe(email);

      const download = await urls.download({
        objectName: upload.objectName,
        expiresAt: new Date(Date.now() + 60_000),
      });
      expect(new URL(download).searchParams.get('X-Goog-Signature')).toMatch(/^[0-9a-f]{512}$/);
    });
  });
});
