import { describe, expect, it } from 'vitest';
import { httpFunction, MAX_JSON_DEPTH, route, unstorable } from './http.ts';
import { createLogger } from './log.ts';

/** A node:http ServerResponse stand-in: what `send` uses (statusCode, setHeader, end). */
function fakeRes() {
  const r = {
    statusCode: 0,
    headers: {} as Record<string, string>,
    body: '',
    setHeader(k: string, v: string) {
      r.headers[k.toLowerCase()] = v;
    },
    end(b?: string) {
      if (b !== undefined) r.body = b;
      return r;
    },
  };
  return r;
}

const fn = httpFunction({
  log: createLogger('test', 'silent'),
  health: async () => ({ pubsub: 'ok' }),
  routes: [route('GET', '/students/:id', async ({ params }) => ({ status: 200, body: params }))],
});
const call = async (method: string, url: string) => {
  const res = fakeRes();
  await fn({ method, url, headers: {} } as never, res as never);
  return {
    status: res.statusCode,
    body: res.body ? JSON.parse(res.body) : undefined,
    type: res.headers['content-type'],
  };
};

describe('httpFunction', () => {
  it.each(['//', '/\\\\', '//evil.example/x', '/%'])(
    'answers odd path %s with a 4xx problem, never a 5xx',
    async (url) => {
      const r = await call('GET', url);
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(r.type).toBe('application/problem+json; charset=utf-8');
    },
  );

  it('decodes path parameters and refuses bad percent-encoding by name', async () => {
    expect((await call('GET', '/students/a%40b')).body).toEqual({ id: 'a@b' });
    const bad = await call('GET', '/students/%E0%A4%A');
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].path).toBe('/params/id');
  });

  it('405 for a known path with another method, 404 for unknown paths, health on /healthz', async () => {
    expect((await call('POST', '/students/x')).status).toBe(405);
    expect((await call('GET', '/nope')).status).toBe(404);
    expect(await call('GET', '/healthz')).toMatchObject({ status: 200, body: { status: 'ok' } });
  });
});

describe('unstorable', () => {
  const nest = (n: number) => {
    let v: unknown = 1;
    for (let i = 0; i < n; i++) v = { a: v };
    return v;
  };
  it('accepts ordinary JSON', () => expect(unstorable({ a: [1, 'x', { b: null }] })).toBeUndefined());
  it('refuses nesting past the limit without recursion', () => {
    expect(unstorable(nest(MAX_JSON_DEPTH - 1))).toBeUndefined();
    expect(unstorable(nest(MAX_JSON_DEPTH + 1))?.message).toMatch(/deeper/);
    expect(unstorable(nest(100_000))?.message).toMatch(/deeper/);
  });
  it('names U+0000 in values and keys', () => {
    expect(unstorable({ payload: { quizId: 'a\u0000b' } })).toEqual({
      path: '/payload/quizId',
      message: 'must not contain U+0000',
    });
    expect(unstorable({ 'k\u0000': 1 })?.path).toBe('/k\u0000');
    expect(unstorable({ text: 'a\ud800b' })?.message).toMatch(/surrogate/);
    expect(unstorable({ text: 'emoji 🎓 ok' })).toBeUndefined();
  });
  it('names the place as a JSON Pointer: escaped keys, array indexes, the level past the limit', () => {
    expect(unstorable({ 'a/b': { 'm~n': ['ok', 'x\u0000'] } })).toEqual({
      path: '/a~1b/m~0n/1',
      message: 'must not contain U+0000',
    });
    expect(unstorable({ events: [{}, { ['k\udc00']: 1 }] })).toEqual({
      path: '/events/1/k\udc00',
      message: 'keys must be well-formed Unicode without U+0000',
    });
    expect(unstorable({ '🎓': 'a\udbff' })).toEqual({
      path: '/🎓',
      message: 'must be well-formed Unicode (no lone surrogates)',
    });
    expect(unstorable('\u0000')?.path).toBe('/');
    expect(unstorable(nest(MAX_JSON_DEPTH + 1))?.path).toBe(`/${Array(MAX_JSON_DEPTH).fill('a').join('/')}`);
  });
});
