import { createPrivateKey, createSign } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Cloud Run's metadata server and IAM signBlob, locally: what Application Default Credentials use in
 * production. A function's official clients fetch an access token here (GCE_METADATA_HOST), the storage
 * emulator accepts exactly that token, and lfsProxy signs URLs through `signBlob` with the suite's
 * service-account key — the production signing path (LFS_SIGNER=iam), with the endpoint pointed here.
 */
export interface MetadataServer {
  host: string;
  /** what LFS_SIGNING_ENDPOINT points at */
  signingEndpoint: string;
  stop(): Promise<void>;
}

export async function startMetadataServer(opts: {
  projectId: string;
  clientEmail: string;
  privateKeyPem: string;
  /** the access token handed to every function (and accepted by the storage emulator) */
  accessToken: string;
  port?: number;
}): Promise<MetadataServer> {
  const key = createPrivateKey(opts.privateKeyPem);
  const meta: Record<string, string> = {
    '/computeMetadata/v1/project/project-id': opts.projectId,
    '/computeMetadata/v1/project/numeric-project-id': '0',
    '/computeMetadata/v1/instance/service-accounts/default/email': opts.clientEmail,
    '/computeMetadata/v1/instance/service-accounts/default/': opts.clientEmail,
    '/computeMetadata/v1/universe/universe-domain': 'googleapis.com',
    '/computeMetadata/v1/instance': '',
    '/computeMetadata/v1/instance/': '',
    '/computeMetadata/v1/': '',
  };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const send = (status: number, body: string, type = 'application/text') => {
      res.writeHead(status, { 'metadata-flavor': 'Google', 'content-type': type });
      res.end(body);
    };
    const signBlob = /^\/v1\/projects\/-\/serviceAccounts\/([^/]+):signBlob$/.exec(path);
    if (req.method === 'POST' && signBlob) {
      if (req.headers.authorization !== `Bearer ${opts.accessToken}`)
        return send(401, '{"error":"unauthenticated"}');
      if (decodeURIComponent(signBlob[1]!) !== opts.clientEmail)
        return send(403, '{"error":"not this account"}');
      let raw = '';
      req.on('data', (c) => (raw += c));
      req.on('end', () => {
        try {
          const { payload } = JSON.parse(raw) as { payload: string };
          const signed = createSign('RSA-SHA256').update(Buffer.from(payload, 'base64')).sign(key);
          send(
            200,
            JSON.stringify({ keyId: 'local', signedBlob: signed.toString('base64') }),
            'application/json',
          );
        } catch {
          send(400, '{"error":"payload must be base64 in JSON"}');
        }
      });
      return;
    }
    if (req.headers['metadata-flavor'] !== 'Google') return send(403, 'Missing Metadata-Flavor: Google');
    if (path === '/computeMetadata/v1/instance/service-accounts/default/token')
      return send(
        200,
        JSON.stringify({ access_token: opts.accessToken, expires_in: 3599, token_type: 'Bearer' }),
        'application/json',
      );
    if (path in meta) return send(200, meta[path]!);
    return send(404, 'not found');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    signingEndpoint: `http://127.0.0.1:${port}/v1/projects/-/serviceAccounts/`,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}
