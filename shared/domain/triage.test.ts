import { describe, expect, it } from 'vitest';
import type { Interaction } from './interaction.ts';
import { loadRules, type TriageInput, triage } from './triage.ts';
import rulesJson from './triage-rules.json' with { type: 'json' };

const rules = loadRules(rulesJson);
const route = (i: TriageInput) => triage(i, rules);
const say = (text: string): TriageInput => ({ kind: 'dialogue_turn', payload: { text, role: 'student' } });

describe('triage: every kind', () => {
  it.each<[TriageInput, string, string]>([
    [{ kind: 'code_execution', payload: { ok: false } }, 'debug', 'debug-failed-execution'],
    [{ kind: 'code_execution', payload: { ok: true } }, 'none', 'none-default'],
    [
      { kind: 'code_execution', payload: { ok: true, errorMessage: 'DeprecationWarning: old' } },
      'none',
      'none-default',
    ],
    [
      { kind: 'code_submission', payload: { code: 'raise Exception()' } },
      'code-review',
      'code-review-submission',
    ],
    [
      { kind: 'exercise_attempt', payload: { exerciseId: 'e', passed: false } },
      'exercise',
      'exercise-attempt',
    ],
    [{ kind: 'quiz_answer', payload: { quizId: 'q', correct: true, score: 1 } }, 'progress', 'progress-quiz'],
    [say('What is a closure?'), 'concepts', 'concepts-conversation'],
    [
      { kind: 'help_request', payload: { text: 'Was ist eine Schleife?' } },
      'concepts',
      'concepts-conversation',
    ],
    [
      { kind: 'reflection', payload: { text: 'Today I learned about loops.' } },
      'concepts',
      'concepts-conversation',
    ],
    [{ kind: 'content_view', payload: { contentId: 'c', durationMs: 10 } }, 'none', 'none-passive'],
    [{ kind: 'session', payload: { action: 'start' } }, 'none', 'none-passive'],
    [{ kind: 'vuca_progress', payload: { dimension: 'ambiguity', value: 0.2 } }, 'none', 'none-passive'],
  ])('%j → %s (%s)', (input, agent, ruleId) => {
    expect(route(input)).toMatchObject({ agent, ruleId });
  });

  it('returns agent, reason, confidence and ruleId', () => {
    expect(route({ kind: 'code_execution', payload: { ok: false } })).toEqual({
      agent: 'debug',
      reason: 'code execution failed',
      confidence: 0.95,
      ruleId: 'debug-failed-execution',
    });
  });

  it('accepts a full Interaction', () => {
    const i: Interaction = {
      id: 'x',
      studentId: 's',
      instanceId: 'i',
      occurredAt: '2025-01-01T00:00:00Z',
      topic: 'general',
      kind: 'help_request',
      payload: { text: 'Ich brauche eine Übung' },
    };
    expect(triage(i, rules).agent).toBe('exercise');
  });
});

describe('triage: English and German text', () => {
  it.each([
    // debug
    ['I get a Traceback when I run it', 'debug'],
    ['Why does this throw an EXCEPTION?', 'debug'],
    ['my loop does not work', 'debug'],
    ["it doesn't work", 'debug'],
    ['Mein Code funktioniert nicht', 'debug'],
    ['Das FUNKTIONIERT einfach nicht', 'debug'],
    ['Ich bekomme einen Fehler', 'debug'],
    ['Was bedeutet diese Fehlermeldung?', 'debug'],
    ['Das Programm stürzt immer ab', 'debug'],
    ['Das Programm stuerzt ab', 'debug'],
    // code-review
    ['Can you review my solution?', 'code-review'],
    ['How can I improve this function?', 'code-review'],
    ['Kannst du meinen Code verbessern?', 'code-review'],
    ['Bitte ÜBERPRÜFEN', 'code-review'],
    ['bitte ueberpruefen', 'code-review'],
    ['Geht das eleganter?', 'code-review'],
    // exercise
    ['I want to practice loops', 'exercise'],
    ['Give me another exercise', 'exercise'],
    ['Ich möchte eine Übung', 'exercise'],
    ['ÜBUNGEN bitte', 'exercise'],
    ['ich will noch mehr üben', 'exercise'],
    ['Uebung zu Listen', 'exercise'],
    ['Hast du eine Aufgabe für mich?', 'exercise'],
    // progress
    ["What's my score?", 'progress'],
    ['Show my progress', 'progress'],
    ['Wie ist mein Fortschritt?', 'progress'],
    ['Wie viele PUNKTE habe ich?', 'progress'],
    ['Wie gut bin ich?', 'progress'],
    // concepts (no false positives on look-alikes)
    ['Explain recursion', 'concepts'],
    ['Was ist der Unterschied zwischen drüben und über?', 'concepts'],
    ['Can I see a preview of the lesson?', 'concepts'],
    ['Die Schwerpunkte des Kapitels?', 'concepts'],
    ['What does underscore mean in Python?', 'concepts'],
  ])('%s → %s', (text, agent) => {
    expect(route(say(text)).agent).toBe(agent);
    expect(route({ kind: 'help_request', payload: { text } }).agent).toBe(agent);
  });

  it('understands decomposed umlauts (NFD input)', () => {
    expect(route(say('Übung'.normalize('NFD'))).agent).toBe('exercise');
  });

  it('reads errorType / errorMessage of a code execution', () => {
    expect(
      route({
        kind: 'code_execution',
        payload: { ok: true, errorMessage: 'Traceback (most recent call last)' },
      }),
    ).toMatchObject({ agent: 'debug', ruleId: 'debug-error-text' });
  });
});

describe('triage: precedence and data-driven rules', () => {
  it('first match wins', () => {
    // a failed execution mentioning review is still debug
    expect(
      route({ kind: 'code_execution', payload: { ok: false, errorMessage: 'please review' } }).ruleId,
    ).toBe('debug-failed-execution');
    // error text beats review text
    expect(route(say('Please review this, I get an error')).agent).toBe('debug');
    // review text beats practice text, practice beats progress
    expect(route(say('Verbessern oder üben?')).agent).toBe('code-review');
    expect(route(say('Practice to raise my score')).agent).toBe('exercise');
    // text rules apply to any text-bearing kind, before the catch-all concepts rule
    expect(route({ kind: 'reflection', payload: { text: 'Mein Fortschritt ist gut' } }).agent).toBe(
      'progress',
    );
  });

  it('is deterministic', () => {
    const input = say('Fehler beim Üben');
    const first = route(input);
    for (let i = 0; i < 5; i++) expect(route(input)).toEqual(first);
  });

  it('a rule added in JSON alone changes routing', () => {
    const extended = structuredClone(rulesJson) as { rules: unknown[] };
    extended.rules.unshift({
      id: 'tutor-turns-need-nobody',
      agent: 'none',
      reason: 'tutor turns are not triaged',
      confidence: 1,
      kinds: ['dialogue_turn'],
      payload: { role: 'tutor' },
    });
    extended.rules.splice(2, 0, {
      id: 'debug-syntax-de',
      agent: 'debug',
      reason: 'Syntaxproblem',
      confidence: 0.7,
      text: [{ lang: 'de', pattern: 'einrückung' }],
    });
    const more = loadRules(extended);
    const tutor: TriageInput = {
      kind: 'dialogue_turn',
      payload: { text: 'Here is an error', role: 'tutor' },
    };
    expect(triage(tutor, rules).agent).toBe('debug');
    expect(triage(tutor, more)).toMatchObject({ agent: 'none', ruleId: 'tutor-turns-need-nobody' });
    expect(triage(say('Die EINRÜCKUNG stimmt nicht'), rules).agent).toBe('concepts');
    expect(triage(say('Die EINRÜCKUNG stimmt nicht'), more).agent).toBe('debug');
  });

  it('falls back to none when nothing matches', () => {
    const only = loadRules({
      rules: [{ id: 'r', agent: 'debug', reason: 'x', confidence: 1, kinds: ['session'] }],
    });
    expect(triage({ kind: 'reflection', payload: { text: 'hi' } }, only)).toEqual({
      agent: 'none',
      reason: 'no rule matched',
      confidence: 0,
      ruleId: 'fallback',
    });
  });
});

describe('loadRules validation', () => {
  const r = { id: 'a', agent: 'debug', reason: 'x', confidence: 0.5 };
  it.each([
    [{}, /rules/],
    [{ rules: [] }, /rules/],
    [{ rules: [{ ...r, agent: 'oracle' }] }, /\/rules\/0\/agent/],
    [{ rules: [{ ...r, confidence: 2 }] }, /\/rules\/0\/confidence/],
    [{ rules: [{ ...r, kinds: ['telepathy'] }] }, /\/rules\/0\/kinds\/0/],
    [{ rules: [{ ...r, text: [{ pattern: '(' }] }] }, /invalid regular expression/],
    [{ rules: [{ ...r, text: [{ pattern: 'a', flags: 'g' }] }] }, /flags/],
    [{ rules: [{ ...r, extra: 1 }] }, /extra/],
    [{ rules: [r, r] }, /duplicate rule id "a"/],
  ])('%j is rejected', (json, message) => {
    expect(() => loadRules(json)).toThrow(message);
  });
});
