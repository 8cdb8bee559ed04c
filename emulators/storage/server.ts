import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { corsPolicy } from '../../shared/http.ts';
import { createLogger, type Logger } from '../../shared/log.ts';
import { authorizeJson } from './auth.ts';
import { type Context, sendJson } from './context.ts';
import { StorageError } from './errors.ts';
import { isJsonApiPath, matchJsonRoute } from './json-api.ts';
import { type NotificationOptions, Notifications, type Notify } from './notifications.ts';
import { ResumableUploads } from './resumable.ts';
import { isSignedQuery } from './signed-url.ts';
import { DiskStore } from './store.ts';
import { handleXml } from './xml-api.ts';

/**
 * A Cloud Storage emulator for the local suite: the JSON API as `@google-cloud/storage` speaks it (with
 * `apiEndpoint` or `STORAGE_EMULATOR_HOST`), V4 signed URLs on the XML API with real signature checks, and
 * object notifications in the production Pub/Sub format, handed to `notify`. Binds 127.0.0.1 only.
 */

export interface StorageEmulatorOptions {
  /** 0 picks a free port. */
  port: number;
  dataDir: string;
  projectId: string;
  /** Service accounts whose V4 signatures are accepted. */
  signers: Array<{ clientEmail: string; publicKeyPem: string }>;
  /** Delivers a notification (publish it to Pub/Sub); awaited before the upload is answered. */
  notify?: Notify;
  /** Clock in epoch ms, for signature expiry and timestamps (tests move it). Default `Date.now`. */
  now?: () => number;
  /** Create a bucket on the first upload into it (default true); false answers 404 like production. */
  autoCreateBuckets?: boolean;
  /**
   * Require credentials on the JSON API (auth.ts): a bearer token from `tokens`, or a self-signed JWT of
   * one of the `signers` as the official client sends it. Without this option the JSON API is open.
   */
  auth?: { tokens: string[] };
  /**
   * Bucket CORS as Cloud Storage applies it (shared/bucket-cors.json, the file Terraform sets on the
   * bucket), with the environment's origins; without it no CORS headers are sent.
   */
  cors?: { origins: readonly string[]; rules: readonly CorsRule[] };
  logger?: Logger;
}

export interface CorsRule {
  method: string[];
  responseHeader: string[];
  maxAgeSeconds: number;
}

/**
 * Cloud Storage's CORS check: a preflight is answered with the rule that allows its origin, method and
 * every requested header (403 otherwise); a request from an allowed origin carries
 * Access-Control-Allow-Origin and exposes the rule's response headers.
 */
export function applyCors(
  cors: StorageEmulatorOptions['cors'],
  req: IncomingMessage,
  res: ServerResponse,
): 'answered' | 'continue' {
  const origin = req.headers.origin;
  if (!cors || !origin) return 'continue';
  const allowedOrigin = corsPolicy(cors.origins)(origin);
  const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'];
  const method = String(preflight || req.method).toUpperCase();
  const requested = String(req.headers['access-control-request-headers'] ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  const rule = allowedOrigin
    ? cors.rules.find(
        (r) =>
          r.method.map((m) => m.toUpperCase()).includes(method) &&
          (!preflight || requested.every((h) => r.responseHeader.some((x) => x.toLowerCase() === h))),
      )
    : undefined;
  res.setHeader('Vary', 'Origin');
  if (preflight) {
    if (!rule) {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('CORS request not allowed by the bucket configuration');
      return 'answered';
    }
    res.writeHead(200, {
      'access-control-allow-origin': origin,
      'access-control-allow-methods': rule.method.join(', '),
      'access-control-allow-headers': rule.responseHeader.join(', '),
      'access-control-max-age': String(rule.maxAgeSeconds),
      'content-length': '0',
    });
    res.end();
    return 'answered';
  }
  if (rule) {
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Access-Control-Expose-Headers', rule.responseHeader.join(', '));
  }
  return 'continue';
}

export interface StorageEmulator {
  url: string;
  port: number;
  stop(): Promise<void>;
  /**
   * Sends notifications for `bucket` to `topic` (a topic id in `projectId`, or `projects/<p>/topics/<t>`).
   * Default event types: OBJECT_FINALIZE only, as the suite's Terraform configures it; configurations made
   * through the JSON API (`bucket.createNotification`) default to all event types, as in production.
   */
  addNotification(bucket: string, topic: string, options?: NotificationOptions): void;
}

type Api = 'health' | 'json' | 'xml';

export async function startStorageEmulator(options: StorageEmulatorOptions): Promise<StorageEmulator> {
  const signers = parseSigners(options.signers);
  const log = options.logger ?? createLogger('storage-emulator');
  const now = options.now ?? Date.now;
  await mkdir(options.dataDir, { recursive: true });
  const store = await DiskStore.open(options.dataDir, now);

  let baseUrl = '';
  const ctx: Context = {
    store,
    notifications: new Notifications(options.projectId, () => baseUrl, log, options.notify),
    uploads: new ResumableUploads(store),
    signers,
    projectId: options.projectId,
    autoCreateBuckets: options.autoCreateBuckets ?? true,
    now,
    baseUrl: () => baseUrl,
    log,
  };

  const auth = options.auth;
  const server = createServer((req, res) =>
    applyCors(options.cors, req, res) === 'answered'
      ? undefined
      : void handle(
          ctx,
          req,
          res,
          auth ? () => authorizeJson(req, { tokens: auth.tokens, signers, now }) : undefined,
        ),
  );
  const port = await listen(server, options.port);
  baseUrl = `http://127.0.0.1:${port}`;
  log.info(
    { url: baseUrl, dataDir: options.dataDir, signers: [...signers.keys()] },
    'storage emulator listening',
  );

  return {
    url: baseUrl,
    port,
    stop: () => close(server),
    addNotification(bucket, topic, notificationOptions) {
      ctx.notifications.add(bucket, topic, { eventTypes: ['OBJECT_FINALIZE'], ...notificationOptions });
    },
  };
}

function parseSigners(signers: StorageEmulatorOptions['signers']): Map<string, KeyObject> {
  const bad: string[] = [];
  const keys = new Map<string, KeyObject>();
  for (const { clientEmail, publicKeyPem } of signers) {
    try {
      if (!clientEmail) throw new Error('empty clientEmail');
      keys.set(clientEmail, createPublicKey(publicKeyPem));
    } catch (err) {
      bad.push(`${clientEmail || '(no email)'}: ${(err as Error).message}`);
    }
  }
  if (bad.length) throw new Error(`storage emulator: invalid signers: ${bad.join('; ')}`);
  return keys;
}

async function handle(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
  authorize?: () => Promise<void>,
) {
  const started = performance.now();
  const [path = '/', rawQuery = ''] = splitOnce(req.url ?? '/', '?');
  const api = chooseApi(req.method ?? 'GET', path, rawQuery);
  try {
    // a resumable session URI is its own credential, as in production
    if (api === 'json' && authorize && !new URLSearchParams(rawQuery).has('upload_id')) await authorize();
    await dispatch(ctx, api, req, res, path, rawQuery);
  } catch (err) {
    sendError(ctx, api, res, err);
  } finally {
    // The path only: queries may carry signatures.
    ctx.log.debug(
      { method: req.method, api, path, status: res.statusCode, ms: Math.round(performance.now() - started) },
      'request',
    );
  }
}

function chooseApi(method: string, path: string, rawQuery: string): Api {
  if (isSignedQuery(rawQuery)) return 'xml';
  if ((path === '/healthz' || path === '/') && (method === 'GET' || method === 'HEAD')) return 'health';
  return isJsonApiPath(path) ? 'json' : 'xml';
}

async function dispatch(
  ctx: Context,
  api: Api,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  rawQuery: string,
) {
  if (api === 'health') {
    sendJson(res, 200, { status: 'ok' });
    return;
  }
  if (api === 'xml') {
    await handleXml(ctx, req, res, path, rawQuery);
    return;
  }
  const { handler, params } = matchJsonRoute(req.method ?? 'GET', path);
  await handler({ ctx, req, res, params, query: new URLSearchParams(rawQuery) });
}

/** Renders a `StorageError` in the API's own shape; anything else is a bare 500 (details go to the log). */
function sendError(ctx: Context, api: Api, res: ServerResponse, err: unknown) {
  const error =
    err instanceof StorageError
      ? err
      : new StorageError(500, 'backendError', 'Internal error.', 'InternalError');
  if (error.status >= 500) ctx.log.error({ err }, 'request failed');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (api === 'xml') {
    const body = Buffer.from(error.toXml());
    res.writeHead(error.status, {
      'Content-Type': 'application/xml; charset=UTF-8',
      'Content-Length': String(body.length),
    });
    res.end(body);
    return;
  }
  sendJson(res, error.status, error.toJson());
}

function splitOnce(s: string, separator: string): [string, string] {
  const at = s.indexOf(separator);
  return at === -1 ? [s, ''] : [s.slice(0, at), s.slice(at + 1)];
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    server.closeAllConnections();
  });
}
