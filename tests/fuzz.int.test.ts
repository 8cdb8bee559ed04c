/**
 * Fuzzing the HTTPS functions over HTTP (through the suite's front door) with fast-check: generated and
 * mutated bodies, headers, tokens, content types, paths and percent-encodings against ingestInteraction,
 * lfsProxy, publishContent, partnerRoom and progressApi.
 *
 * Property, per request: an answer, and never a 5xx other than 503 while a
 * dependency of that function is really down (its /healthz says so); what ingestInteraction accepts is not
 * dead-lettered downstream; per run: no worker crashed (pids unchanged in /_ldr/workers) and memory flat
 * (worker RSS from /proc/<pid>/status grows less than 50 MiB after the warm-up chunk — or, when V8 is still
 * sizing its heap, less than 50 MiB more during a 3,000-request soak).
 *
 * Phase 1 draws chunks of 1,024 requests from fast-check (`fc.sample` with a fresh seed per chunk) and
 * sends them 16 at a time. Phase 2 replays each new kind of failure by its seed and index
 * (`fc.check(…, { seed, path })`) so fast-check shrinks it to a minimal request that fails the same way.
 * The counterexamples are printed and, when any, fail the test.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureIdentity, LOCAL_AUDIENCE, LOCAL_ISSUER } from '../emulators/identity.ts';
import { upsertPartner } from '../emulators/registry.ts';
import { adminFetch, pubsubClient, suite, tap, token, workers } from './helpers.ts';
import { gzipBomb } from './payloads.ts';

const BUDGET = Number(process.env.LDR_FUZZ_REQUESTS ?? 10_240);
const CONCURRENCY = 16;
const TIME_LIMIT_MS = Number(process.env.LDR_FUZZ_SECONDS ?? 210) * 1000;
const FNS = ['ingestInteraction', 'lfsProxy', 'publishContent', 'partnerRoom', 'progressApi'] as const;
type Fn = (typeof FNS)[number];

/** 8 MiB inflated from ~8 KB: past every function's limit */
const SMALL_BOMB = gzipBomb(8);

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
afterAll(() => agent.destroy());

// ------------------------------------------------------------------------------------------------
// Fixtures: real tokens of every role, near-valid and garbage ones, a partner to talk to
// ------------------------------------------------------------------------------------------------

const tag = randomBytes(4).toString('hex');
const STUDENT = `fz-${tag}-s`;
const INSTANCE = `fz-${tag}-i`;
const SLUG = `fz-${tag}`;
const tokens: Record<string, string> = {};
const nearValid: string[] = [];

const b64 = (x: unknown) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

beforeAll(async () => {
  const dataDir = suite().dataDir;
  upsertPartner(dataDir, { slug: SLUG, displayName: 'Fuzz partner', instances: [INSTANCE] });
  const applied = await adminFetch('/_ldr/registry/apply', { method: 'POST' });
  expect(applied.ok).toBe(true);
  Object.assign(tokens, {
    student: await token({ sub: STUDENT, role: 'student', instance: INSTANCE }),
    app: await token({ sub: `app-${INSTANCE}`, role: 'app', instance: INSTANCE }),
    teacher: await token({ sub: `t-${tag}`, role: 'teacher', instance: INSTANCE }),
    platform: await token({ sub: `platform-${tag}`, role: 'platform' }),
    partner: await token({ sub: `partner-${tag}`, role: 'partner', partner: SLUG }),
    noPermissions: await token({ sub: STUDENT, role: 'student', permissions: ['nothing:at-all'] }),
  });
  const identity = await ensureIdentity(dataDir);
  const key = await importJWK(identity.privateJwk, 'ES256');
  const kid = identity.privateJwk.kid!;
  const now = Math.floor(Date.now() / 1000);
  const claims = { role: 'student', permissions: ['interaction:write', 'progress:read'], sub: STUDENT };
  const sign = (c: Record<string, unknown>, header: Record<string, unknown> = { alg: 'ES256', kid }) =>
    new SignJWT(c).setProtectedHeader(header as never).sign(key);
  const other = await generateKeyPair('ES256', { extractable: true });
  const otherJwk = await exportJWK(other.publicKey);
  const valid = tokens.student!;
  const [h, p, s] = valid.split('.') as [string, string, string];
  nearValid.push(
    await sign({ ...claims, iss: LOCAL_ISSUER, aud: LOCAL_AUDIENCE, iat: now - 7200, exp: now - 3600 }), // expired
    await sign({ ...claims, iss: 'https://evil.example', aud: LOCAL_AUDIENCE, iat: now, exp: now + 600 }),
    await sign({ ...claims, iss: LOCAL_ISSUER, aud: 'someone-else', iat: now, exp: now + 600 }),
    await sign({ ...claims, iss: LOCAL_ISSUER, aud: LOCAL_AUDIENCE, iat: now + 3600, exp: now + 7200 }), // issued in the future
    await sign({ ...claims, iss: LOCAL_ISSUER, aud: LOCAL_AUDIENCE, iat: now, exp: now + 3 * 86_400 }), // lifetime > 24 h
    await sign({
      role: 'wizard',
      sub: STUDENT,
      iss: LOCAL_ISSUER,
      aud: LOCAL_AUDIENCE,
      iat: now,
      exp: now + 600,
    }),
    await sign({
      ...claims,
      sub: 'x'.repeat(5000),
      iss: LOCAL_ISSUER,
      aud: LOCAL_AUDIENCE,
      iat: now,
      exp: now + 600,
    }),
    await sign({
      ...claims,
      permissions: 'interaction:write',
      iss: LOCAL_ISSUER,
      aud: LOCAL_AUDIENCE,
      iat: now,
      exp: now + 600,
    }),
    await sign(
      { ...claims, iss: LOCAL_ISSUER, aud: LOCAL_AUDIENCE, iat: now, exp: now + 600 },
      { alg: 'ES256', kid: 'unknown-kid' },
    ),
    await sign({
      ...claims,
      iss: LOCAL_ISSUER,
      aud: LOCAL_AUDIENCE,
      iat: now,
      exp: now + 600,
      constructor: { prototype: { admin: true } },
    }),
    await new SignJWT({ ...claims, iss: LOCAL_ISSUER, aud: LOCAL_AUDIENCE, exp: now + 600 })
      .setProtectedHeader({ alg: 'ES256', kid })
      .sign(other.privateKey), // right kid, wrong key
    await new SignJWT({ ...claims, iss: LOCAL_ISSUER, aud: LOCAL_AUDIENCE, exp: now + 600 })
      .setProtectedHeader({ alg: 'HS256', kid })
      .sign(new TextEncoder().encode(JSON.stringify(otherJwk))), // HMAC with a public key as secret
    `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`,
    `${b64({ alg: 'none' })}.${p}`,
    `${h}.${p}`,
    `${h}.${p}.${s}.${s}`,
    `${h}.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), role: 'platform' })}.${s}`, // tampered claims
    `${h}.${p}.${s.slice(0, -4)}AAAA`,
    `${h}..${s}`,
    `..`,
    `${b64('{"alg":"ES256","kid":')}.${p}.${s}`, // header not JSON
    `${b64({ alg: 'ES256', kid, crit: ['exp'] })}.${p}.${s}`,
    `${b64({ alg: 'ES256', jku: 'http://127.0.0.1:1/jwks.json' })}.${p}.${s}`,
    `${h}.${b64('[]')}.${s}`,
    `${h}.${b64('null')}.${s}`,
    `${'a'.repeat(70_000)}.${p}.${s}`, // oversized
  );
});

// ------------------------------------------------------------------------------------------------
// Requests
// ------------------------------------------------------------------------------------------------

interface Req {
  fn: Fn;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}

interface Res {
  status: number;
  body: string;
}

/** Node refuses header values with control characters and paths with characters outside ! .. ÿ: keep what it can send. */
const headerSafe = (s: string) => s.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?');
const wellFormed = (s: string) =>
  s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
const enc = (s: string) => encodeURIComponent(wellFormed(s));
const pathSafe = (s: string) => wellFormed(s).replace(/[^\x21-\xff]/gu, (c) => encodeURIComponent(c));

function send(r: Req): Promise<Res> {
  const s = suite();
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: s.ports.functions,
        method: r.method,
        path: `/${s.projectId}/europe-west3/${r.fn}${pathSafe(r.path)}`,
        // a body always travels with its length: Node would send a DELETE / OPTIONS body unframed
        headers:
          r.body !== undefined
            ? { ...r.headers, 'content-length': String(Buffer.byteLength(r.body)) }
            : r.headers,
        agent,
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8').slice(0, 2000),
          }),
        );
        res.on('error', (err) => resolve({ status: -1, body: `response error: ${err.message}` }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer in 30 s')));
    req.on('error', (err) => resolve({ status: -1, body: `request error: ${err.message}` }));
    req.end(r.body);
  });
}

// ------------------------------------------------------------------------------------------------
// Arbitraries
// ------------------------------------------------------------------------------------------------

const now = () => new Date().toISOString();

const weird = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }), // lone surrogates included
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    '\u202e',
    '💥'.repeat(50),
    '../../etc/passwd',
    '%00',
    '${jndi:ldap://x}',
    '<script>',
    "'; DROP TABLE interactions; --",
  ),
);
const prototypeKey = fc.constantFrom(
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '__defineGetter__',
);

/** A JSON value that breaks parsers and serialisers: deep nesting, huge strings, huge numbers. */
const hostileJsonText = fc.oneof(
  fc
    .oneof(
      fc.integer({ min: 15, max: 40 }),
      fc.integer({ min: 100, max: 12_000 }),
      fc.integer({ min: 12_000, max: 120_000 }),
    )
    .map((d) => `${'['.repeat(d)}${']'.repeat(d)}`),
  fc
    .oneof(
      fc.integer({ min: 15, max: 40 }),
      fc.integer({ min: 100, max: 12_000 }),
      fc.integer({ min: 12_000, max: 60_000 }),
    )
    .map((d) => `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`),
  fc.constantFrom(1_000, 33_000, 600_000).map((n) => JSON.stringify('x'.repeat(n))),
  fc.constantFrom(
    '1e309',
    '-1e309',
    '123456789012345678901234567890',
    '-0',
    '0.1e-400',
    'true',
    'null',
    '"\\ud800"',
    '"\\u0000"',
  ),
);

function validBody(fn: Fn, path: string): Record<string, unknown> | undefined {
  switch (fn) {
    case 'ingestInteraction':
      return {
        id: `fz-${randomBytes(6).toString('hex')}`,
        studentId: STUDENT,
        instanceId: INSTANCE,
        kind: 'quiz_answer',
        occurredAt: now(),
        topic: 'fuzz.topic',
        payload: { quizId: 'q1', correct: true, score: 0.5 },
      };
    case 'lfsProxy':
      return {
        filename: 'notes.pdf',
        contentType: 'application/pdf',
        size: 1234,
        sha256: 'a'.repeat(64),
        studentId: STUDENT,
      };
    case 'publishContent':
      return {
        contentId: `fz-${randomBytes(4).toString('hex')}`,
        version: 1,
        kind: 'lesson',
        title: 'Loops',
        topic: 'fuzz.topic',
        instances: [INSTANCE],
        body: { text: 'for i in range(3): print(i)' },
      };
    case 'partnerRoom':
      return path.endsWith('/ack') || path.endsWith('/nack') ? { ackIds: ['not-an-ack-id'] } : {};
    default:
      return undefined;
  }
}

type Mutation = (o: Record<string, unknown>) => fc.Arbitrary<string>;
const keysOf = (o: unknown): string[][] => {
  const out: string[][] = [];
  const walk = (v: unknown, p: string[]) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      for (const k of Object.keys(v)) {
        out.push([...p, k]);
        walk((v as Record<string, unknown>)[k], [...p, k]);
      }
    }
  };
  walk(o, []);
  return out;
};
const setAt = (o: Record<string, unknown>, path: string[], value: unknown, del = false) => {
  const copy = structuredClone(o);
  let cur: Record<string, unknown> = copy;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string, unknown>;
  const last = path[path.length - 1]!;
  if (del) delete cur[last];
  else Object.defineProperty(cur, last, { value, enumerable: true, writable: true, configurable: true });
  return copy;
};

const mutations: Mutation[] = [
  // drop a field
  (o) => fc.constantFrom(...keysOf(o)).map((p) => JSON.stringify(setAt(o, p, undefined, true))),
  // retype a field
  (o) =>
    fc
      .tuple(fc.constantFrom(...keysOf(o)), fc.jsonValue({ maxDepth: 3 }))
      .map(([p, v]) => JSON.stringify(setAt(o, p, v))),
  // weird strings in a field
  (o) => fc.tuple(fc.constantFrom(...keysOf(o)), weird).map(([p, v]) => JSON.stringify(setAt(o, p, v))),
  // an unknown or prototype key, anywhere
  (o) =>
    fc
      .tuple(
        fc.constantFrom([] as string[], ...keysOf(o)),
        fc.oneof(prototypeKey, weird),
        fc.jsonValue({ maxDepth: 2 }),
      )
      .map(([p, k, v]) => {
        const target = p.length ? setAt(o, p, {}) : o;
        return JSON.stringify(setAt(target, [...p, k], v));
      }),
  // prototype pollution attempts written as text (JSON.parse makes them own properties)
  (o) =>
    fc.constantFrom(
      `{"__proto__":{"polluted":true},${JSON.stringify(o).slice(1)}`,
      `{"constructor":{"prototype":{"polluted":true}},${JSON.stringify(o).slice(1)}`,
      JSON.stringify(o).replace(/"payload":\{/, '"payload":{"__proto__":{"score":2},'),
      `{"events":[${JSON.stringify(o)}],"__proto__":{"events":[]}}`,
    ),
  // the same field twice (last one wins in JSON.parse)
  (o) =>
    fc
      .constantFrom(...Object.keys(o))
      .map((k) => `{${JSON.stringify(k)}:"first",${JSON.stringify(o).slice(1)}`),
  // batches: the same event twice, empty, oversized, not an array
  (o) =>
    fc.constantFrom(
      JSON.stringify({ events: [o, o] }),
      JSON.stringify({ events: [] }),
      JSON.stringify({ events: Array.from({ length: 501 }, () => o) }),
      JSON.stringify({ events: o }),
      JSON.stringify({ events: [o], extra: 1 }),
      JSON.stringify([o]),
    ),
  // a hostile value somewhere (deep nesting, huge strings, out-of-range numbers)
  (o) =>
    fc.tuple(fc.constantFrom(...keysOf(o)), hostileJsonText).map(([p, text]) => {
      const marker = `__fz_${randomBytes(4).toString('hex')}__`;
      return JSON.stringify(setAt(o, p, marker)).replace(`"${marker}"`, text);
    }),
];

const malformed = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  fc.string({ maxLength: 200 }),
  fc.constantFrom(
    '{',
    '{"a":1',
    '{"a":1}}',
    '{"a":1} trailing',
    '\ufeff{"a":1}',
    '{"a":\u0000}',
    "{'a':1}",
    '{"a":01}',
    '{"a":NaN}',
    '[1,2,]',
    '',
    'null',
    '"just a string"',
    '12',
  ),
  fc.constant(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d])), // invalid UTF-8 inside a string
  hostileJsonText,
);

const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant('application/json') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'application/json; charset=utf-8',
      'application/problem+json',
      'application/cloudevents+json',
      'APPLICATION/JSON',
      'application/json; charset=latin1',
      'application/json; charset=utf-16',
      'application/jsonx',
      'text/plain',
      'text/json',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=zz',
      'application/octet-stream',
      'application/xml',
      '*/*',
      '',
      'application/json;;;',
      ';',
    ),
  },
  { weight: 1, arbitrary: weird.map(headerSafe) },
);

function tokenArb(valid: string[]): fc.Arbitrary<string | undefined> {
  const mutate = fc
    .tuple(
      fc.constantFrom(...valid.map((r) => tokens[r]!)),
      fc.nat(),
      fc.constantFrom('flip', 'cut', 'dup', 'case'),
    )
    .map(([t, n, op]) => {
      const i = n % t.length;
      if (op === 'flip') return t.slice(0, i) + (t[i] === 'A' ? 'B' : 'A') + t.slice(i + 1);
      if (op === 'cut') return t.slice(0, i);
      if (op === 'dup') return t + t.slice(i);
      return t.toUpperCase();
    })
    .map((t) => `Bearer ${t}`);
  return fc.oneof(
    { weight: 10, arbitrary: fc.constantFrom(...valid).map((r) => `Bearer ${tokens[r]}`) },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom('student', 'app', 'teacher', 'platform', 'partner', 'noPermissions')
        .map((r) => `Bearer ${tokens[r]}`),
    },
    { weight: 3, arbitrary: fc.constantFrom(...nearValid).map((t) => `Bearer ${t}`) },
    { weight: 2, arbitrary: mutate },
    {
      weight: 2,
      arbitrary: fc.oneof(
        fc.constant(undefined),
        fc.constantFrom(
          'Bearer',
          'Bearer ',
          'bearer x',
          'Basic dXNlcjpwYXNz',
          `Bearer  ${'x'}`,
          'Token abc',
          `Bearer ${'.'.repeat(3)}`,
        ),
        weird.map((w) => headerSafe(`Bearer ${w}`)),
        fc.base64String({ maxLength: 200 }).map((b) => `Bearer ${b}`),
      ),
    },
  );
}

const segment = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(STUDENT, SLUG, 'someone-else', 'x') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '%',
      '%zz',
      '%00',
      '%2e%2e',
      '..',
      '.',
      '%2F',
      '%E0%A4%A',
      '%C0%AF',
      '%25',
      '__proto__',
      'constructor',
      '%F0%9F%92%A5',
      'a'.repeat(300),
      '%u0041',
      ';',
    ),
  },
  { weight: 1, arbitrary: weird.map(enc) },
  { weight: 1, arbitrary: weird },
);

const query = fc.oneof(
  fc.constant(''),
  fc.constantFrom(
    '?max=10',
    '?max=0',
    '?max=-1',
    '?max=501',
    '?max=1e309',
    '?max=NaN',
    '?max=10&max=20',
    '?max=',
    '?%zz=1',
    '?__proto__=1',
    '?limit=1&cursor=%%',
    '?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&limit=500',
    '?from=yesterday',
    '?cursor=eyJ4IjoxfQ',
    '?limit=abc',
    '?unknown=1',
    // calendar-invalid dates (issue 11 #4): never a 5xx
    '?from=2026-02-30T00:00:00Z',
    '?to=2026-04-31T00:00:00Z',
    '?from=0000-01-01T00:00:00Z',
    '?from=2026-01-01T24:00:00Z',
    '?to=2026-06-30T23:59:60Z',
    `?cursor=${Buffer.from(JSON.stringify({ t: '0000-01-01T00:00:00Z', id: 'x' })).toString('base64url')}`,
  ),
  fc.tuple(weird, weird).map(([k, v]) => `?${enc(k)}=${enc(v)}`),
);

interface Shape {
  method: fc.Arbitrary<string>;
  path: fc.Arbitrary<string>;
  roles: string[];
}

const shapes: Record<Fn, Shape> = {
  ingestInteraction: {
    method: fc.constantFrom('POST', 'POST', 'POST', 'GET', 'PUT'),
    path: fc.oneof(
      { weight: 6, arbitrary: fc.constant('/') },
      { weight: 1, arbitrary: segment.map((s) => `/${s}`) },
    ),
    roles: ['app', 'app', 'app', 'student'],
  },
  lfsProxy: {
    method: fc.constantFrom('POST', 'GET', 'GET', 'DELETE'),
    path: fc.oneof(
      fc.constant('/uploads'),
      segment.map((s) => `/objects/${s}`),
      segment.map((s) => `/${s}`),
      fc.constant('/objects/'),
    ),
    roles: ['student', 'app', 'platform'],
  },
  publishContent: {
    method: fc.constantFrom('POST', 'POST', 'GET'),
    path: fc.oneof(
      { weight: 6, arbitrary: fc.constant('/') },
      { weight: 1, arbitrary: segment.map((s) => `/${s}`) },
    ),
    roles: ['platform'],
  },
  partnerRoom: {
    method: fc.constantFrom('GET', 'POST', 'POST', 'PUT'),
    path: fc
      .tuple(
        fc.oneof({ weight: 3, arbitrary: fc.constant(SLUG) }, { weight: 1, arbitrary: segment }),
        fc.constantFrom(
          '',
          '/pull',
          '/ack',
          '/nack',
          '/content',
          '/schemas/learnflow.interaction.v1',
          '/schemas/%2e%2e',
          '/x',
        ),
        query,
      )
      .map(([slug, tail, q]) => `/p/${slug}${tail}${q}`),
    roles: ['partner'],
  },
  progressApi: {
    method: fc.constantFrom('GET', 'GET', 'GET', 'POST'),
    path: fc
      .tuple(
        fc.oneof({ weight: 3, arbitrary: fc.constant(STUDENT) }, { weight: 1, arbitrary: segment }),
        fc.constantFrom('', '/history', '/alerts', '/x', '/history/'),
        query,
      )
      .map(([id, tail, q]) => `/students/${id}${tail}${q}`),
    roles: ['student', 'app', 'teacher', 'platform'],
  },
};

const extraHeaders = fc.oneof(
  { weight: 6, arbitrary: fc.constant({} as Record<string, string>) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Record<string, string>>(
      { 'content-encoding': 'gzip' },
      { 'content-encoding': 'br' },
      { 'content-encoding': 'identity, gzip' },
      { 'x-forwarded-prefix': '/../../' },
      { 'x-http-method-override': 'DELETE' },
      { accept: 'application/xml' },
      { 'ce-id': '1', 'ce-type': 'x', 'ce-source': 'y', 'ce-specversion': '1.0' },
      { expect: '100-continue' },
    ),
  },
);

function requestArb(fn: Fn): fc.Arbitrary<Req> {
  const shape = shapes[fn];
  return fc
    .record({
      method: shape.method,
      path: shape.path,
      ct: contentType,
      auth: tokenArb(shape.roles),
      extra: extraHeaders,
      kind: fc.nat(99),
      // compressed bodies (issue 11 #1): real gzip, deflate or br of the body, or a small bomb
      squeeze: fc.constantFrom('none', 'none', 'none', 'none', 'gzip', 'deflate', 'br', 'bomb'),
      date: fc.constantFrom(
        undefined,
        undefined,
        undefined,
        '2026-02-30T00:00:00Z',
        '0000-01-01T00:00:00Z',
        '1999-12-31T23:59:59Z',
        '2026-04-31T10:00:00+02:00',
        '2026-01-01T00:00:00+23:00',
      ),
    })
    .chain(({ method, path, ct, auth, extra, kind, squeeze, date }) => {
      const valid = validBody(fn, path);
      const body: fc.Arbitrary<string | Buffer | undefined> =
        method === 'GET'
          ? fc.constant(undefined)
          : kind < 15 || !valid
            ? fc.oneof(
                fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
                malformed,
              )
            : kind < 30
              ? fc.constant(
                  JSON.stringify(date && 'occurredAt' in valid ? { ...valid, occurredAt: date } : valid),
                )
              : keysOf(valid).length
                ? fc.oneof(...mutations.map((m) => m(valid)))
                : fc.constantFrom(
                    JSON.stringify(valid),
                    '{"__proto__":{"polluted":true}}',
                    '{"constructor":{"prototype":{}}}',
                  );
      return body.map((raw) => {
        const headers: Record<string, string> = { ...extra };
        let b = raw;
        if (b !== undefined && squeeze !== 'none') {
          const bytes = Buffer.isBuffer(b) ? b : Buffer.from(b);
          b =
            squeeze === 'gzip'
              ? zlib.gzipSync(bytes)
              : squeeze === 'deflate'
                ? zlib.deflateSync(bytes)
                : squeeze === 'br'
                  ? zlib.brotliCompressSync(bytes)
                  : SMALL_BOMB;
          headers['content-encoding'] = squeeze === 'bomb' ? 'gzip' : squeeze;
        }
        if (auth !== undefined) headers.authorization = headerSafe(auth);
        if (b !== undefined) headers['content-type'] = ct;
        return { fn, method, path, headers, ...(b !== undefined ? { body: b } : {}) };
      });
    });
}

/** Built once the fixtures exist (the token arbitraries draw from them). */
const anyRequest = () => fc.constantFrom(...FNS).chain(requestArb);

// ------------------------------------------------------------------------------------------------
// The run
// ------------------------------------------------------------------------------------------------

const rssMiB = (pid: number) =>
  Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

async function dependencyDown(fn: Fn): Promise<boolean> {
  const r = await send({ fn, method: 'GET', path: '/healthz', headers: {} });
  return r.status === 503;
}

const signature = (r: Req, res: Res) => {
  let title = '';
  try {
    title = (JSON.parse(res.body) as { title?: string; detail?: string }).detail ?? '';
  } catch {
    title = res.body.slice(0, 60);
  }
  return `${r.fn} ${r.method} → ${res.status} ${title.replace(/[0-9a-f-]{8,}/g, '…').slice(0, 80)}`;
};

const describeReq = (r: Req) => ({
  fn: r.fn,
  method: r.method,
  path: r.path,
  headers: Object.fromEntries(
    Object.entries(r.headers).map(([k, v]) => [
      k,
      v.length > 200 ? `${v.slice(0, 80)}… (${v.length} chars)` : v,
    ]),
  ),
  body:
    r.body === undefined
      ? undefined
      : Buffer.isBuffer(r.body)
        ? `<${r.body.length} bytes: ${r.body.toString('hex').slice(0, 120)}>`
        : r.body.length > 400
          ? `${r.body.slice(0, 200)}… (${r.body.length} chars) …${r.body.slice(-100)}`
          : r.body,
});

/** Sends requests `CONCURRENCY` at a time. */
async function pool<T>(items: T[], work: (item: T, index: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < items.length) {
        const i = next++;
        await work(items[i]!, i);
      }
    }),
  );
}

describe('fuzz: HTTPS functions never answer a 5xx they should not', () => {
  it(`${BUDGET.toLocaleString('en-US')} generated requests over ${FNS.join(', ')}`, async () => {
    const before = await workers();
    const arb = anyRequest();
    // what ingest accepts must also be processable: its dead letters for the fuzz learner are failures too
    const pubsub = pubsubClient();
    const dl = await tap(pubsub, 'learnflow.deadletter');
    const stats: Record<string, Record<string, number>> = Object.fromEntries(FNS.map((f) => [f, {}]));
    const found = new Map<string, { seed: number; index: number }>();
    const rss: Array<Record<string, number>> = [];
    const CHUNK = 1024;
    let sent = 0;
    let dependency503 = 0;
    const t0 = Date.now();

    /**
     * A request without an answer is sent again on its own: a server that answers early (431 for headers over
     * Node's 16 KiB limit, 413 before the body is read) and closes the connection makes the client see a reset
     * while it is still writing. Only what stays unanswered counts as "no answer".
     */
    const sendChecked = async (r: Req): Promise<Res> => {
      let x = await send(r);
      for (let i = 0; i < 2 && x.status < 0; i++) x = await send(r);
      const headerBytes = Object.entries(r.headers).reduce((a, [k, v]) => a + k.length + v.length + 4, 0);
      if (x.status < 0 && headerBytes > 16 * 1024 && /ECONNRESET|socket hang up|EPIPE/.test(x.body)) {
        return {
          status: 431,
          body: `(connection closed: ${headerBytes} bytes of headers exceed Node's limit)`,
        };
      }
      return x;
    };
    /** The failure signature of an answer, or undefined when the answer is allowed. */
    const failure = async (r: Req, x: Res): Promise<string | undefined> => {
      if (!(x.status < 0 || x.status >= 500)) return undefined; // every function is implemented: a 501 is a failure too
      if (x.status === 503 && (await dependencyDown(r.fn))) {
        dependency503++;
        return undefined;
      }
      return signature(r, x);
    };

    // Phase 1: chunks of 1,024 requests drawn by fast-check from a fresh seed, 16 in flight. The first chunk
    // is also the warm-up (JIT, pools, JWKS) before the memory baseline.
    for (let seed = Date.now() % 2 ** 30; sent < BUDGET && Date.now() - t0 < TIME_LIMIT_MS; seed++) {
      const reqs = fc.sample(arb, { seed, numRuns: CHUNK });
      await pool(reqs, async (r, index) => {
        const x = await sendChecked(r);
        sent++;
        stats[r.fn]![x.status] = (stats[r.fn]![x.status] ?? 0) + 1;
        const sig = await failure(r, x);
        if (sig && !found.has(sig)) found.set(sig, { seed, index });
      });
      rss.push(Object.fromEntries(FNS.map((f) => [f, rssMiB(before[f]!.pid)])));
    }
    const seconds = (Date.now() - t0) / 1000;

    // Phase 2: each new kind of failure is replayed by fast-check from its seed and index and shrunk to a
    // minimal request that still fails the same way (at most 150 shrink steps each).
    const counterexamples: Array<Record<string, unknown>> = [];
    let shrinkRequests = 0;
    for (const [sig, { seed, index }] of found) {
      let steps = 0;
      let last: { req: Req; res: Res } | undefined;
      const details = await fc.check(
        fc.asyncProperty(arb, async (r) => {
          if (steps++ > 150) return true; // enough: keep the smallest failing request so far
          const x = await sendChecked(r);
          shrinkRequests++;
          if ((await failure(r, x)) !== sig) return true;
          last = { req: r, res: x };
          return false;
        }),
        { seed, path: String(index), numRuns: index + 1 },
      );
      const minimal = last ?? undefined;
      counterexamples.push({
        signature: sig,
        reproduced: details.failed,
        shrinkSteps: details.numShrinks,
        request: minimal ? describeReq(minimal.req) : undefined,
        status: minimal?.res.status,
        answer: minimal?.res.body.slice(0, 300),
      });
    }

    // accepted (202) interactions that routeTriage or updateProgress could not process and dead-lettered
    // (the bridge gives up after 5 attempts, about 8 s); poison that ingest accepted is a validation gap
    const deadOf = () =>
      dl.received.filter(
        (m) =>
          m.attributes['ce-subject'] === `students/${STUDENT}` &&
          ['routeTriage', 'updateProgress'].includes(m.attributes['ldr-deadletter-function'] ?? ''),
      );
    const settle0 = Date.now();
    let seenDead = -1;
    while (Date.now() - settle0 < 20_000 && deadOf().length !== seenDead) {
      seenDead = deadOf().length;
      await new Promise((r) => setTimeout(r, 10_000));
    }
    const acceptedButDeadLettered = new Map<string, Record<string, unknown>>();
    for (const m of deadOf()) {
      const reason = (m.attributes['ldr-deadletter-reason'] ?? '').slice(0, 200);
      const key = `${m.attributes['ldr-deadletter-function']}: ${reason.replace(/[0-9a-f-]{8,}/g, '…')}`;
      if (!acceptedButDeadLettered.has(key)) {
        acceptedButDeadLettered.set(key, {
          signature: `accepted by ingestInteraction (202), dead-lettered by ${key}`,
          event: m.data.toString('utf8').slice(0, 600),
        });
      }
    }
    await dl.close();
    await pubsub.close();
    for (const v of acceptedButDeadLettered.values()) counterexamples.push(v);

    const after = await workers();
    const crashed = FNS.filter((f) => after[f]!.pid !== before[f]!.pid);
    const base = rss[0] ?? {};
    const end = rss[rss.length - 1] ?? {};
    const growth = Object.fromEntries(FNS.map((f) => [f, +((end[f] ?? 0) - (base[f] ?? 0)).toFixed(1)]));
    // V8 grows its heap for the first few thousand requests of an instance (a soak of 12,000 publishContent
    // requests settles at about 310 MiB RSS), so a worker that grew by 50 MiB or more during the fuzz is soaked
    // with 3,000 more of its own requests: memory is flat when it stops rising (less than 50 MiB more), a leak
    // when it keeps climbing.
    const soak: Record<string, number[]> = {};
    for (const f of FNS) {
      if (crashed.includes(f) || (growth[f] ?? 0) < 50) continue;
      soak[f] = [end[f] ?? 0];
      for (let k = 0; k < 3; k++) {
        await pool(
          fc.sample(requestArb(f), { seed: k + 7, numRuns: 1000 }),
          async (r) => void (await send(r)),
        );
        soak[f]!.push(Math.round(rssMiB(before[f]!.pid)));
      }
    }
    const leaking = Object.entries(soak)
      .filter(([, xs]) => Math.max(...xs) - xs[0]! >= 50)
      .map(([f]) => f);
    const report = {
      requests: sent,
      seconds: +seconds.toFixed(1),
      perSecond: Math.round(sent / seconds),
      shrinkRequests,
      statusesByFunction: stats,
      dependency503,
      crashed,
      rssMiBAfterEachChunk: Object.fromEntries(FNS.map((f) => [f, rss.map((x) => Math.round(x[f] ?? 0))])),
      rssGrowthAfterWarmUpMiB: growth,
      rssMiBDuringSoak: soak,
      leaking,
      counterexamples,
    };
    console.log(`[fuzz] ${JSON.stringify(report, null, 2)}`);
    expect(sent).toBeGreaterThanOrEqual(10_000);
    expect(crashed, 'workers that crashed').toEqual([]);
    expect(
      leaking,
      'workers whose memory keeps growing (RSS +50 MiB more during a 3,000-request soak)',
    ).toEqual([]);
    expect(
      counterexamples,
      'requests answered with an unexpected 5xx or not at all (minimal counterexamples)',
    ).toEqual([]);
  }, 330_000);
});
