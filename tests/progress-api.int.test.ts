import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TokenRequest } from '../emulators/identity.ts';
import { eventually, fnUrl, token } from './helpers.ts';

/**
 * progressApi through HTTP against the running suite. Data is produced the real way: interactions are
 * posted to ingestInteraction and reach PostgreSQL and Firestore through the Pub/Sub bridge and
 * updateProgress. Every test uses its own learners, since the suite is shared.
 */

const uid = () => randomUUID().replace(/-/g, '').slice(0, 12);
const DAY = '2025-03-10';
const at = (time: string, day = DAY) => `${day}T${time}Z`;

type Json = Record<string, any>;

async function get(path: string, tok?: string) {
  const res = await fetch(fnUrl('progressApi', path), {
    headers: tok ? { authorization: `Bearer ${tok}` } : {},
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : undefined) as Json };
}

const studentPath = (id: string, rest = '') => `/students/${encodeURIComponent(id)}${rest}`;

/** Posts interactions as the learner (or with the given token), one request each, in order. */
async function send(studentId: string, instanceId: string, events: Json[], as?: string) {
  const tok = as ?? (await token({ sub: studentId, role: 'student', instance: instanceId }));
  for (const e of events) {
    const res = await fetch(fnUrl('ingestInteraction'), {
      method: 'POST',
      headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
      body: JSON.stringify({ studentId, instanceId, topic: 'general', ...e }),
    });
    expect(res.status, await res.clone().text()).toBe(202);
  }
}

/** Waits until the history holds `n` interactions and the Firestore view counts `n` across topics. */
async function settled(studentId: string, n: number) {
  const platform = await token({ sub: 'platform-svc', role: 'platform' });
  await eventually(
    async () => {
      const h = await get(studentPath(studentId, '/history?limit=500'), platform);
      if (h.status !== 200 || h.body.items.length < n) return undefined;
      const p = await get(studentPath(studentId), platform);
      const counted = (p.body.topics ?? []).reduce((s: number, t: Json) => s + t.interactions, 0);
      return counted >= n ? true : undefined;
    },
    30_000,
    `${n} interactions of ${studentId} to be applied`,
  );
}

describe('progressApi', () => {
  it('answers /healthz with firestore and postgres', async () => {
    // a cold worker on a loaded machine may report a dependency down for its first probe: poll with a deadline
    const res = await eventually(
      async () => {
        const r = await get('/healthz');
        return r.status === 200 ? r : undefined;
      },
      30_000,
      'progressApi to be healthy',
    );
    expect(res.body.dependencies).toEqual({ firestore: 'ok', postgres: 'ok' });
  });

  describe('mastery and authorization', () => {
    // an id that needs percent-encoding in the path
    const studentId = `stu:${uid()}@school`;
    const instance = `inst-${uid()}`;
    const tokens: Record<string, string> = {};

    beforeAll(async () => {
      await send(studentId, instance, [
        {
          kind: 'exercise_attempt',
          occurredAt: at('09:00:00'),
          topic: 'python.loops',
          payload: { exerciseId: 'ex-a', passed: true },
        },
        {
          kind: 'exercise_attempt',
          occurredAt: at('09:05:00'),
          topic: 'python.loops',
          payload: { exerciseId: 'ex-b', passed: false },
        },
        {
          kind: 'quiz_answer',
          occurredAt: at('09:10:00'),
          topic: 'python.loops',
          payload: { quizId: 'q1', correct: true, score: 0.8 },
        },
        {
          kind: 'quiz_answer',
          occurredAt: at('09:15:00'),
          topic: 'python.loops',
          payload: { quizId: 'q2', correct: false, score: 0.4 },
        },
        {
          kind: 'code_submission',
          occurredAt: at('09:20:00'),
          topic: 'python.loops',
          payload: { codeQuality: 0.9 },
        },
        { kind: 'session', occurredAt: at('09:25:00'), topic: 'general', payload: { action: 'end' } },
      ]);
      const mint = async (name: string, req: TokenRequest) => {
        tokens[name] = await token(req);
      };
      await Promise.all([
        mint('self', { sub: studentId, role: 'student' }),
        mint('otherStudent', { sub: `stu-${uid()}`, role: 'student' }),
        mint('app', { sub: `app-${uid()}`, role: 'app', instance }),
        mint('otherApp', { sub: `app-${uid()}`, role: 'app', instance: `inst-${uid()}` }),
        mint('teacher', { sub: `teacher-${uid()}`, role: 'teacher', instance }),
        mint('otherTeacher', { sub: `teacher-${uid()}`, role: 'teacher', instance: `inst-${uid()}` }),
        mint('platform', { sub: 'platform-svc', role: 'platform' }),
        mint('partner', { sub: 'partner-acme', role: 'partner', partner: 'acme' }),
        mint('noPermission', { sub: studentId, role: 'student', permissions: ['interaction:write'] }),
      ]);
      await settled(studentId, 6);
    });

    it('reports mastery per topic from the Firestore view', async () => {
      // python.loops, all on one day:
      //   exercise    = passed distinct / attempted distinct = 1 (ex-a) / 2 (ex-a, ex-b) = 0.5
      //   quiz        = mean(0.8, 0.4)                                             = 0.6
      //   quality     = mean(0.9)                                                  = 0.9
      //   consistency = min(1, streak 1 day / 7)                                   = 0.142857…
      //   mastery     = 100 × (0.4·0.5 + 0.3·0.6 + 0.2·0.9 + 0.1·0.142857)
      //               = 100 × (0.2 + 0.18 + 0.18 + 0.0142857) = 57.42857… → 57.4 → "learning" (40 < 57.4 ≤ 70)
      // general: one session, only consistency = 1/7 → 100 × 0.1 × 0.142857 = 1.428… → 1.4 → "beginner"
      const res = await get(studentPath(studentId), tokens.self);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('application/json');
      expect(res.body.studentId).toBe(studentId);
      expect(res.body.topics.map((t: Json) => t.topic)).toEqual(['general', 'python.loops']);
      const [general, loops] = res.body.topics;
      expect(loops).toMatchObject({
        topic: 'python.loops',
        mastery: 57.4,
        level: 'learning',
        interactions: 5,
      });
      expect(loops.components.exercise).toBeCloseTo(0.5, 10);
      expect(loops.components.quiz).toBeCloseTo(0.6, 10);
      expect(loops.components.quality).toBeCloseTo(0.9, 10);
      expect(loops.components.consistency).toBeCloseTo(1 / 7, 10);
      expect(Object.keys(loops.components).sort()).toEqual(['consistency', 'exercise', 'quality', 'quiz']);
      expect(Number.isNaN(Date.parse(loops.updatedAt))).toBe(false);
      expect(general).toMatchObject({ topic: 'general', mastery: 1.4, level: 'beginner', interactions: 1 });
    });

    it('records mastery after each interaction in the history', async () => {
      const res = await get(studentPath(studentId, '/history'), tokens.self);
      expect(res.status).toBe(200);
      expect(res.body.nextCursor).toBeUndefined();
      const loops = res.body.items.filter((i: Json) => i.topic === 'python.loops');
      // after ex-a pass: 100·(0.4·1 + 0.1/7) = 41.4; ex-b fail: 100·(0.4·0.5 + 0.1/7) = 21.4;
      // quiz 0.8: +0.3·0.8 → 45.4; quiz 0.4: 0.3·0.6 → 39.4; quality 0.9: +0.2·0.9 → 57.4
      expect(loops.map((i: Json) => i.masteryAfter)).toEqual([41.4, 21.4, 45.4, 39.4, 57.4]);
      expect(loops[2]).toMatchObject({
        kind: 'quiz_answer',
        occurredAt: '2025-03-10T09:10:00.000Z',
        payload: { quizId: 'q1', correct: true, score: 0.8 },
        artifacts: [],
      });
      expect(loops[2].sponsor).toBeUndefined();
      expect(typeof loops[2].id).toBe('string');
    });

    it.each([
      ['the student themself', 'self', 200],
      ['another student', 'otherStudent', 403],
      ['an app of the learner’s instance', 'app', 200],
      ['an app of another instance', 'otherApp', 404],
      ['a teacher of the learner’s instance', 'teacher', 200],
      ['a teacher of another instance', 'otherTeacher', 404],
      ['the platform', 'platform', 200],
      ['a partner', 'partner', 403],
      ['a token without progress:read', 'noPermission', 403],
    ])('%s (%s token) → %i on every route', async (_who, name, expected) => {
      for (const rest of ['', '/history', '/alerts']) {
        const res = await get(studentPath(studentId, rest), tokens[name]);
        expect(res.status, `${name} ${rest}`).toBe(expected);
        if (expected >= 400) expect(res.headers.get('content-type')).toContain('application/problem+json');
      }
    });

    it('no token or a bad one → 401 with WWW-Authenticate', async () => {
      for (const tok of [undefined, 'not.a.jwt']) {
        const res = await get(studentPath(studentId), tok);
        expect(res.status).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token"/);
        expect(res.body).toMatchObject({ status: 401, title: 'Unauthorized' });
      }
    });

    it('an unknown learner is 404, and looks exactly like a learner of another instance', async () => {
      const unknown = await get(studentPath(`nobody-${uid()}`), tokens.platform);
      expect(unknown.status).toBe(404);
      const unknownForApp = await get(studentPath(`nobody-${uid()}`, '/history'), tokens.otherApp);
      const otherInstance = await get(studentPath(studentId, '/history'), tokens.otherApp);
      expect(unknownForApp.status).toBe(404);
      expect(otherInstance.body).toEqual(unknownForApp.body);
    });

    it('an invalid student id in the path → 400', async () => {
      for (const bad of [encodeURIComponent('a b'), encodeURIComponent('a/b'), 'x'.repeat(129)]) {
        const res = await get(`/students/${bad}`, tokens.platform);
        expect(res.status, bad).toBe(400);
        expect(res.body.errors).toEqual([expect.objectContaining({ path: '/params/id' })]);
      }
      // a malformed percent-escape is refused by Express before the function runs; still a 400, never a 5xx
      const malformed = await get('/students/%E0%A4%A', tokens.platform);
      expect(malformed.status).toBe(400);
      expect(malformed.headers.get('content-type')).toContain('application/problem+json');
    });

    it.each([
      ['limit=0', '/query/limit'],
      ['limit=501', '/query/limit'],
      ['limit=ten', '/query/limit'],
      ['cursor=not-a-cursor', '/query/cursor'],
      [`cursor=${Buffer.from('{"a":1}').toString('base64url')}`, '/query/cursor'],
      ['from=yesterday', '/query/from'],
      ['to=2025-03-10', '/query/to'],
      ['from=2025-03-11T00:00:00Z&to=2025-03-10T00:00:00Z', '/query/to'],
      ['limt=5', '/query/limt'],
      // dates that parse but do not exist reached PostgreSQL and came back 500 (issue 11 #4)
      ['from=2026-02-30T00:00:00Z', '/query/from'],
      ['to=2026-04-31T00:00:00Z', '/query/to'],
      ['from=0000-01-01T00:00:00Z', '/query/from'],
      [
        `cursor=${Buffer.from('["0000-01-01T00:00:00.000000Z","e1"]').toString('base64url')}`,
        '/query/cursor',
      ],
    ])('history?%s → 400 naming %s', async (query, path) => {
      const res = await get(studentPath(studentId, `/history?${query}`), tokens.self);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.body).toMatchObject({ status: 400, title: 'Bad Request' });
      expect(res.body.errors.map((e: Json) => e.path)).toContain(path);
    });

    it('lists every bad query parameter at once', async () => {
      const res = await get(studentPath(studentId, '/history?limit=-1&from=x&cursor=%%%'), tokens.self);
      expect(res.status).toBe(400);
      expect(res.body.errors.map((e: Json) => e.path).sort()).toEqual([
        '/query/cursor',
        '/query/from',
        '/query/limit',
      ]);
    });
  });

  describe('history', () => {
    const studentId = `stu-${uid()}`;
    const instance = `inst-${uid()}`;
    const p = uid();
    // 2a and 2b share a timestamp: the order between them is the event id, across a page boundary
    const expected = [`${p}-1`, `${p}-2a`, `${p}-2b`, `${p}-4`, `${p}-5`];
    let tok: string;

    beforeAll(async () => {
      const view = (id: string, time: string) => ({
        id,
        kind: 'content_view',
        occurredAt: at(time),
        payload: { contentId: 'lesson-1', durationMs: 1000 },
      });
      // sent out of order on purpose: the history is ordered by occurrence, not by arrival
      await send(studentId, instance, [
        view(`${p}-4`, '09:02:00'),
        view(`${p}-1`, '09:00:00'),
        view(`${p}-2b`, '09:01:00'),
        view(`${p}-5`, '09:03:00'),
        view(`${p}-2a`, '09:01:00'),
      ]);
      tok = await token({ sub: studentId, role: 'student' });
      await settled(studentId, 5);
    });

    it('pages with limit=2 over 5 interactions in 3 pages, in order, without gaps or duplicates', async () => {
      const pages: string[][] = [];
      let cursor: string | undefined;
      do {
        const q = new URLSearchParams({ limit: '2', ...(cursor ? { cursor } : {}) });
        const res = await get(studentPath(studentId, `/history?${q}`), tok);
        expect(res.status).toBe(200);
        pages.push(res.body.items.map((i: Json) => i.id));
        cursor = res.body.nextCursor;
        if (cursor) expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(pages.length).toBeLessThanOrEqual(3);
      } while (cursor);
      expect(pages).toEqual([expected.slice(0, 2), expected.slice(2, 4), expected.slice(4)]);
    });

    it('defaults to 50 and ends without a nextCursor', async () => {
      const res = await get(studentPath(studentId, '/history'), tok);
      expect(res.body.items.map((i: Json) => i.id)).toEqual(expected);
      expect(res.body.items.map((i: Json) => i.occurredAt)).toEqual(
        ['09:00:00', '09:01:00', '09:01:00', '09:02:00', '09:03:00'].map((t) => `${DAY}T${t}.000Z`),
      );
      expect(res.body).not.toHaveProperty('nextCursor');
    });

    it('filters by from (inclusive) and to (exclusive), offsets allowed', async () => {
      const ids = async (query: Record<string, string>) => {
        const res = await get(studentPath(studentId, `/history?${new URLSearchParams(query)}`), tok);
        expect(res.status).toBe(200);
        return res.body.items.map((i: Json) => i.id);
      };
      expect(await ids({ from: at('09:01:00'), to: at('09:02:00') })).toEqual(expected.slice(1, 3));
      expect(await ids({ from: `${DAY}T11:02:00+02:00` })).toEqual(expected.slice(3));
      expect(await ids({ to: at('09:01:00') })).toEqual(expected.slice(0, 1));
      expect(await ids({ from: at('10:00:00') })).toEqual([]);
      // filters and paging together
      const first = await get(
        studentPath(studentId, `/history?${new URLSearchParams({ from: at('09:01:00'), limit: '2' })}`),
        tok,
      );
      expect(first.body.items.map((i: Json) => i.id)).toEqual(expected.slice(1, 3));
      const q = new URLSearchParams({ from: at('09:01:00'), limit: '2', cursor: first.body.nextCursor });
      const second = await get(studentPath(studentId, `/history?${q}`), tok);
      expect(second.body.items.map((i: Json) => i.id)).toEqual(expected.slice(3));
      expect(second.body.nextCursor).toBeUndefined();
    });
  });

  it('pages exactly across timestamps that differ by microseconds', async () => {
    const studentId = `stu-${uid()}`;
    const p = uid();
    const times = ['09:00:00.000003', '09:00:00.000001', '09:00:00.000002'];
    await send(
      studentId,
      `inst-${uid()}`,
      times.map((t, n) => ({
        id: `${p}-${n}`,
        kind: 'session',
        occurredAt: at(t),
        payload: { action: 'start' },
      })),
    );
    await settled(studentId, 3);
    const tok = await token({ sub: studentId, role: 'student' });
    const seen: Json[] = [];
    let cursor: string | undefined;
    do {
      const q = new URLSearchParams({ limit: '1', ...(cursor ? { cursor } : {}) });
      const res = await get(studentPath(studentId, `/history?${q}`), tok);
      seen.push(...res.body.items);
      cursor = res.body.nextCursor;
    } while (cursor && seen.length < 10);
    expect(seen.map((i) => i.occurredAt)).toEqual(
      ['09:00:00.000001', '09:00:00.000002', '09:00:00.000003'].map((t) => `${DAY}T${t}Z`),
    );
    expect(seen.map((i) => i.id)).toEqual([`${p}-1`, `${p}-2`, `${p}-0`]);
  });

  describe('alerts', () => {
    const studentId = `stu-${uid()}`;
    const instance = `inst-${uid()}`;
    const p = uid();

    beforeAll(async () => {
      const quiz = (id: string, occurredAt: string, score: number) => ({
        id,
        kind: 'quiz_answer',
        topic: 'python.functions',
        occurredAt,
        payload: { quizId: `quiz-${id}`, correct: false, score },
      });
      await send(studentId, instance, [
        quiz(`${p}-a`, at('09:00:00'), 0.3),
        quiz(`${p}-b`, at('09:30:00'), 0.2), // same learner, topic, reason and day: no second alert
        quiz(`${p}-c`, at('08:00:00', '2025-03-11'), 0.1), // the next day: a new alert
        quiz(`${p}-d`, at('09:00:00', '2025-03-11'), 0.9), // a good score raises nothing
      ]);
      await settled(studentId, 4);
    });

    it('raises low_quiz_score at most once per day, newest first', async () => {
      const res = await get(
        studentPath(studentId, '/alerts'),
        await token({ sub: studentId, role: 'student' }),
      );
      expect(res.status).toBe(200);
      expect(res.body.alerts).toEqual([
        {
          topic: 'python.functions',
          reason: 'low_quiz_score',
          day: '2025-03-11',
          detail: expect.stringContaining('0.1'),
          detectedAt: expect.any(String),
          interactionId: `${p}-c`,
        },
        {
          topic: 'python.functions',
          reason: 'low_quiz_score',
          day: '2025-03-10',
          detail: expect.stringContaining('0.3'),
          detectedAt: expect.any(String),
          interactionId: `${p}-a`,
        },
      ]);
      for (const a of res.body.alerts) expect(Number.isNaN(Date.parse(a.detectedAt))).toBe(false);
    });

    it('is readable by a teacher of the instance, not by one of another', async () => {
      const teacher = await token({ sub: `t-${uid()}`, role: 'teacher', instance });
      const stranger = await token({ sub: `t-${uid()}`, role: 'teacher', instance: `inst-${uid()}` });
      expect((await get(studentPath(studentId, '/alerts'), teacher)).body.alerts).toHaveLength(2);
      expect((await get(studentPath(studentId, '/alerts'), stranger)).status).toBe(404);
    });
  });

  describe('readers of an instance (issue 11 #2: one post must not open another instance’s data)', () => {
    const studentId = `stu-${uid()}`;
    const home = `inst-${uid()}`;
    const intruder = `inst-${uid()}`;
    const p = uid();
    const tokens: Record<string, string> = {};

    beforeAll(async () => {
      // the learner's own instance: a poor quiz (an alert) and free text
      await send(studentId, home, [
        {
          id: `${p}-h1`,
          kind: 'quiz_answer',
          occurredAt: at('09:00:00'),
          payload: { quizId: 'q-home', correct: false, score: 0.2 },
        },
        {
          id: `${p}-h2`,
          kind: 'help_request',
          occurredAt: at('09:01:00'),
          payload: { text: 'I am stuck: private words only the home instance may read' },
        },
      ]);
      // another instance's app posts one event for the same learner
      const intruderApp = await token({ sub: `app-${uid()}`, role: 'app', instance: intruder });
      await send(
        studentId,
        intruder,
        [
          {
            id: `${p}-x1`,
            kind: 'quiz_answer',
            occurredAt: at('09:02:00'),
            payload: { quizId: 'q-x', correct: true, score: 1 },
          },
        ],
        intruderApp,
      );
      tokens.intruderApp = intruderApp;
      tokens.intruderTeacher = await token({ sub: `t-${uid()}`, role: 'teacher', instance: intruder });
      tokens.homeTeacher = await token({ sub: `t-${uid()}`, role: 'teacher', instance: home });
      await settled(studentId, 3);
    });

    it.each(['intruderApp', 'intruderTeacher'])('%s: history holds only its own post', async (who) => {
      const h = await get(studentPath(studentId, '/history'), tokens[who]);
      expect(h.status).toBe(200);
      expect(h.body.items.map((i: Json) => i.id)).toEqual([`${p}-x1`]);
      expect(JSON.stringify(h.body)).not.toContain('private words');
    });

    it.each(['intruderApp', 'intruderTeacher'])('%s: mastery from its own post alone', async (who) => {
      const res = await get(studentPath(studentId), tokens[who]);
      expect(res.status).toBe(200);
      // one perfect quiz on one day: 100 × (0.3 × 1 + 0.1 × 1/7) = 31.4 (room-wide the quiz mean is 0.6)
      expect(res.body.topics).toEqual([
        expect.objectContaining({
          topic: 'general',
          mastery: 31.4,
          components: { exercise: 0, quiz: 1, quality: 0, consistency: 1 / 7 },
          interactions: 1,
        }),
      ]);
    });

    it.each(['intruderApp', 'intruderTeacher'])('%s: no alert raised by the home instance', async (who) => {
      const res = await get(studentPath(studentId, '/alerts'), tokens[who]);
      expect(res.status).toBe(200);
      expect(res.body.alerts).toEqual([]);
    });

    it('the home instance still sees its own history, mastery and alert, not the intruder’s post', async () => {
      const h = await get(studentPath(studentId, '/history'), tokens.homeTeacher);
      expect(h.body.items.map((i: Json) => i.id)).toEqual([`${p}-h1`, `${p}-h2`]);
      const a = await get(studentPath(studentId, '/alerts'), tokens.homeTeacher);
      expect(a.body.alerts.map((x: Json) => [x.reason, x.interactionId])).toEqual([
        ['stuck', `${p}-h2`],
        ['low_quiz_score', `${p}-h1`],
      ]);
      const m = await get(studentPath(studentId), tokens.homeTeacher);
      expect(m.body.topics[0]).toMatchObject({ interactions: 2, components: { quiz: 0.2 } });
    });
  });
});
