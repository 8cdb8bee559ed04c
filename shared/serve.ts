import http from 'node:http';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import * as ff from '@google-cloud/functions-framework';
import { HttpError } from './errors.ts';

/**
 * What production needs before any handler runs, in the function's own code so it runs the same under
 * the Functions Framework's server on Cloud Run and locally. The framework parses every body (up to
 * 1 GB, inflating gzip) before the function is called and answers parse errors as HTML; it has no hook
 * in front of its parsers. So, when the function is registered, the request listener of the server the
 * framework creates is wrapped: the body is read here, counted after decompression and cut off at the
 * limit (413), a body that stalls is answered 408, unparseable JSON 400, an unsupported encoding or
 * charset 415 — all as problem+json. The registered function is then called directly (`serveDirect`).
 */
export interface BodyLimits {
  /** bytes after decompression */
  maxBytes: number;
  /** a body not complete within this time is refused */
  timeoutMs: number;
}

export const HTTPS_BODY_LIMITS: BodyLimits = { maxBytes: 1024 * 1024, timeoutMs: 20_000 };
/** Pub/Sub push bodies: a 10 MB message is ~13.4 MB as base64 JSON */
export const PUSH_BODY_LIMITS: BodyLimits = { maxBytes: 16 * 1024 * 1024, timeoutMs: 20_000 };

type RequestWithBody = http.IncomingMessage & { body?: unknown; rawBody?: Buffer };

function refuse(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  status: number,
  title: string,
  detail: string,
  errors?: Array<{ path: string; message: string }>,
  close = false,
) {
  if (res.headersSent) return;
  // the same problem shape as every other error of the room (shared/errors.ts)
  const body = JSON.stringify(new HttpError(status, title, detail, errors ? { errors } : {}).toProblem());
  const origin = req.headers.origin;
  res.writeHead(status, {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    // the function never saw this request; let a browser read why (CORS is checked again by the router)
    ...(origin && corsAllowed(origin) ? { 'access-control-allow-origin': origin, vary: 'Origin' } : {}),
  });
  res.end(body);
  if (!close) return;
  // the answer is out; the rest of the body is read and dropped (never buffered or inflated) so the client
  // can read the answer, and a client that keeps sending is cut off after a few seconds
  if (!req.complete) {
    req.resume();
    const cut = setTimeout(() => req.socket.destroy(), 5_000);
    cut.unref();
    req.once('end', () => clearTimeout(cut));
  }
}

let corsAllowed: (origin: string) => boolean = () => false;
export function setCorsCheck(check: (origin: string) => boolean) {
  corsAllowed = check;
}

const decoders: Record<string, () => zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress> = {
  gzip: () => zlib.createGunzip(),
  'x-gzip': () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
  br: () => zlib.createBrotliDecompress(),
};

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json$/i;

/** Reads, limits and parses the body; false when it has answered the request itself. */
export function readBody(
  req: RequestWithBody,
  res: http.ServerResponse,
  limits: BodyLimits,
): Promise<boolean> {
  const hasBody =
    req.headers['transfer-encoding'] !== undefined ||
    (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
  if (!hasBody) return Promise.resolve(true);
  const tooLarge = `the body exceeds ${limits.maxBytes} bytes (counted after decompression); upload large files through lfsProxy`;
  if (Number(req.headers['content-length']) > limits.maxBytes) {
    refuse(req, res, 413, 'Content Too Large', tooLarge, undefined, true);
    return Promise.resolve(false);
  }
  const encoding = String(req.headers['content-encoding'] ?? 'identity')
    .trim()
    .toLowerCase();
  let stream: Readable = req;
  if (encoding !== 'identity' && encoding !== '') {
    const make = decoders[encoding];
    if (!make) {
      refuse(
        req,
        res,
        415,
        'Unsupported Media Type',
        `Content-Encoding "${encoding.slice(0, 40)}" is not supported; send identity, gzip, deflate or br`,
        [{ path: '/headers/content-encoding', message: 'unsupported encoding' }],
        true,
      );
      return Promise.resolve(false);
    }
    stream = req.pipe(make() as NodeJS.ReadWriteStream) as unknown as Readable;
  }
  return new Promise<boolean>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.removeAllListeners('data');
      if (!ok && stream !== req) {
        req.unpipe(stream as unknown as NodeJS.WritableStream);
        stream.destroy();
        if (!req.complete) req.resume(); // keep dropping what still arrives (see refuse)
      }
      resolve(ok);
    };
    const timer = setTimeout(() => {
      refuse(
        req,
        res,
        408,
        'Request Timeout',
        `the body did not arrive within ${limits.timeoutMs / 1000} s`,
        undefined,
        true,
      );
      finish(false);
    }, limits.timeoutMs);
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limits.maxBytes) {
        refuse(req, res, 413, 'Content Too Large', tooLarge, undefined, true);
        finish(false);
        return;
      }
      chunks.push(chunk);
    });
    stream.once('error', () => {
      refuse(
        req,
        res,
        400,
        'Bad Request',
        `the body could not be decoded as ${encoding}`,
        [{ path: '/', message: `invalid ${encoding} data` }],
        true,
      );
      finish(false);
    });
    req.once('aborted', () => finish(false));
    stream.once('end', () => {
      if (done) return;
      const raw = Buffer.concat(chunks, size);
      req.rawBody = raw;
      const [type = '', ...params] = String(req.headers['content-type'] ?? '').split(';');
      if (JSON_TYPE.test(type.trim())) {
        const charset = params
          .map((p) => p.trim().split('='))
          .find(([k]) => k?.toLowerCase() === 'charset')?.[1]
          ?.replace(/"/g, '')
          .toLowerCase();
        if (charset && charset !== 'utf-8' && charset !== 'utf8') {
          refuse(
            req,
            res,
            415,
            'Unsupported Media Type',
            `charset "${charset.slice(0, 40)}" is not supported; send UTF-8 JSON`,
            [{ path: '/headers/content-type', message: 'charset must be utf-8' }],
          );
          finish(false);
          return;
        }
        if (raw.length === 0) req.body = undefined;
        else {
          try {
            req.body = JSON.parse(raw.toString('utf8'));
          } catch {
            refuse(req, res, 400, 'Bad Request', 'the body is not valid JSON', [
              { path: '/', message: 'malformed JSON' },
            ]);
            finish(false);
            return;
          }
        }
      } else req.body = raw;
      finish(true);
    });
  });
}

function decodablePath(url = '/') {
  try {
    decodeURIComponent(url.split('?', 1)[0]!);
    return true;
  } catch {
    return false;
  }
}

let limits: BodyLimits = HTTPS_BODY_LIMITS;
let installed = false;
let direct: ff.HttpFunction | undefined;

/**
 * Calls the registered function straight from the guarded listener, without the framework's Express
 * pipeline: its body parsers have nothing left to do, and its per-request `domain`, execution-context and
 * async-local-storage middlewares cost about a third of a small request's CPU (docs/performance.md). Error
 * handling survives without them: every handler of the room is `httpFunction` (shared/http.ts), which
 * answers any thrown error itself; a rejection that still escapes is answered 500 here, and an uncaught
 * exception reaches the framework's process handlers as before (log, then the instance exits).
 */
function serveDirect(fn: ff.HttpFunction, req: http.IncomingMessage, res: http.ServerResponse) {
  const failed = (err: unknown) => {
    console.error(JSON.stringify({ severity: 'ERROR', message: 'unhandled error', err: String(err) }));
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ type: 'about:blank', title: 'Internal Server Error', status: 500 });
    res.writeHead(500, {
      'content-type': 'application/problem+json',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  };
  try {
    const ret = fn(req as ff.Request, res as ff.Response) as unknown;
    if (ret instanceof Promise) ret.catch(failed);
  } catch (err) {
    failed(err);
  }
}

/**
 * Wraps `http.createServer` so the server the framework creates reads bodies through `readBody`, and,
 * when LISTEN_HOST is set (the local suite: the framework has no --host flag), binds that address.
 */
function installServerGuard() {
  if (installed) return;
  installed = true;
  const create = http.createServer;
  const patched = ((...args: unknown[]) => {
    const listener = args.find((a) => typeof a === 'function') as http.RequestListener | undefined;
    const options = args.find((a) => a && typeof a === 'object') as http.ServerOptions | undefined;
    const guarded: http.RequestListener | undefined = listener
      ? (req, res) => {
          // Express decodes the path before any handler and answers a malformed escape with HTML
          if (!decodablePath(req.url)) {
            refuse(req, res, 400, 'Bad Request', 'the path is not valid percent-encoding', [
              { path: '/path', message: 'invalid percent-encoding' },
            ]);
            return;
          }
          readBody(req, res, limits).then((ok) => {
            if (!ok) return;
            if (direct) serveDirect(direct, req, res);
            else listener(req, res);
          });
        }
      : undefined;
    const server = options ? create(options, guarded) : create(guarded);
    // backstops behind readBody's own deadline: headers must arrive within 20 s, the request within 30 s
    server.headersTimeout = 20_000;
    server.requestTimeout = 30_000;
    const host = process.env.LISTEN_HOST;
    if (host) {
      const listen = server.listen.bind(server);
      server.listen = ((...a: unknown[]) => {
        if (typeof a[0] === 'number' || (typeof a[0] === 'string' && /^\d+$/.test(a[0]))) {
          const cb = a.find((x) => typeof x === 'function') as (() => void) | undefined;
          return listen(Number(a[0]), host, cb);
        }
        return listen(...(a as Parameters<typeof listen>));
      }) as typeof server.listen;
    }
    return server;
  }) as typeof http.createServer;
  http.createServer = patched;
}

/** Registers one HTTP function with the Functions Framework, behind the body guard. */
export function serveHttp(
  name: string,
  handler: ff.HttpFunction,
  bodyLimits: BodyLimits = HTTPS_BODY_LIMITS,
) {
  limits = bodyLimits;
  direct = handler;
  installServerGuard();
  // registered with the framework too: its CLI checks the target and serves the port
  ff.http(name, handler);
}
