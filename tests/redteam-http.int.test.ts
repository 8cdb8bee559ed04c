/**
 * Issue 11, the HTTP-layer findings replayed against the running room (through the local front door,
 * to the functions served by the Functions Framework's CLI from the built artifact): gzip bombs,
 * HTTP details, and the suite's own credentials. No function may crash or restart during any of it.
 */
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { fnUrl, suite, token, workers } from './helpers.ts';
import { gzipBomb } from './payloads.ts';

const HTTPS = ['ingestInteraction', 'lfsProxy', 'publishContent', 'partnerRoom', 'progressApi'] as const;

describe('gzip bombs (finding 1)', () => {
  it('three concurrent unauthenticated bombs per HTTPS function are 413, and no function restarts', async () => {
    const before = await workers();
    const bomb = gzipBomb(200); // ~200 KB on the wire, 200 MiB inflated
    const targets = [
      fnUrl('ingestInteraction', '/'),
      fnUrl('lfsProxy', '/uploads'),
      fnUrl('publishContent', '/'),
    ];
    const answers = await Promise.all(
      targets.flatMap((url) =>
        [1, 2, 3].map(async () => {
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
            body: new Uint8Array(bomb),
          });
          return { url, status: res.status, type: res.headers.get('content-type'), body: await res.json() };
        }),
      ),
    );
    for (const a of answers) {
      expect(a.status, a.url).toBe(413);
      expect(a.type).toContain('application/problem+json');
      expect(a.body.detail).toMatch(/after decompression/);
    }
    const after = await workers();
    for (const [name, w] of Object.entries(before)) expect(after[name]!.pid, name).toBe(w.pid);
  });
});

describe('HTTP details (finding 12)', () => {
  it.each(HTTPS)('%s: HEAD /healthz like GET, 405 with Allow', async (name) => {
    const head = await fetch(fnUrl(name, '/healthz'), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    const wrong = await fetch(fnUrl(name, '/healthz'), { method: 'DELETE' });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toMatch(/GET/);
  });

  it('HEAD behaves like GET on a GET route', async () => {
    const t = await token({
      sub: 'ht-student',
      role: 'student',
      instance: 'inst-ht',
      permissions: ['progress:read'],
    });
    const get = await fetch(fnUrl('progressApi', '/students/ht-student'), {
      headers: { authorization: `Bearer ${t}` },
    });
    const head = await fetch(fnUrl('progressApi', '/students/ht-student'), {
      method: 'HEAD',
      headers: { authorization: `Bearer ${t}` },
    });
    expect(head.status).toBe(get.status);
    expect(await head.text()).toBe('');
  });

  it('the auth scheme is case-insensitive', async () => {
    const t = await token({
      sub: 'ht-student',
      role: 'student',
      instance: 'inst-ht',
      permissions: ['progress:read'],
    });
    const answers: number[] = [];
    for (const scheme of ['Bearer', 'bearer', 'BEARER']) {
      const res = await fetch(fnUrl('progressApi', '/students/ht-student'), {
        headers: { authorization: `${scheme} ${t}` },
      });
      answers.push(res.status);
    }
    // the token was accepted in every spelling: the same answer as with `Bearer` (the learner has no data
    // yet: 404), never the 401 of a refused token; a wrong scheme is still refused
    expect(answers[0]).not.toBe(401);
    expect(answers).toEqual([answers[0], answers[0], answers[0]]);
    const basic = await fetch(fnUrl('progressApi', '/students/ht-student'), {
      headers: { authorization: `Basic ${t}` },
    });
    expect(basic.status).toBe(401);
  });

  it('a non-UTF-8 JSON charset is 415 Unsupported Media Type', async () => {
    const res = await fetch(fnUrl('ingestInteraction', '/'), {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=latin1' },
      body: '{}',
    });
    expect(res.status).toBe(415);
    expect((await res.json()).title).toBe('Unsupported Media Type');
  });
});

describe('slow bodies (finding 12)', () => {
  it('three stalled bodies are each answered 408 problem+json within 30 s, and nothing restarts', async () => {
    const before = await workers();
    const url = new URL(fnUrl('ingestInteraction', '/'));
    const started = Date.now();
    const answers = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<{ status: number; body: string }>((resolve, reject) => {
            const req = http.request(
              {
                host: url.hostname,
                port: url.port,
                path: url.pathname,
                method: 'POST',
                headers: { 'content-type': 'application/json', 'content-length': '1000' },
              },
              (res) => {
                let body = '';
                res.on('data', (c) => (body += c));
                res.on('end', () => resolve({ status: res.statusCode!, body }));
              },
            );
            req.on('error', reject);
            req.write('{"events":['); // and then nothing
          }),
      ),
    );
    for (const a of answers) {
      expect(a.status).toBe(408);
      expect(JSON.parse(a.body).title).toBe('Request Timeout');
    }
    expect(Date.now() - started).toBeLessThan(30_000);
    const after = await workers();
    for (const [name, w] of Object.entries(before)) expect(after[name]!.pid, name).toBe(w.pid);
  }, 60_000);
});

describe('the suite requires its own credential (finding 16)', () => {
  it('/_ldr/* refuses requests without the admin token', async () => {
    const base = `http://127.0.0.1:${suite().ports.functions}`;
    for (const [method, path] of [
      ['GET', '/_ldr/workers'],
      ['GET', '/_ldr/bridge'],
      ['POST', '/_ldr/control/redis/stop'],
      ['POST', '/_ldr/registry/apply'],
    ] as const) {
      const res = await fetch(`${base}${path}`, { method });
      expect(res.status, path).toBe(401);
      const forged = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: 'Bearer not-the-token' },
      });
      expect(forged.status, path).toBe(401);
    }
  });
});
