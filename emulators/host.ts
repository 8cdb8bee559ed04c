import http from 'node:http';
import type { Logger } from '../shared/log.ts';

/**
 * The functions front door on 127.0.0.1:<port>: `/<project>/<region>/<function>/…` is forwarded to that
 * function's worker with the prefix stripped, as Cloud Functions does; `/.well-known/jwks.json` serves
 * the dev identity's public keys.
 */
export function startHost(opts: {
  port: number;
  projectId: string;
  region: string;
  workerPort: (fn: string) => number | undefined;
  jwks: unknown;
  log: Logger;
  /** the suite's admin routes under /_ldr/ (fault injection, worker pids) */
  admin?: (method: string, path: string) => Promise<{ status: number; body: unknown } | undefined>;
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
    let path = rest.slice(fn.length);
    if (!path.startsWith('/')) path = `/${path}`;
    const upstream = http.request(
      {
        host: '127.0.0.1',
        port,
        method: req.method,
        path,
        headers: { ...req.headers, 'x-forwarded-prefix': `${prefix}${fn}` },
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      opts.log.warn({ fn, err: err.message }, 'function unreachable');
      if (!res.headersSent) problem(res, 503, `function ${fn} is not available; retry`);
      else res.destroy();
    });
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve(server));
  });
}
