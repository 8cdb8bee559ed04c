/** The soak's workload and verdicts (bench/run.ts `runSoak` drives it; issue 14). */

export interface SoakResult {
  events: number;
  learners: number;
  rate: number;
  tenths: Array<{
    accepted: number;
    /** offered and answered 202 per second in this tenth */
    eventsPerSec: number;
    /** interactions the pipeline applied (ledger rows) per second during this tenth */
    appliedPerSec: number;
    /** accepted so far minus applied so far, at the end of the tenth */
    backlog: number;
    emulatorThreads: number;
    emulatorRssMiB: number;
    /** the emulator's heap in use right after a full collection (jcmd GC.run, GC.heap_info): its live set;
     * NaN when jcmd is missing */
    emulatorLiveHeapMiB: number;
    workerRssMiB: Record<string, number>;
  }>;
  /** subscriptions without a function (memory service, agents, audit, backend) drained as their consumers would */
  drained: number;
}

/**
 * The soak's workload: `events` interactions of `events / 2` learners, two each, as slots. Even slots are a
 * learner's first event, odd slots the second event of the learner whose first came `lag` learners earlier
 * (wrapping round at the start), so every tenth has the same mix: half new learners, half returning ones.
 */
export function soakSlot(i: number, learners: number, lag: number): { learner: number; second: boolean } {
  const j = Math.floor(i / 2) % learners;
  if (i % 2 === 0) return { learner: j, second: false };
  return { learner: (j - lag + learners) % learners, second: true };
}

/** The soak's verdicts: interactions applied per second in the last tenth ≥ 0.8 × the first; the emulator's
 * threads, RSS and live heap (when measured) and every worker's RSS at the end ≤ 1.2 × after the first
 * tenth (warm-up). */
export function soakVerdict(s: SoakResult) {
  const first = s.tenths[0]!;
  const last = s.tenths[s.tenths.length - 1]!;
  const throughput = last.appliedPerSec / first.appliedPerSec;
  const threads = last.emulatorThreads / first.emulatorThreads;
  const emulatorRss = last.emulatorRssMiB / first.emulatorRssMiB;
  const liveHeap = last.emulatorLiveHeapMiB / first.emulatorLiveHeapMiB;
  const workerGrowth = Object.entries(last.workerRssMiB).map(
    ([name, m]) => [name, m / (first.workerRssMiB[name] ?? Number.NaN)] as const,
  );
  const worstWorker = workerGrowth.reduce((a, b) => (b[1] > a[1] ? b : a), ['-', 0] as readonly [
    string,
    number,
  ]);
  const holds =
    throughput >= 0.8 &&
    threads <= 1.2 &&
    emulatorRss <= 1.2 &&
    (Number.isNaN(liveHeap) || liveHeap <= 1.2) &&
    worstWorker[1] <= 1.2;
  return { throughput, threads, emulatorRss, liveHeap, worstWorker, holds };
}
