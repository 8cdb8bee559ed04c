import type { Request } from '@google-cloud/functions-framework';
import { describe, expect, it } from 'vitest';
import type { Principal, Verifier } from '../../shared/auth.ts';
import { HttpError, unauthorized } from '../../shared/errors.ts';
import type { RouteContext } from '../../shared/http.ts';
import { createLogger } from '../../shared/log.ts';
import {
  type Alert,
  createProgressApi,
  decodeCursor,
  encodeCursor,
  type HistoryItem,
  type ProgressReader,
  parseHistoryQuery,
  StoreUnavailable,
  type TopicProgress,
} from './handler.ts';
import type { LedgerEntry } from './instance-view.ts';

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
    async entries() {
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

describe('readers of an instance see only what came through it (issue 11 #2)', () => {
  // stu-1 is held by inst-a through one perfect quiz; inst-b posted a poor quiz and a help request
  const rows: Array<LedgerEntry & { instance: string; artifacts: string[]; masteryAfter: number }> = [
    {
      instance: 'inst-a',
      id: 'a1',
      kind: 'quiz_answer',
      topic: 'general',
      payload: { quizId: 'qa', correct: true, score: 1 },
    },
    {
      instance: 'inst-b',
      id: 'b1',
      kind: 'quiz_answer',
      topic: 'general',
      payload: { quizId: 'qb', correct: false, score: 0.2 },
    },
    {
      instance: 'inst-b',
      id: 'b2',
      kind: 'help_request',
      topic: 'python',
      payload: { text: 'I am stuck, Bob' },
    },
  ].map((r, n) => ({
    ...r,
    kind: r.kind as LedgerEntry['kind'],
    occurredAt: `2025-03-10T09:00:0${n}.000Z`,
    appliedAt: `2025-03-10T09:00:1${n}.000Z`,
    artifacts: [],
    masteryAfter: 0,
  }));
  const roomWide: TopicProgress = {
    topic: 'general',
    mastery: 18,
    level: 'beginner',
    components: { exercise: 0, quiz: 0.6, quality: 0, consistency: 0 },
    interactions: 2,
    updatedAt: '2025-03-10T09:00:11.000Z',
  };
  const roomAlerts: Alert[] = [
    {
      topic: 'general',
      reason: 'low_quiz_score',
      day: '2025-03-10',
      detail: 'quiz qb: score 0.2 < 0.5',
      detectedAt: '2025-03-10T09:00:11.000Z',
      interactionId: 'b1',
    },
  ];
  const twoInstances = reader({
    async topics() {
      return [roomWide];
    },
    async alerts() {
      return roomAlerts;
    },
    async presence(id, instance) {
      return { known: id === 'stu-1', heldBy: rows.some((r) => r.instance === instance) };
    },
    async history(_id, q) {
      return rows
        .filter((r) => !q.instance || r.instance === q.instance)
        .map((r) => ({ ...r, position: { occurredAt: r.occurredAt, eventId: r.id } }));
    },
    async entries(_id, instance) {
      return rows.filter((r) => r.instance === instance);
    },
  });
  const body = async (p: Promise<{ body?: unknown }>) => (await p).body as Record<string, any>;

  it.each(['app', 'teacher'])('%s of inst-a: history rows of inst-a only', async (who) => {
    const h = await body(api(twoInstances).history(ctx(who, 'stu-1')));
    expect(h.items.map((i: HistoryItem) => i.id)).toEqual(['a1']);
  });

  it.each(['app', 'teacher'])('%s of inst-a: mastery from inst-a’s interactions alone', async (who) => {
    const p = await body(api(twoInstances).progress(ctx(who, 'stu-1')));
    // quiz = 1 (not the room-wide 0.6), consistency = 1 day / 7
    expect(p.topics).toEqual([
      {
        topic: 'general',
        mastery: 31.4,
        level: 'beginner',
        components: { exercise: 0, quiz: 1, quality: 0, consistency: 1 / 7 },
        interactions: 1,
        updatedAt: '2025-03-10T09:00:10.000Z',
      },
    ]);
  });

  it.each(['app', 'teacher'])('%s of inst-a: no alert raised by what inst-b posted', async (who) => {
    expect((await body(api(twoInstances).alerts(ctx(who, 'stu-1')))).alerts).toEqual([]);
  });

  it('the app of inst-b sees its own alerts, computed from its own interactions', async () => {
    const alerts = (await body(api(twoInstances).alerts(ctx('appB', 'stu-1')))).alerts as Alert[];
    expect(alerts.map((a) => [a.topic, a.reason, a.interactionId])).toEqual([
      ['python', 'stuck', 'b2'],
      ['general', 'low_quiz_score', 'b1'],
    ]);
  });

  it.each(['student', 'platform'])('%s reads the room-wide figures', async (who) => {
    const a = api(twoInstances);
    expect((await body(a.progress(ctx(who, 'stu-1')))).topics).toEqual([roomWide]);
    expect((await body(a.alerts(ctx(who, 'stu-1')))).alerts).toEqual(roomAlerts);
    expect((await body(a.history(ctx(who, 'stu-1')))).items).toHaveLength(3);
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
