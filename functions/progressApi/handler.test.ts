import type { Request } from '@google-cloud/functions-framework';
import { describe, expect, it } from 'vitest';
import type { Principal, Verifier } from '../../shared/auth.ts';
import { HttpError, unauthorized } from '../../shared/errors.ts';
import type { RouteContext } from '../../shared/http.ts';
import { createLogger } from '../../shared/log.ts';
import {
  createProgressApi,
  decodeCursor,
  encodeCursor,
  type HistoryItem,
  type ProgressReader,
  parseHistoryQuery,
  StoreUnavailable,
} from './handler.ts';

const exp = Math.floor(Date.now() / 1000) + 3600;
const principals: Record<string, Principal> = {
  student: { sub: 'stu-1', role: 'student', permissions: ['progress:read'], exp },
  other: { sub: 'stu-2', role: 'student', permissions: ['progress:read'], exp },
  app: { sub: 'app-a', role: 'app', instance: 'inst-a', permissions: ['progress:read'], exp },
  appB: { sub: 'app-b', role: 'app', instance: 'inst-b', permissions: ['progress:read'], exp },
  appNoInstance: { sub: 'app-x', role: 'app', permissions: ['progress:read'], exp },
  teacher: { sub: 't-1', role: 'teacher', instance: 'inst-a', permissions: ['progress:read'], exp },
  platform: { sub: 'svc', role: 'platform', permissions: ['progress:read'], exp },
  partner: { sub: 'p', role: 'partner', partner: 'acme', permissions: ['progress:read'], exp },
  noPermission: { sub: 'stu-1', role: 'student', permissions: ['interaction:write'], exp },
};
const verifier: Verifier = {
  async verify(h) {
    const p = principals[(h ?? '').replace(/^Bearer /, '')];
    if (!p) throw unauthorized('invalid token');
    return p;
  },
};

const items: HistoryItem[] = [1, 2, 3, 4, 5].map((n) => ({
  id: `e${n}`,
  kind: 'quiz_answer',
  topic: 'general',
  occurredAt: `2025-03-10T09:00:0${n}.000Z`,
  payload: { quizId: 'q', correct: true, score: 1 },
  artifacts: [],
  masteryAfter: n,
  position: { occurredAt: `2025-03-10T09:00:0${n}.000000Z`, eventId: `e${n}` },
}));

function reader(overrides: Partial<ProgressReader> = {}): ProgressReader {
  return {
    async topics() {
      return [];
    },
    async presence(id, instance) {
      return { known: id === 'stu-1', heldBy: id === 'stu-1' && instance === 'inst-a' };
    },
    async history(_id, q) {
      return items.filter((i) => !q.after || i.position.occurredAt > q.after.occurredAt).slice(0, q.limit);
    },
    async alerts() {
      return [];
    },
    ...overrides,
  };
}

const api = (r = reader()) => createProgressApi({ verifier, reader: r, log: createLogger('test', 'silent') });
const ctx = (who: string | undefined, id: string, query = ''): RouteContext => ({
  req: { headers: who ? { authorization: `Bearer ${who}` } : {} } as Request,
  params: { id },
  query: new URLSearchParams(query),
});
const status = async (p: Promise<{ status: number }>) => {
  try {
    return (await p).status;
  } catch (err) {
    if (err instanceof HttpError) return err.status;
    throw err;
  }
};

describe('authorization', () => {
  it.each([
    ['student', 'stu-1', 200],
    ['other', 'stu-1', 403],
    ['app', 'stu-1', 200],
    ['appB', 'stu-1', 404],
    ['appNoInstance', 'stu-1', 404],
    ['teacher', 'stu-1', 200],
    ['platform', 'stu-1', 200],
    ['partner', 'stu-1', 403],
    ['noPermission', 'stu-1', 403],
    [undefined, 'stu-1', 401],
    ['platform', 'nobody', 404],
    ['app', 'nobody', 404],
    ['platform', 'a/b', 400],
    ['platform', '', 400],
    ['platform', 'x'.repeat(129), 400],
  ])('%s reading %s → %i', async (who, id, expected) => {
    const a = api();
    for (const route of [a.progress, a.history, a.alerts]) {
      expect(await status(route(ctx(who, id)))).toBe(expected);
    }
  });

  it('answers an unknown learner and a learner of another instance alike', async () => {
    const a = api();
    const err = async (p: Promise<unknown>) => ((await p.catch((e) => e)) as HttpError).toProblem();
    expect(await err(a.progress(ctx('appB', 'stu-1')))).toEqual(
      await err(a.progress(ctx('platform', 'nobody'))),
    );
  });

  it('a store outage is a 503 with Retry-After, not a 500', async () => {
    const a = api(
      reader({
        presence: async () => {
          throw new StoreUnavailable('down');
        },
      }),
    );
    const err = (await a.alerts(ctx('platform', 'stu-1')).catch((e) => e)) as HttpError;
    expect(err.status).toBe(503);
    expect(err.extra.headers?.['Retry-After']).toBeDefined();
  });
});

describe('history query', () => {
  it('defaults the limit to 50', () => {
    expect(parseHistoryQuery(new URLSearchParams())).toEqual({ limit: 50 });
  });

  it.each([
    ['limit=0', '/query/limit'],
    ['limit=501', '/query/limit'],
    ['limit=abc', '/query/limit'],
    ['limit=1.5', '/query/limit'],
    ['limit=', '/query/limit'],
    ['from=yesterday', '/query/from'],
    ['to=2025-03-10', '/query/to'],
    ['from=2025-03-11T00:00:00Z&to=2025-03-10T00:00:00Z', '/query/to'],
    ['cursor=nope!', '/query/cursor'],
    [`cursor=${Buffer.from('[1,2]').toString('base64url')}`, '/query/cursor'],
    ['limt=10', '/query/limt'],
    ['limit=1&limit=2', '/query/limit'],
    // real calendar dates only (issue 11 #4: these reached PostgreSQL and came back as 500 / 22008)
    ['from=2026-02-30T00:00:00Z', '/query/from'],
    ['to=2026-04-31T00:00:00Z', '/query/to'],
    ['from=0000-01-01T00:00:00Z', '/query/from'],
    ['from=1999-12-31T23:59:59Z', '/query/from'],
    ['to=2026-01-01T24:00:00Z', '/query/to'],
    ['to=2026-13-01T00:00:00Z', '/query/to'],
    ['to=2026-01-01T00:00:00%2B15:00', '/query/to'],
    [`cursor=${Buffer.from('["0000-01-01T00:00:00.000000Z","e1"]').toString('base64url')}`, '/query/cursor'],
    [`cursor=${Buffer.from('["2026-02-30T00:00:00.000000Z","e1"]').toString('base64url')}`, '/query/cursor'],
  ])('%s → 400 naming %s', (query, path) => {
    const err = (() => {
      try {
        parseHistoryQuery(new URLSearchParams(query));
      } catch (e) {
        return e as HttpError;
      }
    })();
    expect(err?.status).toBe(400);
    expect(err?.extra.errors?.map((e) => e.path)).toContain(path);
  });

  it('names every bad parameter at once', () => {
    try {
      parseHistoryQuery(new URLSearchParams('limit=0&from=x&cursor=y'));
      expect.unreachable();
    } catch (e) {
      expect((e as HttpError).extra.errors?.map((x) => x.path).sort()).toEqual([
        '/query/cursor',
        '/query/from',
        '/query/limit',
      ]);
    }
  });

  it('accepts RFC 3339 bounds with offsets and fractions', () => {
    expect(
      parseHistoryQuery(
        new URLSearchParams('from=2025-03-10T09:00:00.123456%2B02:00&to=2025-03-11T00:00:00Z'),
      ),
    ).toEqual({
      limit: 50,
      from: '2025-03-10T09:00:00.123456+02:00',
      to: '2025-03-11T00:00:00Z',
    });
  });

  it('accepts 29 February in a leap year only', () => {
    expect(parseHistoryQuery(new URLSearchParams('from=2028-02-29T00:00:00Z')).from).toBe(
      '2028-02-29T00:00:00Z',
    );
    expect(() => parseHistoryQuery(new URLSearchParams('from=2026-02-29T00:00:00Z'))).toThrow(HttpError);
  });

  it('round-trips a cursor, microseconds included', () => {
    const p = { occurredAt: '2025-03-10T09:00:01.123456Z', eventId: '0195-abc_D' };
    expect(decodeCursor(encodeCursor(p))).toEqual(p);
  });
});

describe('history paging', () => {
  it('pages with nextCursor until the end, without gaps or duplicates', async () => {
    const a = api();
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const reply = await a.history(ctx('student', 'stu-1', `limit=2${cursor ? `&cursor=${cursor}` : ''}`));
      const body = reply.body as { items: Array<{ id: string; position?: unknown }>; nextCursor?: string };
      expect(body.items.every((i) => i.position === undefined)).toBe(true);
      seen.push(...body.items.map((i) => i.id));
      cursor = body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(['e1', 'e2', 'e3', 'e4', 'e5']);
  });
});
