import type { Request, Response } from '@google-cloud/functions-framework';
import { HttpError, notFound } from './errors.ts';
import { type Logger, traceFrom, withContext } from './log.ts';
import { setCorsCheck } from './serve.ts';

/** A tiny router for one HTTPS function: routes, problem+json errors, health. */
export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface RouteContext {
  req: Request;
  params: Record<string, string>;
  query: URLSearchParams;
}

export type RouteHandler = (ctx: RouteContext) => Promise<Reply>;
export type Health = () => Promise<Record<string, 'ok' | 'down' | 'degraded'>>;

interface Route {
  method: string;
  path: string;
  pattern: RegExp;
  keys: string[];
  handler: RouteHandler;
}

export function route(method: string, path: string, handler: RouteHandler): Route {
  const keys: string[] = [];
  const source = path.replace(/\/:(\w+)/g, (_, k: string) => {
    keys.push(k);
    return '/([^/]+)';
  });
  return { method, path, pattern: new RegExp(`^${source}/?$`), keys, handler };
}

export function send(res: Response, reply: Reply) {
  // plain node:http calls: functions are served straight from the body guard (shared/serve.ts)
  for (const [k, v] of Object.entries(reply.headers ?? {})) res.setHeader(k, v);
  res.statusCode = reply.status;
  if (reply.body === undefined) {
    res.end();
    return;
  }
  const problem = reply.status >= 400;
  res.setHeader(
    'Content-Type',
    `${problem ? 'application/problem+json' : 'application/json'}; charset=utf-8`,
  );
  res.end(JSON.stringify(reply.body));
}

export function problemReply(err: HttpError): Reply {
  return { status: err.status, body: err.toProblem(), headers: err.extra.headers };
}

/** The URL this function is reached at: the forwarded host and prefix (Cloud Run, the local front door). */
export function baseUrlOf(req: Request): string {
  const first = (h: string | string[] | undefined) =>
    String(Array.isArray(h) ? h[0] : (h ?? ''))
      .split(',')[0]!
      .trim();
  const proto = first(req.headers['x-forwarded-proto']) || 'http';
  const host = first(req.headers['x-forwarded-host']) || first(req.headers.host) || 'localhost';
  const prefix = first(req.headers['x-forwarded-prefix']).replace(/\/+$/, '');
  return `${/^https?$/.test(proto) ? proto : 'http'}://${host}${prefix}`;
}

/** Browser access (SPEC §4): allowed origins exactly, or with `*` as the port (`http://localhost:*`). */
export function corsPolicy(origins: readonly string[]) {
  const exact = new Set(origins.filter((o) => !o.endsWith(':*')));
  const anyPort = origins.filter((o) => o.endsWith(':*')).map((o) => o.slice(0, -2));
  return (origin: string) =>
    exact.has(origin) ||
    anyPort.some(
      (base) => origin === base || new RegExp(`^${base.replace(/[.]/g, '\\.')}:\\d{1,5}$`).test(origin),
    );
}

export const CORS_ALLOW_HEADERS = 'Authorization, Content-Type, Content-Encoding, traceparent';
export const CORS_EXPOSE_HEADERS =
  'RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, Retry-After, Location, WWW-Authenticate';

export function httpFunction(opts: {
  routes: Route[];
  health: Health;
  log: Logger;
  /** allowed browser origins (CORS_ORIGINS) */
  cors?: readonly string[];
  /** this function's OpenAPI document for a base URL, served at GET /openapi.json without a token */
  openapi?: (baseUrl: string) => unknown;
}) {
  const { routes, health, log } = opts;
  const allowed = corsPolicy(opts.cors ?? []);
  const documents = new Map<string, unknown>();
  const openapiFor = (base: string) => {
    if (!documents.has(base)) documents.set(base, opts.openapi!(base));
    return documents.get(base);
  };
  setCorsCheck(allowed);
  return async (req: Request, res: Response) => {
    const ctx = traceFrom(
      req.headers.traceparent as string | undefined,
      req.headers['x-cloud-trace-context'] as string | undefined,
    );
    return withContext(ctx, () => handle(req, res));
  };

  async function handle(req: Request, res: Response) {
    let routePath = '?';
    const origin = req.headers.origin;
    if (origin && allowed(origin)) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Expose-Headers', CORS_EXPOSE_HEADERS);
    }
    if (origin) res.setHeader('Vary', 'Origin');
    try {
      // prefixing (not resolving against a base) keeps '//x' and '/\\x' paths instead of throwing
      const url = new URL(`http://local${req.url.startsWith('/') ? '' : '/'}${req.url}`);
      const path = url.pathname.replace(/\/+$/, '') || '/';
      const method = req.method === 'HEAD' ? 'GET' : req.method;
      const builtin: Array<{ path: string; run: () => Promise<Reply> }> = [
        {
          path: '/healthz',
          run: async () => {
            const deps = await health();
            const down = Object.values(deps).includes('down');
            return { status: down ? 503 : 200, body: { status: down ? 'down' : 'ok', dependencies: deps } };
          },
        },
        ...(opts.openapi
          ? [{ path: '/openapi.json', run: async () => ({ status: 200, body: openapiFor(baseUrlOf(req)) }) }]
          : []),
      ];
      const special = builtin.find((b) => b.path === path);
      const matching = routes
        .map((r) => ({ r, m: r.pattern.exec(path) }))
        .filter((x): x is { r: Route; m: RegExpExecArray } => x.m !== null);
      const methods = special ? ['GET'] : [...new Set(matching.map((x) => x.r.method))];
      if (!special && !matching.length) throw notFound(`no route for ${req.method} ${path}`);
      const allow = [...new Set([...methods, ...(methods.includes('GET') ? ['HEAD'] : []), 'OPTIONS'])].join(
        ', ',
      );
      if (req.method === 'OPTIONS') {
        const preflight = req.headers['access-control-request-method'];
        if (preflight && origin && allowed(origin)) {
          res.setHeader('Access-Control-Allow-Methods', allow);
          res.setHeader('Access-Control-Allow-Headers', CORS_ALLOW_HEADERS);
          res.setHeader('Access-Control-Max-Age', '600');
        }
        return send(res, { status: 204, headers: { Allow: allow } });
      }
      if (special) {
        routePath = special.path;
        if (method !== 'GET')
          throw new HttpError(405, 'Method Not Allowed', `${req.method} is not allowed on ${path}`, {
            headers: { Allow: allow },
          });
        return send(res, await special.run());
      }
      const hit = matching.find((x) => x.r.method === method);
      if (!hit)
        throw new HttpError(405, 'Method Not Allowed', `${req.method} is not allowed on ${path}`, {
          headers: { Allow: allow },
        });
      routePath = hit.r.path;
      const params: Record<string, string> = {};
      hit.r.keys.forEach((k, i) => {
        try {
          params[k] = decodeURIComponent(hit.m[i + 1]!);
        } catch {
          throw new HttpError(400, 'Bad Request', `the path segment for ${k} is not valid percent-encoding`, {
            errors: [{ path: `/params/${k}`, message: 'invalid percent-encoding' }],
          });
        }
      });
      return send(res, await hit.r.handler({ req, params, query: url.searchParams }));
    } catch (err) {
      if (err instanceof HttpError) return send(res, problemReply(err));
      // the route pattern, never the path: paths carry student ids
      log.error({ err, route: routePath, method: req.method }, 'unhandled error');
      return send(res, {
        status: 500,
        body: { type: 'about:blank', title: 'Internal Server Error', status: 500 },
      });
    }
  }
}

/** Parses the JSON body the framework left as text/buffer/object; 415 for non-JSON, 400 for bad JSON. */
export function jsonBody(req: Request, maxBytes: number): unknown {
  const type = String(req.headers['content-type'] ?? '');
  if (!/^application\/(.+\+)?json\b/i.test(type)) {
    throw new HttpError(415, 'Unsupported Media Type', 'send the body as application/json');
  }
  const raw = (req as Request & { rawBody?: Buffer }).rawBody;
  const size = raw?.length ?? Number(req.headers['content-length'] ?? 0);
  if (size > maxBytes) {
    throw new HttpError(413, 'Content Too Large', `the body exceeds ${maxBytes} bytes`);
  }
  if (req.body !== undefined && typeof req.body === 'object' && !Buffer.isBuffer(req.body)) {
    const problem = unstorable(req.body);
    if (problem) throw new HttpError(400, 'Bad Request', problem.message, { errors: [problem] });
    return req.body;
  }
  throw new HttpError(400, 'Bad Request', 'the body is not valid JSON', {
    errors: [{ path: '/', message: 'malformed JSON' }],
  });
}

export const MAX_JSON_DEPTH = 32;
const LONE_SURROGATE = /\p{Surrogate}/u;
/** U+0000 or any surrogate code unit (no `u` flag): only a string that matches needs the exact checks */
// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what it looks for
const SUSPECT = /[\u0000\uD800-\uDFFF]/;

const badString = (v: string) =>
  !SUSPECT.test(v)
    ? undefined
    : v.includes('\u0000')
      ? 'must not contain U+0000'
      : LONE_SURROGATE.test(v)
        ? 'must be well-formed Unicode (no lone surrogates)'
        : undefined;

interface Node {
  v: unknown;
  depth: number;
  key?: string;
  parent?: Node;
}

/** The JSON Pointer of a node, built only for the one that is reported. */
function pointer(n: Node): string {
  const keys: string[] = [];
  for (let at: Node | undefined = n; at?.key !== undefined; at = at.parent)
    keys.push(at.key.replace(/~/g, '~0').replace(/\//g, '~1'));
  return keys.length ? `/${keys.reverse().join('/')}` : '/';
}

/**
 * Finds what no store of the room can hold, without recursion (so a deeply nested body cannot
 * overflow the stack): nesting deeper than MAX_JSON_DEPTH, and U+0000 or lone surrogates in strings
 * or keys, which PostgreSQL jsonb refuses.
 */
export function unstorable(value: unknown): { path: string; message: string } | undefined {
  const stack: Node[] = [{ v: value, depth: 0 }];
  while (stack.length) {
    const n = stack.pop()!;
    const v = n.v;
    if (typeof v === 'string') {
      const bad = badString(v);
      if (bad) return { path: pointer(n), message: bad };
      continue;
    }
    if (!v || typeof v !== 'object') continue;
    if (n.depth >= MAX_JSON_DEPTH)
      return { path: pointer(n), message: `nests deeper than ${MAX_JSON_DEPTH} levels` };
    for (const key of Object.keys(v)) {
      const child: Node = { v: (v as Record<string, unknown>)[key], depth: n.depth + 1, key, parent: n };
      if (badString(key))
        return { path: pointer(child), message: 'keys must be well-formed Unicode without U+0000' };
      stack.push(child);
    }
  }
  return undefined;
}
