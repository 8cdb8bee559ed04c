/**
 * Functions are called straight from the body guard (shared/serve.ts `serveDirect`), not through the
 * framework's Express pipeline and its per-request `domain`: the request the function sees is the plain
 * node:http one, and a function that throws or rejects is still answered (500 problem+json) while the
 * server goes on serving.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveHttp } from './serve.ts';

let server: Server;
let base: string;

beforeAll(async () => {
  serveHttp('directProbe', (req, res) => {
    if (req.url === '/reject') return Promise.reject(new Error('rejected')) as never;
    if (req.url === '/throw') throw new Error('thrown');
    // Express decorates the request with `app` and `res.locals`; a direct call has neither
    const express = 'app' in req || 'locals' in res;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ express, body: req.body }));
  });
  server = getTestServer('directProbe');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('functions served directly from the body guard', () => {
  it('get the parsed body on a plain node:http request, without the Express pipeline', async () => {
    const res = await fetch(`${base}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"a":1}',
    });
    expect(await res.json()).toEqual({ express: false, body: { a: 1 } });
  });

  it.each(['/reject', '/throw'])(
    'a function failing on %s is answered 500 problem+json and serving goes on',
    async (path) => {
      const res = await fetch(`${base}${path}`, { method: 'POST' });
      expect(res.status).toBe(500);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(await res.json()).toMatchObject({ status: 500, title: 'Internal Server Error' });
      const next = await fetch(`${base}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect(next.status).toBe(200);
    },
  );
});
