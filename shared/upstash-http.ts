import http from 'node:http';
import https from 'node:https';
import { errors, type Requester, type UpstashRequest, type UpstashResponse } from '@upstash/redis';

/**
 * The transport under `@upstash/redis`: its documented `Requester` extension point, over node:http(s)
 * with a keep-alive agent instead of the global `fetch`. Same requests as the library's own client
 * (POST `<url>/<path>` with the JSON command, bearer token, the read-your-writes sync token), results
 * as plain JSON (no base64 response encoding: the room stores ASCII keys and JSON values). Measured in
 * docs/performance.md: the `fetch` client's web streams cost more CPU per command than the command.
 */
export function upstashRequester(opts: {
  url: string;
  token: string;
  /** one retry after a network error (not after an answer), as the library's own client does */
  retries?: number;
  backoffMs?: number;
  timeoutMs?: number;
}): Requester {
  const base = new URL(opts.url.replace(/\/$/, ''));
  const secure = base.protocol === 'https:';
  const agent = secure
    ? new https.Agent({ keepAlive: true, maxSockets: 64 })
    : new http.Agent({ keepAlive: true, maxSockets: 64 });
  const auth = `Bearer ${opts.token}`;
  const state = { syncToken: '' };

  const once = (path: string, body: string, headers: Record<string, string>) =>
    new Promise<{ status: number; text: string; sync?: string }>((resolve, reject) => {
      const req = (secure ? https : http).request(
        {
          host: base.hostname,
          port: base.port || (secure ? 443 : 80),
          method: 'POST',
          path,
          agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            authorization: auth,
            ...(state.syncToken ? { 'upstash-sync-token': state.syncToken } : {}),
            ...headers,
          },
          timeout: opts.timeoutMs ?? 10_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              text: Buffer.concat(chunks).toString('utf8'),
              sync: res.headers['upstash-sync-token'] as string | undefined,
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('Upstash request timed out')));
      req.on('error', reject);
      req.end(body);
    });

  return {
    async request<TResult>(r: UpstashRequest): Promise<UpstashResponse<TResult>> {
      const path = [base.pathname === '/' ? '' : base.pathname, ...(r.path ?? [])].join('/') || '/';
      const body = r.body === undefined ? '' : JSON.stringify(r.body);
      const retries = opts.retries ?? 1;
      let answer: Awaited<ReturnType<typeof once>> | undefined;
      for (let attempt = 0; ; attempt++) {
        try {
          answer = await once(path, body, r.headers ?? {});
          break;
        } catch (err) {
          if (attempt >= retries) throw err;
          await new Promise((done) => setTimeout(done, opts.backoffMs ?? 50));
        }
      }
      if (answer.sync) state.syncToken = answer.sync;
      let parsed: unknown;
      try {
        parsed = JSON.parse(answer.text);
      } catch {
        throw new errors.UpstashError(`Upstash answered ${answer.status} with a body that is not JSON`);
      }
      if (answer.status < 200 || answer.status >= 300) {
        const error = (parsed as { error?: string }).error ?? `HTTP ${answer.status}`;
        throw new errors.UpstashError(`${error}, command was: ${body.slice(0, 200)}`);
      }
      return parsed as UpstashResponse<TResult>;
    },
  };
}
