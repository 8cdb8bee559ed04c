import { describe, expect, it } from 'vitest';
import { awaitProgress, ceilingRows, ceilingVerdict, cpuComparison, progressFigures } from './ceiling-run.ts';
import { EventFactory } from './load.ts';
import { realistic, worstCase } from './workload.ts';

const figures = (throughput: number, p99: number) => ({
  accepted: 100,
  completed: 100,
  throughput,
  latency: { n: 100, p50: p99 / 2, p99, max: p99 },
});

describe('bus ceiling figures', () => {
  it('compares CPU per accepted event process by process, largest difference first; a missing process counts 0', () => {
    const rows = cpuComparison(
      {
        cpu: { 'fn:updateProgress': 0.8, 'Pub/Sub emulator': 4, 'Firestore emulator': 1, skipped: 9 },
        accepted: 200,
      },
      { cpu: { 'fn:updateProgress': 0.1, 'Pub/Sub emulator': 3.2, 'fn:extra': 0.05 }, accepted: 160 },
      (p) => p === 'skipped',
    );
    expect(rows.map((r) => r.process)).toEqual([
      'Firestore emulator', // 5 − 0 ms
      'fn:updateProgress', // 4 − 0.625 ms
      'Pub/Sub emulator', // 20 − 20 ms
      'fn:extra', // 0 − 0.3125 ms
    ]);
    expect(rows[0]).toEqual({ process: 'Firestore emulator', real: 5, ceiling: 0 });
    expect(rows[1]!.real).toBeCloseTo(4);
    expect(rows[1]!.ceiling).toBeCloseTo(0.625);
    expect(rows[2]).toEqual({ process: 'Pub/Sub emulator', real: 20, ceiling: 20 });
    expect(rows[3]).toEqual({ process: 'fn:extra', real: 0, ceiling: 0.3125 });
    expect(cpuComparison({ cpu: { a: 1 }, accepted: 0 }, { cpu: { a: 1 }, accepted: 1 })[0]!.real).toBeNaN();
  });

  it('throughput counts the events whose progress arrived, from the first request to the last arrival', () => {
    const t202 = new Map([
      ['a', 1_100],
      ['b', 1_200],
      ['c', 1_300],
    ]);
    const arrivals = new Map([
      ['a', 1_150],
      ['b', 3_000],
      ['x', 9_000], // not one of ours
    ]);
    const f = progressFigures(t202, arrivals, 1_000);
    expect(f.accepted).toBe(3);
    expect(f.completed).toBe(2);
    expect(f.throughput).toBeCloseTo(2 / 2); // 2 events over 1.0 → 3.0 s
    expect(f.latency).toMatchObject({ n: 2, p50: 50, p99: 1_800, max: 1_800 });
    expect(progressFigures(t202, new Map(), 1_000).throughput).toBeNaN();
  });

  it('pairs runs by workload and rate, and the verdict needs every row within both bounds', () => {
    const real = [
      { workload: 'worst' as const, rate: 20, figures: figures(19, 300) },
      { workload: 'worst' as const, rate: 200, figures: figures(40, 1_400) },
      { workload: 'realistic' as const, rate: 20, figures: figures(19, 200) },
    ];
    const ceiling = [
      { workload: 'worst' as const, rate: 20, figures: figures(20, 200) },
      { workload: 'worst' as const, rate: 200, figures: figures(50, 1_000) },
    ];
    const rows = ceilingRows(real, ceiling);
    expect(rows.map((r) => [r.workload, r.rate, r.throughputRatio, r.p99Ratio])).toEqual([
      ['worst', 20, 0.95, 1.5],
      ['worst', 200, 0.8, 1.4],
    ]);
    expect(ceilingVerdict(rows)).toEqual({ minThroughput: 0.8, maxP99: 1.5, met: true });
    const slow = ceilingRows([{ ...real[1]!, figures: figures(39, 1_000) }], ceiling);
    expect(ceilingVerdict(slow).met).toBe(false);
    const late = ceilingRows([{ ...real[0]!, figures: figures(20, 301) }], ceiling);
    expect(ceilingVerdict(late).met).toBe(false);
    const missing = ceilingRows([{ ...real[0]!, figures: figures(Number.NaN, 100) }], ceiling);
    expect(ceilingVerdict(missing).met).toBe(false);
    expect(ceilingVerdict([]).met).toBe(false);
  });

  it('waits for every progress event in the worst case, and for quiet otherwise', async () => {
    const received = new Map<string, number>();
    setTimeout(() => received.set('a', 1), 300);
    const t0 = Date.now();
    await awaitProgress(received, ['a'], { expectAll: true, timeoutMs: 5_000 });
    expect(received.has('a')).toBe(true);
    expect(Date.now() - t0).toBeLessThan(4_000);
    const q0 = Date.now();
    await awaitProgress(new Map(), ['a'], { expectAll: false, timeoutMs: 5_000, quietMs: 500 });
    expect(Date.now() - q0).toBeGreaterThanOrEqual(500);
    expect(Date.now() - q0).toBeLessThan(4_000);
  });
});

describe('workloads', () => {
  const instances = Array.from({ length: 8 }, (_, i) => ({ id: `i${i}`, token: `t${i}` }));

  it('worst case: every event a new learner', () => {
    const next = worstCase(new EventFactory('r', 10), instances, 'w');
    const students = Array.from({ length: 50 }, () => next().event.studentId);
    expect(new Set(students).size).toBe(50);
  });

  it('realistic: sessions of mixed kinds on one topic, from 2,000 learners over the instances', () => {
    let seed = 1;
    const random = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const next = realistic(new EventFactory('r', 10), instances, 'r', { active: 4, random });
    const sent = Array.from({ length: 4000 }, () => next());
    const byStudent = new Map<string, typeof sent>();
    for (const s of sent) byStudent.set(s.event.studentId, [...(byStudent.get(s.event.studentId) ?? []), s]);
    expect(byStudent.size).toBeGreaterThan(100);
    expect(byStudent.size).toBeLessThanOrEqual(2000);
    // a session: starts with session start, one topic, mixed kinds, ends with session end
    const first = sent.filter((s) => s.event.studentId === sent[0]!.event.studentId);
    expect(first[0]!.event).toMatchObject({ kind: 'session', payload: { action: 'start' } });
    const end = first.findIndex((s) => (s.event.payload as { action?: string }).action === 'end');
    expect(end).toBeGreaterThanOrEqual(4);
    expect(end).toBeLessThanOrEqual(9);
    expect(new Set(first.slice(0, end + 1).map((s) => s.event.topic)).size).toBe(1);
    expect(new Set(first.slice(1, end).map((s) => s.event.kind)).size).toBeGreaterThan(1);
    // a learner always posts with its own instance's token
    for (const s of sent) expect(s.event.instanceId).toBe(instances.find((i) => i.token === s.token)!.id);
    expect(new Set(sent.map((s) => s.event.id)).size).toBe(sent.length);
  });
});
