import { describe, expect, it } from 'vitest';
import { hopOf, rootCeId, type Seen, seenOf, TapStore, timeline } from './console-store.ts';

const msg = (topic: string, ceId: string, extra: Record<string, string> = {}, data: unknown = {}, at = 0) =>
  seenOf(topic, {
    id: `${topic}/${ceId}`,
    publishTime: new Date(Date.UTC(2025, 0, 1, 10, 0, 0, at)),
    attributes: { 'ce-id': ceId, 'ce-type': 't', ...extra },
    data: Buffer.from(JSON.stringify(data)),
  });

describe('the console tap store', () => {
  it('reads trace, learner and a few data fields from a message', () => {
    const trace = 'ab'.repeat(16);
    const e = msg(
      'learnflow.progress.updated',
      'x.progress',
      { 'ce-traceparent': `00-${trace}-${'cd'.repeat(8)}-01`, 'ce-subject': 'students/stu-1' },
      { mastery: 12.5, version: 3, payload: { big: 'not kept' } },
    );
    expect(e.traceId).toBe(trace);
    expect(e.learner).toBe('stu-1');
    expect(e.data).toEqual({ mastery: 12.5, version: 3 });
    expect(msg('t', 'y', { 'ce-traceparent': 'garbage' }).traceId).toBeUndefined();
    expect(msg('partner.acme.events', 'y', { 'ce-subject': 'learners/ref-9' }).learner).toBe('ref-9');
  });

  it('finds an interaction and everything derived from it, but not an id that merely starts the same', () => {
    const s = new TapStore();
    for (const [t, id] of [
      ['learnflow.interaction.received', 'abc'],
      ['learnflow.triage.routed', 'abc.triage'],
      ['partner.acme.events', 'abc'],
      ['learnflow.progress.updated', 'abc.progress'],
      ['learnflow.interaction.received', 'abcd'],
    ] as const)
      s.add(msg(t, id));
    expect(s.byCeId('abc').map((e) => e.topic)).toEqual([
      'learnflow.interaction.received',
      'learnflow.triage.routed',
      'partner.acme.events',
      'learnflow.progress.updated',
    ]);
    expect(rootCeId('abc.struggle.repeated-errors')).toBe('abc');
    expect(rootCeId('abc.progress')).toBe('abc');
    expect(rootCeId('abc')).toBe('abc');
  });

  it('keeps only the newest messages and counts per topic and second over the last minute', () => {
    let now = 1_000_000;
    const s = new TapStore(100, () => now);
    for (let i = 0; i < 1200; i++) s.add(msg('a', `id-${i}`));
    expect(s.size).toBe(100);
    expect(s.recent(1000).at(-1)?.ceId).toBe('id-1199');
    expect(s.byCeId('id-0')).toEqual([]);
    now += 2000;
    s.add(msg('a', 'later'));
    const r = s.rates(60).a!;
    expect(r).toHaveLength(60);
    expect(r.at(-1)).toBe(1);
    expect(r.at(-3)).toBe(1200);
    now += 61_000;
    expect(s.rates(60).a!.every((n) => n === 0)).toBe(true);
  });

  it('orders hops by time with the time between them; received is when ingest stamped it', () => {
    const received: Seen = msg(
      'learnflow.interaction.received',
      'abc',
      { 'ce-time': new Date(Date.UTC(2025, 0, 1, 10, 0, 0, 0)).toISOString() },
      { kind: 'quiz_answer', topic: 'python.loops' },
      40,
    );
    const routed = msg('learnflow.triage.routed', 'abc.triage', {}, { agent: 'concepts' }, 100);
    const t = timeline([hopOf(routed), hopOf(received), { hop: 'ledger', at: '2025-01-01T10:00:00.250Z' }]);
    expect(t.map((h) => [h.hop, h.sinceStartMs, h.sincePrevMs])).toEqual([
      ['received', 0, 0],
      ['triage', 100, 100],
      ['ledger', 250, 150],
    ]);
    expect(t[1]!.detail).toBe('routed to agent concepts');
    expect(hopOf(msg('partner.acme.events', 'abc')).hop).toBe('partner copy');
  });
});
