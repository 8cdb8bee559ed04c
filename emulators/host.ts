import http from 'node:http';
import type { Logger } from '../shared/log.ts';

/**
 * The functions front door on 127.0.0.1:<port>: `/<project>/<region>/<function>/…` is forwarded to that
 * function's worker with the prefix stripped, as Cloud Functions does; `/.well-known/jwks.json` serves
 * the dev identity's public keys.
 */
const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** how long a request waits for a function instance that is starting */
const START_WAIT_MS = 30_000;

export function startHost(opts: {
  port: number;
  projectId: string;
  region: string;
  workerPort: (fn: string) => number | undefined;
  jwks: unknown;
  log: Logger;
  /** the suite's admin routes under /_ldr/ (fault injection, worker pids) */
  admin?: (method: string, path: string) => Promise<{ status: number; body: unknown } | undefined>;
  /** bearer token the admin routes require */
  adminToken?: string;
  /** called for every request forwarded to a function (the suite marks Firestore dirty on writes) */
  onRequest?: (method: string, fn: string) => void;
  /** called with the status of every answer to a function request (0: none) (the console counts requests and errors) */
  onResponse?: (fn: string, status: number) => void;
}): Promise<http.Server> {
  const prefix = `/${opts.projectId}/${opts.region}/`;
  const problem = (res: http.ServerResponse, status: number, detail: string) => {
    res.writeHead(status, { 'content-type': 'application/problem+json' });
    res.end(JSON.stringify({ type: 'about:blank', title: http.STATUS_CODES[status], status, detail }));
  };
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/.well-known/jwks.json') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' });
      res.end(JSON.stringify(opts.jwks));
      return;
    }
    if (url.startsWith('/_ldr/') && opts.admin) {
      const given = /^bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
      if (!opts.adminToken || given !== opts.adminToken) {
        res.setHeader('www-authenticate', 'Bearer realm="ldr-suite"');
        return problem(
          res,
          401,
          'the suite admin routes need the bearer token printed at start (LDR_ADMIN_TOKEN)',
        );
      }
      opts.admin(req.method ?? 'GET', url).then(
        (r) => {
          if (!r) return problem(res, 404, `no admin route ${url}`);
          res.writeHead(r.status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(r.body));
        },
        (err: Error) => problem(res, 500, err.message),
      );
      return;
    }
    if (!url.startsWith(prefix)) return problem(res, 404, `no function at ${url.split('?')[0]}`);
    const rest = url.slice(prefix.length);
    const fn = rest.split(/[/?]/, 1)[0]!;
    const port = opts.workerPort(fn);
    if (!port) return problem(res, 404, `no function named ${fn}`);
    opts.onRequest?.(req.method ?? 'GET', fn);
    // 0: the connection ended before an answer
    res.once('close', () => opts.onResponse?.(fn, res.headersSent ? res.statusCode : 0));
    let path = rest.slice(fn.length);
    if (!path.startsWith('/')) path = `/${path}`;
    // Like Cloud Run's front end: the request is held while the function's instance (re)starts (the body
    // so far is kept and replayed to the new instance), then streamed, so the function sees a slow body as
    // slow; bodies are capped at Cloud Run's 32 MiB request limit.
    const chunks: Buffer[] = [];
    let size = 0;
    let ended = false;
    let current: http.ClientRequest | undefined;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_REQUEST_BYTES) {
        if (!res.headersSent) problem(res, 413, 'the request exceeds 32 MiB');
        req.destroy();
        current?.destroy();
        return;
      }
      chunks.push(c);
      current?.write(c);
    });
    req.on('end', () => {
      ended = true;
      current?.end();
    });
    req.on('close', () => {
      if (!ended) current?.destroy();
    });
    const deadline = Date.now() + START_WAIT_MS;
    const attempt = () => {
      const upstream = http.request({
        host: '127.0.0.1',
        port: opts.workerPort(fn) ?? port,
        method: req.method,
        path,
        headers: { ...req.headers, 'x-forwarded-prefix': `${prefix}${fn}` },
        agent: false, // a fresh connection, so 'connect' tells that an instance is there
      });
      upstream.on('response', (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('socket', (socket) =>
        socket.once('connect', () => {
          current = upstream;
          for (const c of chunks) upstream.write(c);
          if (ended) upstream.end();
        }),
      );
      upstream.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED' && Date.now() < deadline && !res.headersSent) {
          setTimeout(attempt, 100);
          return;
        }
        opts.log.warn({ fn, err: err.message }, 'function unreachable');
        if (!res.headersSent) problem(res, 503, `function ${fn} is not available; retry`);
        else res.destroy();
      });
    };
    attempt();
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve(server));
  });
}
