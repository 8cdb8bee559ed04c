import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { errors } from '@upstash/redis';
import { afterEach, describe, expect, it } from 'vitest';
import { upstashRequester } from './upstash-http.ts';

/** The transport's failure paths against a local HTTP server that misbehaves as a broken endpoint would. */
const servers: http.Server[] = [];
async function serve(handler: http.RequestListener) {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

describe('upstashRequester', () => {
  it('sends the command as JSON with the bearer token and the read-your-writes token it was given', async () => {
    const seen: Array<{ auth?: string; sync?: string; body: string }> = [];
    const url = await serve((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        seen.push({
          auth: req.headers.authorization,
          sync: req.headers['upstash-sync-token'] as string | undefined,
          body,
        });
        res.writeHead(200, { 'content-type': 'application/json', 'upstash-sync-token': 'sync-1' });
        res.end('{"result":"OK"}');
      });
    });
    const r = upstashRequester({ url, token: 't0k' });
    expect(await r.request({ body: ['set', 'k', 'v'] })).toEqual({ result: 'OK' });
    await r.request({ body: ['get', 'k'] });
    expect(seen).toEqual([
      { auth: 'Bearer t0k', sync: undefined, body: '["set","k","v"]' },
      { auth: 'Bearer t0k', sync: 'sync-1', body: '["get","k"]' },
    ]);
  });

  it('an answer that is not JSON is an UpstashError naming the status', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(502);
      res.end('<html>bad gateway</html>');
    });
    const err = await upstashRequester({ url, token: 't' })
      .request({ body: ['get', 'k'] })
      .catch((e: Error) => e);
    expect(err).toBeInstanceOf(errors.UpstashError);
    expect(String(err)).toMatch(/502/);
  });

  it('an endpoint that never answers fails at the timeout (after its one retry), it does not hang', async () => {
    let requests = 0;
    const url = await serve(() => {
      requests++; // never answers
    });
    const started = Date.now();
    await expect(
      upstashRequester({ url, token: 't', timeoutMs: 200, backoffMs: 10 }).request({ body: ['get', 'k'] }),
    ).rejects.toThrow(/timed out/);
    expect(requests).toBe(2);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
