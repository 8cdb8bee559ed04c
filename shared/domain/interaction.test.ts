import { describe, expect, it } from 'vitest';
import { interactionSchema, payloadTooLarge, validateBatch } from './interaction.ts';

const now = new Date('2025-03-10T12:00:00Z');
let seq = 0;
const opts = { now, newId: () => `gen-${++seq}` };

const base = {
  studentId: 'stu-1',
  instanceId: 'app.berlin:1',
  occurredAt: '2025-03-10T11:59:00Z',
};

const ok = (body: unknown) => {
  const r = validateBatch(body, opts);
  if (!r.ok) throw new Error(`expected ok, got ${JSON.stringify(r.errors)}`);
  return r;
};
const bad = (body: unknown, o: Partial<typeof opts> & { maxBatch?: number } = {}) => {
  const r = validateBatch(body, { ...opts, ...o });
  if (r.ok) throw new Error('expected errors');
  return r;
};
const paths = (body: unknown) => bad(body).errors.map((e) => e.path);

const validPayloads: Array<[string, Record<string, unknown>]> = [
  ['exercise_attempt', { exerciseId: 'ex1', passed: true, score: 0.5 }],
  ['exercise_attempt', { exerciseId: 'ex1', passed: false }],
  ['quiz_answer', { quizId: 'q1', questionId: 'a', correct: false, score: 0 }],
  ['code_submission', {}],
  ['code_submission', { exerciseId: 'ex1', code: 'print(1)', codeQuality: 1 }],
  ['code_execution', { ok: false, errorType: 'TypeError', errorMessage: 'boom' }],
  ['code_execution', { ok: true }],
  ['dialogue_turn', { text: 'hallo', role: 'student' }],
  ['dialogue_turn', { text: 'hi', role: 'tutor' }],
  ['help_request', { text: 'Ich komme nicht weiter' }],
  ['reflection', { text: 'learned loops' }],
  ['vuca_progress', { dimension: 'ambiguity', value: 0.3 }],
  ['content_view', { contentId: 'c1', durationMs: 0 }],
  ['session', { action: 'end' }],
];

describe('validateBatch: valid single interactions', () => {
  it.each(validPayloads)('accepts %s %j', (kind, payload) => {
    const r = ok({ ...base, kind, payload });
    expect(r.isBatch).toBe(false);
    expect(r.events).toHaveLength(1);
    expect(r.events[0]).toMatchObject({ kind, payload, topic: 'general' });
  });

  it('keeps a client id, fills a missing one, defaults the topic and keeps optional fields', () => {
    const r = ok({
      ...base,
      id: 'client_id-1',
      kind: 'session',
      payload: { action: 'start' },
      topic: 'python.loops',
      sponsor: 'acme-edu',
      artifacts: ['lfs://abc_DEF-1'],
      occurredAt: '2025-03-10T13:04:59+01:00',
    });
    expect(r.events[0]).toEqual({
      ...base,
      id: 'client_id-1',
      kind: 'session',
      payload: { action: 'start' },
      topic: 'python.loops',
      sponsor: 'acme-edu',
      artifacts: ['lfs://abc_DEF-1'],
      occurredAt: '2025-03-10T13:04:59+01:00',
    });
    const generated = ok({ ...base, kind: 'session', payload: { action: 'start' } });
    expect(generated.events[0]?.id).toMatch(/^gen-\d+$/);
  });

  it('accepts occurredAt from 2000-01-01T00:00:00Z on, with offsets from -12:00 to +14:00', () => {
    for (const occurredAt of [
      '2000-01-01T00:00:00Z',
      '2000-01-01T14:00:00+14:00',
      '2024-02-29T23:59:59.999-12:00',
    ])
      ok({ ...base, occurredAt, kind: 'session', payload: { action: 'start' } });
  });

  it('names /events/i/occurredAt for a batch event before the year 2000', () => {
    const e = { ...base, kind: 'session', payload: { action: 'start' } };
    expect(bad({ events: [e, { ...e, occurredAt: '0000-01-01T00:00:00Z' }] }).errors).toEqual([
      { path: '/events/1/occurredAt', message: expect.stringContaining('2000') },
    ]);
  });

  it('accepts occurredAt exactly 5 minutes ahead and rejects one millisecond more', () => {
    ok({ ...base, occurredAt: '2025-03-10T12:05:00Z', kind: 'session', payload: { action: 'start' } });
    expect(
      bad({ ...base, occurredAt: '2025-03-10T12:05:00.001Z', kind: 'session', payload: { action: 'start' } })
        .errors,
    ).toEqual([{ path: '/occurredAt', message: 'must not be more than 5 minutes in the future' }]);
  });
});

describe('validateBatch: field errors', () => {
  const single = (over: Record<string, unknown>, payload: Record<string, unknown> = { action: 'start' }) => ({
    ...base,
    kind: 'session',
    payload,
    ...over,
  });

  it.each([
    [{ id: '' }, '/id'],
    [{ id: 'a'.repeat(65) }, '/id'],
    [{ id: 'has space' }, '/id'],
    [{ studentId: '' }, '/studentId'],
    [{ studentId: 'a'.repeat(129) }, '/studentId'],
    [{ studentId: 'bad/slash' }, '/studentId'],
    [{ studentId: 42 }, '/studentId'],
    [{ studentId: undefined }, '/studentId'],
    [{ instanceId: undefined }, '/instanceId'],
    [{ instanceId: 'a b' }, '/instanceId'],
    [{ occurredAt: '2025-03-10T11:59:00' }, '/occurredAt'], // no time zone
    [{ occurredAt: '2025-03-10' }, '/occurredAt'],
    [{ occurredAt: '2025-02-30T10:00:00Z' }, '/occurredAt'],
    [{ occurredAt: 1741600000000 }, '/occurredAt'],
    // SPEC §3: year 2000 or later (issue 11 #5: year 0000 was accepted, then dead-lettered by updateProgress)
    [{ occurredAt: '0000-01-01T00:00:00Z' }, '/occurredAt'],
    [{ occurredAt: '1999-12-31T23:59:59.999Z' }, '/occurredAt'],
    [{ occurredAt: '2000-01-01T00:30:00+01:00' }, '/occurredAt'], // 1999-12-31T23:30Z
    [{ occurredAt: '2024-04-31T10:00:00Z' }, '/occurredAt'],
    [{ occurredAt: '2023-02-29T10:00:00Z' }, '/occurredAt'],
    [{ occurredAt: '2025-03-10T11:59:00+16:00' }, '/occurredAt'], // PostgreSQL refuses beyond ±15:59
    [{ occurredAt: '2025-03-10T11:59:00-12:01' }, '/occurredAt'],
    [{ topic: 'Python' }, '/topic'],
    [{ topic: '.loops' }, '/topic'],
    [{ topic: 'a'.repeat(129) }, '/topic'],
    [{ sponsor: 'Acme' }, '/sponsor'],
    [{ sponsor: '-acme' }, '/sponsor'],
    [{ artifacts: ['gs://bucket/x'] }, '/artifacts/0'],
    [{ artifacts: ['lfs://ok', 'lfs://'] }, '/artifacts/1'],
    [{ artifacts: Array.from({ length: 21 }, (_, i) => `lfs://a${i}`) }, '/artifacts'],
    [{ kind: 'telepathy' }, '/kind'],
    [{ kind: undefined }, '/kind'],
    [{ payload: undefined }, '/payload'],
    [{ payload: [] }, '/payload'],
    [{ extra: 1 }, '/extra'],
  ])('%j → %s', (over, path) => {
    expect(paths(single(over))).toEqual([path]);
  });

  it.each([
    ['exercise_attempt', { exerciseId: 'e', passed: 'true' }, '/payload/passed'],
    ['exercise_attempt', { exerciseId: 'e', passed: 1 }, '/payload/passed'],
    ['exercise_attempt', { exerciseId: 'e', passed: true, score: 1.01 }, '/payload/score'],
    ['exercise_attempt', { exerciseId: '', passed: true }, '/payload/exerciseId'],
    ['exercise_attempt', { exerciseId: 'x'.repeat(129), passed: true }, '/payload/exerciseId'],
    ['exercise_attempt', { passed: true }, '/payload/exerciseId'],
    ['quiz_answer', { quizId: 'q', correct: true }, '/payload/score'],
    ['quiz_answer', { quizId: 'q', correct: true, score: -0.1 }, '/payload/score'],
    ['quiz_answer', { quizId: 'q', correct: true, score: '0.5' }, '/payload/score'],
    ['code_submission', { codeQuality: 2 }, '/payload/codeQuality'],
    ['code_submission', { code: 'x'.repeat(32 * 1024 + 1) }, '/payload'], // oversize payload first
    ['code_execution', {}, '/payload/ok'],
    ['code_execution', { ok: 'false' }, '/payload/ok'],
    ['code_execution', { ok: false, errorMessage: 'é'.repeat(8 * 1024 + 1) }, '/payload/errorMessage'],
    ['dialogue_turn', { text: 'hi', role: 'teacher' }, '/payload/role'],
    ['dialogue_turn', { text: '', role: 'student' }, '/payload/text'],
    ['help_request', { text: 'x'.repeat(16 * 1024 + 1) }, '/payload/text'],
    ['reflection', {}, '/payload/text'],
    ['vuca_progress', { dimension: 'chaos', value: 0.5 }, '/payload/dimension'],
    ['content_view', { contentId: 'c', durationMs: 1.5 }, '/payload/durationMs'],
    ['content_view', { contentId: 'c', durationMs: -1 }, '/payload/durationMs'],
    ['session', { action: 'pause' }, '/payload/action'],
    ['session', { action: 'start', extra: true }, '/payload/extra'],
  ])('%s %j → %s', (kind, payload, path) => {
    expect(paths(single({ kind }, payload))).toEqual([path]);
  });

  it('lists every offending field with a human message and names unknown keys themselves', () => {
    const r = bad({
      studentId: 'bad id',
      occurredAt: 'yesterday',
      kind: 'code_execution',
      payload: { ok: 'no', why: 1, 'a/b': 2 },
      foo: 1,
    });
    expect(r.tooLarge).toBe(false);
    expect(r.errors.map((e) => e.path).sort()).toEqual(
      [
        '/studentId',
        '/instanceId',
        '/occurredAt',
        '/payload/ok',
        '/payload/why',
        '/payload/a~1b',
        '/foo',
      ].sort(),
    );
    expect(r.errors.find((e) => e.path === '/instanceId')?.message).toBe('is required');
    expect(r.errors.find((e) => e.path === '/payload/why')?.message).toBe('unknown field');
    for (const e of r.errors) expect(e.message.length).toBeGreaterThan(3);
  });

  it('still checks the envelope when the kind is unknown', () => {
    expect(paths({ ...base, studentId: '', kind: 'nope', payload: { x: 1 } }).sort()).toEqual([
      '/kind',
      '/studentId',
    ]);
  });

  it('rejects bodies that are not objects', () => {
    for (const body of [null, 'x', 1, [], [{}], true]) {
      expect(bad(body).errors).toEqual([{ path: '', message: expect.any(String) }]);
    }
  });
});

describe('validateBatch: payload size (413)', () => {
  it('flags a payload over 32 KiB of UTF-8 as tooLarge', () => {
    // 'ü' is 2 bytes: 16 KiB + 1 of them is > 32 KiB serialised, though < 32 Ki characters.
    const payload = { text: 'ü'.repeat(16 * 1024), role: 'student' };
    expect(payloadTooLarge(payload)).toBe(true);
    const r = bad({ ...base, kind: 'dialogue_turn', payload });
    expect(r.tooLarge).toBe(true);
    expect(r.errors).toEqual([{ path: '/payload', message: expect.stringContaining('lfsProxy') }]);
  });

  it('does not flag a payload just under the limit', () => {
    const code = 'x'.repeat(32 * 1024 - '{"code":""}'.length);
    expect(payloadTooLarge({ code })).toBe(false);
    expect(ok({ ...base, kind: 'code_submission', payload: { code } }).events).toHaveLength(1);
    expect(payloadTooLarge({ code: `${code}x` })).toBe(true);
  });

  it('sets tooLarge for a batch when any event is oversize', () => {
    const r = bad({
      events: [
        { ...base, kind: 'help_request', payload: { text: 'x'.repeat(40_000) } },
        { ...base, kind: 'session', payload: { action: 'nope' } },
      ],
    });
    expect(r.tooLarge).toBe(true);
    expect(r.errors.map((e) => e.path)).toEqual(['/events/0/payload', '/events/1/payload/action']);
  });
});

describe('validateBatch: batches', () => {
  const ev = (over: Record<string, unknown> = {}) => ({
    ...base,
    kind: 'session',
    payload: { action: 'start' },
    ...over,
  });

  it('accepts 1..500 events and marks isBatch', () => {
    const r = ok({ events: [ev({ id: 'a' }), ev()] });
    expect(r.isBatch).toBe(true);
    expect(r.events.map((e) => e.id)).toEqual(['a', expect.stringMatching(/^gen-/)]);
    expect(ok({ events: Array.from({ length: 500 }, () => ev()) }).events).toHaveLength(500);
  });

  it('rejects empty, oversized and non-array batches', () => {
    expect(paths({ events: [] })).toEqual(['/events']);
    expect(paths({ events: {} })).toEqual(['/events']);
    expect(paths({ events: Array.from({ length: 501 }, () => ev()) })).toEqual(['/events']);
    expect(bad({ events: [ev(), ev(), ev()] }, { maxBatch: 2 }).errors.map((e) => e.path)).toEqual([
      '/events',
    ]);
  });

  it('requires events to be the only key', () => {
    expect(paths({ events: [ev()], studentId: 'x' })).toEqual(['/studentId']);
  });

  it('lists every bad field of every bad index and nothing for good ones', () => {
    const r = bad({
      events: [
        ev(),
        ev({ kind: 'exercise_attempt', payload: { exerciseId: 'e', passed: 'yes' } }),
        ev(),
        ev({ studentId: '', payload: { action: 'start', x: 1 } }),
        'not an object',
      ],
    });
    expect(r.errors.map((e) => e.path)).toEqual([
      '/events/1/payload/passed',
      '/events/3/studentId',
      '/events/3/payload/x',
      '/events/4',
    ]);
  });

  it('reports a duplicate id on the later index', () => {
    const r = bad({ events: [ev({ id: 'x' }), ev({ id: 'y' }), ev({ id: 'x' }), ev({ id: 'x' })] });
    expect(r.errors).toEqual([
      { path: '/events/2/id', message: expect.stringContaining('/events/0') },
      { path: '/events/3/id', message: expect.stringContaining('/events/0') },
    ]);
  });

  it('accepts the same id for two learners in one batch: ids are scoped to the learner', () => {
    const r = ok({ events: [ev({ id: 'x' }), ev({ id: 'x', studentId: 'stu-2' })] });
    expect(r.events.map((e) => [e.studentId, e.id])).toEqual([
      ['stu-1', 'x'],
      ['stu-2', 'x'],
    ]);
  });
});

describe('interactionSchema', () => {
  it('parses a published (normalised) interaction and rejects unknown fields', () => {
    const r = ok({ ...base, kind: 'quiz_answer', payload: { quizId: 'q', correct: true, score: 1 } });
    expect(interactionSchema.parse(r.events[0])).toEqual(r.events[0]);
    expect(interactionSchema.safeParse({ ...r.events[0], more: 1 }).success).toBe(false);
  });
});

describe('validateBatch with hostile values (found by the fuzz suite)', () => {
  it('a studentId object whose toString is not a function is a 400 field error, not a crash', () => {
    const r = validateBatch(
      JSON.parse(
        '{"id":"a1","studentId":{"toString":""},"instanceId":"i","kind":"session","occurredAt":"2026-01-01T00:00:00Z","payload":{"action":"start"}}',
      ),
      { now: new Date('2026-01-01T00:01:00Z'), newId: () => 'x' },
    );
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.map((e) => e.path)).toContain('/studentId');
  });
});
