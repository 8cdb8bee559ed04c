import { describe, expect, it } from 'vitest';
import { type SoakResult, soakSlot, soakVerdict } from './soak.ts';

describe('soak workload', () => {
  it('gives every learner exactly two events and every tenth the same mix of new and returning learners', () => {
    const learners = 2000;
    const events = 2 * learners;
    const seen = new Map<number, number>();
    for (let i = 0; i < events; i++) {
      const { learner } = soakSlot(i, learners, 100);
      seen.set(learner, (seen.get(learner) ?? 0) + 1);
    }
    expect(seen.size).toBe(learners);
    expect([...seen.values()].every((n) => n === 2)).toBe(true);
    for (let k = 0; k < 10; k++) {
      const slots = Array.from({ length: events / 10 }, (_, j) =>
        soakSlot(k * (events / 10) + j, learners, 100),
      );
      expect(slots.filter((x) => !x.second)).toHaveLength(events / 20);
    }
  });
});

const tenth = (
  appliedPerSec: number,
  threads: number,
  rss: number,
  worker: number,
  liveHeap = 80,
): SoakResult['tenths'][0] => ({
  accepted: 100,
  eventsPerSec: 40,
  appliedPerSec,
  backlog: 0,
  emulatorThreads: threads,
  emulatorRssMiB: rss,
  emulatorLiveHeapMiB: liveHeap,
  workerRssMiB: { updateProgress: worker },
});

describe('soak verdict', () => {
  const run = (last: SoakResult['tenths'][0]): SoakResult => ({
    events: 1000,
    learners: 500,
    rate: 40,
    drained: 0,
    tenths: [tenth(40, 1000, 300, 100), ...Array(8).fill(tenth(40, 1000, 300, 100)), last],
  });
  it('holds when the last tenth keeps up and nothing grew more than 1.2×', () => {
    expect(soakVerdict(run(tenth(33, 1190, 350, 119, 95))).holds).toBe(true);
  });
  it('judges the live heap only where it was measured', () => {
    expect(soakVerdict(run(tenth(40, 1000, 300, 100, Number.NaN))).holds).toBe(true);
  });
  it.each([
    ['applied/s fell below 0.8×', tenth(31, 1000, 300, 100)],
    ['the emulator’s threads grew', tenth(40, 1300, 300, 100)],
    ['the emulator’s memory grew', tenth(40, 1000, 370, 100)],
    ['a worker’s RSS grew', tenth(40, 1000, 300, 130)],
    ['the emulator’s live heap grew', tenth(40, 1000, 300, 100, 100)],
  ])('fails when %s', (_, last) => {
    expect(soakVerdict(run(last)).holds).toBe(false);
  });
});
