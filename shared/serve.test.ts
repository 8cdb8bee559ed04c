/**
 * The request guard and router on the Functions Framework's own server (getServer, what Cloud Run
 * runs), served on 127.0.0.1: limits counted after decompression, stalled bodies, problem+json for
 * everything the framework would answer as HTML, CORS, HEAD, OPTIONS and 405 with Allow.
 */
import type { Server } from 'node:http';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gzipBomb } from '../tests/payloads.ts';
import { httpFunction, jsonBody, route } from './http.ts';
import { createLogger } from './log.ts';
import { serveHttp } from './serve.ts';

const LIMIT = 64 * 1024;
let server: Server;
let base: string;

beforeAll(async () => {
  serveHttp(
    'guardProbe',
    httpFunction({
      log: createLogger('test', 'silent'),
      health: async () => ({ redis: 'ok' }),
      cors: ['http://localhost:*', 'https://app.example'],
      openapi: () => ({ openapi: '3.1.0' }),
      routes: [
        route('POST', '/', async ({ req }) => ({ status: 202, body: { got: jsonBody(req, LIMIT) } })),
        route('GET', '/things/:id', async ({ params }) => ({ status: 200, body: params })),
      ],
    }),
    { maxBytes: LIMIT, timeoutMs: 700 },
  );
  server = getTestServer('guardProbe');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

const post = (body: Buffer | string, headers: Record<string, string> = {}) =>
  fetch(`${base}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : new Uint8Array(body),
  });

async function problem(res: Response) {
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  return res.json();
}

describe('body guard', () => {
  it('passes a normal JSON body to the handler', async () => {
    const res = await post(JSON.stringify({ a: 1 }));
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ got: { a: 1 } });
  });

  it('inflates gzip, counting the inflated bytes', async () => {
    const res = await post(zlib.gzipSync(JSON.stringify({ a: 'x'.repeat(1000) })), {
      'content-encoding': 'gzip',
    });
    expect(res.status).toBe(202);
  });

  it('stops a gzip bomb at the limit: three at once, 413 each, memory flat', {
    timeout: 60_000,
  }, async () => {
    // ~200 KB on the wire, 200 MiB inflated
    const bomb = gzipBomb(200);
    expect(bomb.length).toBeLessThan(400 * 1024);
    const before = process.memoryUsage().rss;
    const answers = await Promise.all(
      [1, 2, 3].map(() =>
        post(bomb, { 'content-encoding': 'gzip' }).then(async (r) => [r.status, await problem(r)]),
      ),
    );
    for (const [status, body] of answers) {
      expect(status).toBe(413);
      expect(body.detail).toMatch(/after decompression/);
    }
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('refuses a declared length above the limit before reading', async () => {
    const res = await post(Buffer.alloc(LIMIT + 1, 0x20));
    expect(res.status).toBe(413);
    expect((await problem(res)).title).toBe('Content Too Large');
  });

  it('answers malformed JSON, bad gzip, unknown encodings and charsets as problem+json', async () => {
    const malformed = await post('{"a":');
    expect(malformed.status).toBe(400);
    expect((await problem(malformed)).errors).toEqual([{ path: '/', message: 'malformed JSON' }]);
    const badGzip = await post('not gzip at all', { 'content-encoding': 'gzip' });
    expect(badGzip.status).toBe(400);
    await problem(badGzip);
    const zstd = await post('{}', { 'content-encoding': 'compress' });
    expect(zstd.status).toBe(415);
    expect((await problem(zstd)).errors[0].path).toBe('/headers/content-encoding');
    const latin1 = await post('{}', { 'content-type': 'application/json; charset=latin1' });
    expect(latin1.status).toBe(415);
    expect((await problem(latin1)).title).toBe('Unsupported Media Type');
  });

  it('answers a stalled body 408 within its deadline', async () => {
    const { port } = server.address() as AddressInfo;
    const started = Date.now();
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/',
          headers: { 'content-type': 'application/json', 'content-length': '100' },
        },
        (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        },
      );
      req.on('error', reject);
      req.write('{"a":'); // and never the rest
    });
    expect(answer.status).toBe(408);
    expect(JSON.parse(answer.body).title).toBe('Request Timeout');
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('router on the framework server', () => {
  it('HEAD behaves like GET, also on /healthz', async () => {
    for (const path of ['/things/a', '/healthz']) {
      const res = await fetch(`${base}${path}`, { method: 'HEAD' });
      expect(res.status, path).toBe(200);
      expect(await res.text()).toBe('');
    }
  });

  it('a malformed percent-escape in the path is a 400 problem, not the framework’s HTML', async () => {
    const res = await fetch(`${base}/things/%E0%A4%A`);
    expect(res.status).toBe(400);
    expect((await problem(res)).errors[0].path).toBe('/path');
  });

  it('405 carries Allow', async () => {
    const res = await fetch(`${base}/things/a`, { method: 'DELETE' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
    await problem(res);
    const health = await fetch(`${base}/healthz`, { method: 'POST' });
    expect(health.status).toBe(405);
    expect(health.headers.get('allow')).toContain('GET');
  });

  it('serves its OpenAPI document without a token', async () => {
    const res = await fetch(`${base}/openapi.json`);
    expect(await res.json()).toEqual({ openapi: '3.1.0' });
  });

  it('answers a preflight from an allowed origin with the CORS contract', async () => {
    const res = await fetch(`${base}/`, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://localhost:5173',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-headers')).toMatch(/Authorization.*Content-Type/);
    expect(Number(res.headers.get('access-control-max-age'))).toBeGreaterThan(0);
  });

  it('exposes rate-limit and retry headers to allowed origins, even on errors', async () => {
    const res = await fetch(`${base}/`, {
      method: 'POST',
      headers: { origin: 'https://app.example', 'content-type': 'application/json' },
      body: '{bad',
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example');
    const ok = await fetch(`${base}/things/x`, { headers: { origin: 'https://app.example' } });
    expect(ok.headers.get('access-control-expose-headers')).toMatch(
      /RateLimit-Remaining.*Retry-After.*Location/,
    );
  });

  it('gives a disallowed origin no CORS headers and no error', async () => {
    for (const origin of ['https://evil.example', 'http://localhost.evil.example:80', 'null']) {
      const res = await fetch(`${base}/`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST' },
      });
      expect(res.status, origin).toBe(204);
      expect(res.headers.get('access-control-allow-origin'), origin).toBeNull();
      expect(res.headers.get('access-control-allow-methods'), origin).toBeNull();
    }
  });
});
