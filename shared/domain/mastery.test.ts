import { describe, expect, it } from 'vitest';
import type { Interaction } from './interaction.ts';
import {
  apply,
  emptyState,
  levelFor,
  mastery,
  round1,
  type Struggle,
  saysStuck,
  type TopicState,
} from './mastery.ts';

let n = 0;
const ev = (kind: Interaction['kind'], payload: object, occurredAt = '2025-03-01T10:00:00Z'): Interaction =>
  ({
    id: `e${++n}`,
    studentId: 's1',
    instanceId: 'app',
    topic: 'python',
    occurredAt,
    kind,
    payload,
  }) as Interaction;

/** Applies events in order; returns the final state and every struggle raised. */
const run = (events: Interaction[], from: TopicState = emptyState()) => {
  let state = from;
  const struggles: Struggle[] = [];
  for (const e of events) {
    const r = apply(state, e);
    state = r.state;
    struggles.push(...r.struggles);
  }
  return { state, struggles, reasons: struggles.map((s) => s.reason) };
};

const state = (over: Partial<TopicState>): TopicState => ({ ...emptyState(), ...over });
const passedEx = { e1: { attempted: 1, passed: 1, firstAttemptAt: '2025-03-01T10:00:00.000Z' } };

describe('mastery: hand-computed example', () => {
  it('3 exercises (2 passed), quizzes 0.8 and 0.5, quality 0.9, 3-day streak → 68.5 learning', () => {
    const { state: s } = run([
      ev('exercise_attempt', { exerciseId: 'e1', passed: true }, '2025-03-01T09:00:00Z'),
      ev('exercise_attempt', { exerciseId: 'e2', passed: false }, '2025-03-01T09:01:00Z'),
      ev('quiz_answer', { quizId: 'q1', correct: true, score: 0.8 }, '2025-03-01T09:02:00Z'),
      ev('exercise_attempt', { exerciseId: 'e3', passed: false }, '2025-03-02T09:00:00Z'),
      ev('exercise_attempt', { exerciseId: 'e3', passed: true }, '2025-03-02T09:05:00Z'),
      ev('quiz_answer', { quizId: 'q2', correct: false, score: 0.5 }, '2025-03-02T09:06:00Z'),
      ev('code_submission', { code: 'x', codeQuality: 0.9 }, '2025-03-03T09:00:00Z'),
      ev('code_submission', { code: 'y' }, '2025-03-03T09:10:00Z'), // no quality: not counted
    ]);
    // exercise    = 2/3                      → 0.4 × 0.6667 = 0.26667
    // quiz        = (0.8 + 0.5) / 2 = 0.65   → 0.3 × 0.65   = 0.195
    // quality     = 0.9                      → 0.2 × 0.9    = 0.18
    // consistency = min(1, 3/7) = 0.42857    → 0.1 × 0.4286 = 0.042857
    // mastery     = 100 × 0.684524 = 68.4524 → 68.5; 40 < 68.5 ≤ 70 → learning
    const m = mastery(s);
    expect(m.mastery).toBe(68.5);
    expect(m.level).toBe('learning');
    expect(m.components.exercise).toBeCloseTo(2 / 3, 12);
    expect(m.components.quiz).toBeCloseTo(0.65, 12);
    expect(m.components.quality).toBeCloseTo(0.9, 12);
    expect(m.components.consistency).toBeCloseTo(3 / 7, 12);
    expect(s.interactions).toBe(8);
    expect(s.exercises.e3).toEqual({
      attempted: 2,
      passed: 1,
      firstAttemptAt: '2025-03-02T09:00:00.000Z',
      lastPassAt: '2025-03-02T09:05:00.000Z',
    });
  });

  it('no data → 0 beginner; everything perfect → 100 mastered', () => {
    expect(mastery(emptyState())).toEqual({
      mastery: 0,
      level: 'beginner',
      components: { exercise: 0, quiz: 0, quality: 0, consistency: 0 },
    });
    const full = state({
      exercises: passedEx,
      quiz: { sum: 2, count: 2 },
      codeQuality: { sum: 1, count: 1 },
      streak: { lastDay: '2025-03-09', days: 9 }, // capped at 7 days → 1
    });
    expect(mastery(full)).toMatchObject({ mastery: 100, level: 'mastered' });
  });
});

describe('mastery: level boundaries', () => {
  it.each<[string, Partial<TopicState>, number, string]>([
    // 100 × 0.4 × 1 = 40
    ['exercise only', { exercises: passedEx }, 40, 'beginner'],
    // 40 + 100 × 0.2 × 0.005 = 40.1
    ['+ quality 0.005', { exercises: passedEx, codeQuality: { sum: 0.005, count: 1 } }, 40.1, 'learning'],
    // 40 + 30 = 70
    ['exercise + quiz', { exercises: passedEx, quiz: { sum: 1, count: 1 } }, 70, 'learning'],
    // 70 + 0.1 = 70.1
    [
      '+ quality 0.005',
      { exercises: passedEx, quiz: { sum: 1, count: 1 }, codeQuality: { sum: 0.005, count: 1 } },
      70.1,
      'proficient',
    ],
    // 40 + 30 + 20 = 90
    [
      'exercise + quiz + quality',
      { exercises: passedEx, quiz: { sum: 1, count: 1 }, codeQuality: { sum: 1, count: 1 } },
      90,
      'proficient',
    ],
    // 40 + 100 × 0.3 × 0.67 (= 20.1) + 20 + 10 (7-day streak) = 90.1
    [
      'quiz 0.67 with a full streak',
      {
        exercises: passedEx,
        quiz: { sum: 0.67, count: 1 },
        codeQuality: { sum: 1, count: 1 },
        streak: { lastDay: '2025-03-07', days: 7 },
      },
      90.1,
      'mastered',
    ],
  ])('%s → %d %s', (_, over, value, level) => {
    expect(mastery(state(over))).toMatchObject({ mastery: value, level });
  });

  it.each([
    [0, 'beginner'],
    [40, 'beginner'],
    [40.1, 'learning'],
    [70, 'learning'],
    [70.1, 'proficient'],
    [90, 'proficient'],
    [90.1, 'mastered'],
    [100, 'mastered'],
  ])('levelFor(%d) = %s', (m, level) => {
    expect(levelFor(m)).toBe(level);
  });

  it('rounds half up without float artefacts or double rounding', () => {
    // quiz 0.005 → 0.15, quality 0.345 → 6.9; 7.05 in floats is 7.049999999999999
    const s = state({ quiz: { sum: 0.005, count: 1 }, codeQuality: { sum: 0.345, count: 1 } });
    expect(Math.round(100 * (0.3 * 0.005 + 0.2 * 0.345) * 10) / 10).toBe(7); // the naive way is wrong
    expect(mastery(s).mastery).toBe(7.1);
    expect(round1(40.05)).toBe(40.1);
    expect(round1(40.0496)).toBe(40);
    expect(round1(68.45238)).toBe(68.5);
    expect(round1(0)).toBe(0);
  });
});

describe('streak (UTC days)', () => {
  const at = (t: string) => ev('session', { action: 'start' }, t);
  it.each<[string, string[], { lastDay: string; days: number }]>([
    ['first day', ['2025-03-01T10:00:00Z'], { lastDay: '2025-03-01', days: 1 }],
    ['same day', ['2025-03-01T00:00:00Z', '2025-03-01T23:59:59Z'], { lastDay: '2025-03-01', days: 1 }],
    ['next day', ['2025-03-01T23:00:00Z', '2025-03-02T00:30:00Z'], { lastDay: '2025-03-02', days: 2 }],
    [
      'across a month end',
      ['2025-02-28T12:00:00Z', '2025-03-01T12:00:00Z'],
      { lastDay: '2025-03-01', days: 2 },
    ],
    [
      'a gap resets',
      ['2025-03-01T10:00:00Z', '2025-03-02T10:00:00Z', '2025-03-04T10:00:00Z'],
      { lastDay: '2025-03-04', days: 1 },
    ],
    [
      'a late event is ignored',
      ['2025-03-01T10:00:00Z', '2025-03-02T10:00:00Z', '2025-02-20T10:00:00Z'],
      { lastDay: '2025-03-02', days: 2 },
    ],
    // 01:00 at +02:00 is 23:00 UTC the day before
    [
      'offsets count in UTC',
      ['2025-03-01T10:00:00Z', '2025-03-02T01:00:00+02:00'],
      { lastDay: '2025-03-01', days: 1 },
    ],
  ])('%s', (_, times, streak) => {
    expect(run(times.map(at)).state.streak).toEqual(streak);
  });

  it('consistency is capped at 1 after 7 days', () => {
    const days = Array.from({ length: 10 }, (_, i) =>
      at(`2025-03-${String(i + 1).padStart(2, '0')}T08:00:00Z`),
    );
    const s = run(days).state;
    expect(s.streak?.days).toBe(10);
    expect(mastery(s).components.consistency).toBe(1);
  });
});

describe('struggle detection', () => {
  const fail = (errorType?: string) =>
    ev('code_execution', errorType ? { ok: false, errorType } : { ok: false });
  const okRun = ev('code_execution', { ok: true });

  it('repeated_error: the same errorType 3 times in a row (and again at 6, 9, …)', () => {
    expect(run([fail('TypeError'), fail('TypeError')]).reasons).toEqual([]);
    const three = run([fail('TypeError'), fail('TypeError'), fail('TypeError')]);
    expect(three.struggles).toEqual([{ reason: 'repeated_error', detail: 'TypeError 3 times in a row' }]);
    expect(run(Array.from({ length: 6 }, () => fail('KeyError'))).reasons).toEqual([
      'repeated_error',
      'failed_executions',
      'repeated_error',
    ]);
    // other kinds in between do not break the run
    expect(run([fail('E'), ev('help_request', { text: 'hm' }), fail('E'), fail('E')]).reasons).toEqual([
      'repeated_error',
    ]);
  });

  it.each([
    ['a different type', [fail('TypeError'), fail('TypeError'), fail('ValueError'), fail('TypeError')]],
    ['a success', [fail('TypeError'), fail('TypeError'), okRun, fail('TypeError')]],
    ['a failure without errorType', [fail('TypeError'), fail('TypeError'), fail(), fail('TypeError')]],
  ])('repeated_error: %s breaks the run', (_, events) => {
    expect(run(events).reasons).not.toContain('repeated_error');
  });

  it('failed_executions: fires when the run reaches 5 and every further 5; a success resets', () => {
    const types = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J'];
    expect(run(types.slice(0, 4).map(fail)).reasons).toEqual([]);
    expect(run(types.slice(0, 5).map(fail)).struggles).toEqual([
      { reason: 'failed_executions', detail: '5 failed executions in a row' },
    ]);
    expect(run(types.map(fail)).reasons).toEqual(['failed_executions', 'failed_executions']);
    expect(run([fail(), fail(), fail(), fail(), okRun, fail()]).reasons).toEqual([]);
    expect(run([fail(), fail(), fail(), fail(), okRun, fail()]).state.failedRun).toBe(1);
  });

  it('low_quiz_score: a score below 0.5', () => {
    expect(run([ev('quiz_answer', { quizId: 'q1', correct: false, score: 0.49 })]).struggles).toEqual([
      { reason: 'low_quiz_score', detail: 'quiz q1: score 0.49 < 0.5' },
    ]);
    expect(run([ev('quiz_answer', { quizId: 'q1', correct: true, score: 0.5 })]).reasons).toEqual([]);
  });

  it.each([
    "I'm stuck",
    'STUCK again',
    'I’m totally lost',
    'i am lost',
    "I can't figure out this loop",
    'Ich komme nicht weiter',
    'ich KOMME einfach nicht mehr weiter',
    'Ich hänge hier fest',
    'ICH HÄNGE FEST',
    'ich haenge fest',
    'Ich stecke total fest',
    'Ich weiß nicht weiter',
    'Hänge fest'.normalize('NFD'),
  ])('stuck: help_request and student dialogue_turn saying %j', (text) => {
    expect(saysStuck(text)).toBe(true);
    expect(run([ev('help_request', { text })]).reasons).toEqual(['stuck']);
    expect(run([ev('dialogue_turn', { text, role: 'student' })]).reasons).toEqual(['stuck']);
  });

  it('stuck: not for tutor turns, other kinds or unrelated text', () => {
    expect(run([ev('dialogue_turn', { text: 'Are you stuck?', role: 'tutor' })]).reasons).toEqual([]);
    expect(run([ev('reflection', { text: 'I was stuck yesterday' })]).reasons).toEqual([]);
    expect(run([ev('help_request', { text: 'How do loops work?' })]).reasons).toEqual([]);
    expect(run([ev('help_request', { text: 'Ich komme gleich wieder' })]).reasons).toEqual([]);
    expect(run([ev('help_request', { text: 'the closest one' })]).reasons).toEqual([]);
  });

  describe('exercise_time: more than 10 minutes of attempts without a pass', () => {
    const att = (passed: boolean, t: string, exerciseId = 'loops-1') =>
      ev('exercise_attempt', { exerciseId, passed }, t);

    it('fires after 10 min, not at exactly 10 min', () => {
      expect(run([att(false, '2025-03-01T10:00:00Z'), att(false, '2025-03-01T10:10:00Z')]).reasons).toEqual(
        [],
      );
      expect(run([att(false, '2025-03-01T10:00:00Z'), att(false, '2025-03-01T10:10:01Z')]).struggles).toEqual(
        [{ reason: 'exercise_time', detail: 'exercise loops-1: 10 min of attempts without a pass' }],
      );
    });

    it('does not fire once the exercise was passed, nor on the passing attempt', () => {
      expect(
        run([
          att(false, '2025-03-01T10:00:00Z'),
          att(true, '2025-03-01T10:05:00Z'),
          att(false, '2025-03-01T10:20:00Z'),
        ]).reasons,
      ).toEqual([]);
      expect(run([att(false, '2025-03-01T10:00:00Z'), att(true, '2025-03-01T10:20:00Z')]).reasons).toEqual(
        [],
      );
    });

    it('times each exercise from its own first attempt, including late events', () => {
      expect(
        run([att(false, '2025-03-01T10:00:00Z', 'a'), att(false, '2025-03-01T10:15:00Z', 'b')]).reasons,
      ).toEqual([]);
      const late = run([
        att(false, '2025-03-01T10:15:00Z'),
        att(false, '2025-03-01T10:00:00Z'),
        att(false, '2025-03-01T10:16:00Z'),
      ]);
      expect(late.state.exercises['loops-1']?.firstAttemptAt).toBe('2025-03-01T10:00:00.000Z');
      expect(late.reasons).toEqual(['exercise_time']);
    });
  });

  it('kinds without rules raise nothing', () => {
    const events = [
      ev('content_view', { contentId: 'c', durationMs: 5 }),
      ev('session', { action: 'end' }),
      ev('vuca_progress', { dimension: 'complexity', value: 0.1 }),
      ev('code_submission', { codeQuality: 0.1 }),
      ev('exercise_attempt', { exerciseId: 'x', passed: false }),
    ];
    expect(run(events).reasons).toEqual([]);
  });
});

describe('purity and serialisability', () => {
  const deepFreeze = <T>(o: T): T => {
    if (o && typeof o === 'object') {
      for (const v of Object.values(o)) deepFreeze(v);
      Object.freeze(o);
    }
    return o;
  };
  const events = [
    ev('exercise_attempt', { exerciseId: 'e1', passed: false }, '2025-03-01T10:00:00Z'),
    ev('exercise_attempt', { exerciseId: 'e1', passed: true }, '2025-03-02T10:00:00Z'),
    ev('quiz_answer', { quizId: 'q', correct: true, score: 0.2 }, '2025-03-02T10:00:00Z'),
    ev('code_submission', { codeQuality: 0.7 }, '2025-03-03T10:00:00Z'),
    ev('code_execution', { ok: false, errorType: 'E' }, '2025-03-03T10:00:00Z'),
    ev('help_request', { text: 'stuck' }, '2025-03-03T10:00:00Z'),
  ];

  it('never mutates the input state', () => {
    let s = deepFreeze(emptyState());
    for (const e of events) {
      const before = JSON.stringify(s);
      const next = apply(s, e).state; // would throw on a write to a frozen object
      expect(JSON.stringify(s)).toBe(before);
      expect(next).not.toBe(s);
      s = deepFreeze(next);
    }
  });

  it('state survives a JSON round trip unchanged (no undefined, no Dates)', () => {
    const { state: s } = run(events);
    expect(JSON.parse(JSON.stringify(s))).toStrictEqual(s);
    expect(mastery(JSON.parse(JSON.stringify(s)))).toEqual(mastery(s));
  });

  it('exercise ids that look like Object.prototype keys are plain keys', () => {
    const { state: s } = run([
      ev('exercise_attempt', { exerciseId: '__proto__', passed: true }),
      ev('exercise_attempt', { exerciseId: 'constructor', passed: false }),
    ]);
    expect(Object.keys(s.exercises).sort()).toEqual(['__proto__', 'constructor']);
    expect(mastery(s).components.exercise).toBe(0.5);
    expect(JSON.parse(JSON.stringify(s)).exercises.constructor.attempted).toBe(1);
  });
});
