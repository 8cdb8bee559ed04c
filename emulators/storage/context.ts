import type { KeyObject } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../shared/log.ts';
import type { Notifications } from './notifications.ts';
import type { ResumableUploads } from './resumable.ts';
import type { DiskStore } from './store.ts';

/** What every request handler may use; built once by `startStorageEmulator`. */
export interface Context {
  store: DiskStore;
  notifications: Notifications;
  uploads: ResumableUploads;
  /** Public keys of the service accounts whose V4 signatures are accepted, by client email. */
  signers: ReadonlyMap<string, KeyObject>;
  projectId: string;
  autoCreateBuckets: boolean;
  now: () => number;
  baseUrl: () => string;
  log: Logger;
}

/** One request, as a handler sees it: path parameters are already percent-decoded. */
export interface Call {
  ctx: Context;
  req: IncomingMessage;
  res: ServerResponse;
  params: { bucket?: string; object?: string; id?: string };
  query: URLSearchParams;
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const payload = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json; charset=UTF-8',
    'Content-Length': String(payload.length),
  });
  res.end(payload);
}

export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}) {
  res.writeHead(status, { ...headers, 'Content-Length': '0' });
  res.end();
}
