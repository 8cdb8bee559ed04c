/**
 * The bus ceiling of issue 14, measured: the end-to-end workload of bench/run.ts run again against a suite
 * whose functions are the no-op publishers of bench/ceiling.ts, and compared with the real pipeline on
 * the same signal — a progress event's arrival on a tap subscription of `learnflow.progress.updated`.
 * Also the measuring helpers both runs share (taps, distributions, waiting, the warm-up).
 */
import { randomBytes } from 'node:crypto';
import type { Message, PubSub } from '@google-cloud/pubsub';
import { type EventFactory, type Instance, type ShotResult, shoot } from './load.ts';
import type { Sent, WorkloadName } from './workload.ts';

export const quantile = (sorted: number[], q: number) =>
  sorted.length
    ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
    : Number.NaN;

export interface Dist {
  n: number;
  p50: number;
  p99: number;
  max: number;
}
export const dist = (values: number[]): Dist => {
  const s = [...values].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: quantile(s, 0.5),
    p99: quantile(s, 0.99),
    max: s.length ? s[s.length - 1]! : Number.NaN,
  };
};

export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A fresh subscription on a topic: when each event (by `idOf`) was first published there, ms since epoch. */
export async function tap(pubsub: PubSub, topic: string, idOf: (m: Message) => string | undefined) {
  const name = `bench.tap.${randomBytes(6).toString('hex')}`;
  const [sub] = await pubsub.topic(topic).createSubscription(name);
  const received = new Map<string, number>();
  sub.on('message', (m: Message) => {
    try {
      const id = idOf(m);
      if (id && !received.has(id)) received.set(id, Number(m.publishTime.getFullTime()) / 1e6);
    } catch {}
    m.ack();
  });
  sub.on('error', () => {});
  return {
    received,
    close: async () => {
      await sub.close().catch(() => {});
      await sub.delete().catch(() => {});
    },
  };
}

/** The progress events on their topic, by the interaction they announce (its client id, as in the 202). */
export const progressTap = (pubsub: PubSub) =>
  tap(
    pubsub,
    'learnflow.progress.updated',
    (m) => (JSON.parse(m.data.toString()) as { interactionId?: string }).interactionId,
  );

/**
 * Waits for the progress events of `ids`: all of them when every event must announce progress (the worst
 * case: each event is its learner's first), otherwise until none has arrived for `quietMs` (only
 * interactions that change mastery or level announce progress) — at most `timeoutMs`.
 */
export async function awaitProgress(
  received: Map<string, number>,
  ids: string[],
  opts: { expectAll: boolean; timeoutMs: number; quietMs?: number },
) {
  const quiet = opts.quietMs ?? 3000;
  let last = received.size;
  let lastChange = Date.now();
  await waitUntil(
    async () => {
      if (opts.expectAll) return ids.every((id) => received.has(id));
      if (received.size !== last) {
        last = received.size;
        lastChange = Date.now();
      }
      return Date.now() - lastChange >= quiet;
    },
    opts.timeoutMs,
    'progress events',
  ).catch(() => {});
}

export interface ProgressFigures {
  accepted: number;
  /** accepted events whose progress event arrived */
  completed: number;
  /** completed / (last arrival − first request), events/s */
  throughput: number;
  /** 202 → progress event published, ms */
  latency: Dist;
}

/**
 * Sustained throughput and latency on the progress signal: the events whose progress event arrived,
 * per second from the first request to the last arrival; 202 → arrival for each of them.
 */
export function progressFigures(
  t202: ReadonlyMap<string, number>,
  arrivals: ReadonlyMap<string, number>,
  firstRequestAt: number,
): ProgressFigures {
  const lat: number[] = [];
  let lastAt = Number.NaN;
  for (const [id, at] of t202) {
    const p = arrivals.get(id);
    if (p === undefined) continue;
    lat.push(p - at);
    if (!(p <= lastAt)) lastAt = p;
  }
  const span = (lastAt - firstRequestAt) / 1000;
  return {
    accepted: t202.size,
    completed: lat.length,
    throughput: lat.length && span > 0 ? lat.length / span : Number.NaN,
    latency: dist(lat),
  };
}

/** An unreported run through the pipeline before each measurement (JIT, pools, the new emulator). */
export async function warmUp(
  ingestUrl: string,
  instances: Instance[],
  factory: EventFactory,
  tag: string,
  scale: number,
) {
  let w = 0;
  await shoot({
    target: 'ingest',
    url: ingestUrl,
    batch: 1,
    seconds: Math.max(2, Math.round(4 * scale)),
    connections: 8,
    rate: 20,
    events: () => {
      const inst = instances[w % instances.length]!;
      return { token: inst.token, events: [factory.event(inst.id, `warm-${tag}-${(w++).toString(36)}`, w)] };
    },
  });
}

/** The measured shot of an end-to-end run: single events at `rate`, the same for the pipeline and the ceiling. */
export async function e2eShot(
  ingestUrl: string,
  run: { rate: number; seconds: number },
  next: () => Sent,
  onSent?: (s: Sent) => void,
) {
  const t202 = new Map<string, number>();
  const firstRequestAt = Date.now();
  const shot: ShotResult = await shoot({
    target: 'ingest',
    url: ingestUrl,
    batch: 1,
    seconds: run.seconds,
    connections: 32,
    rate: run.rate,
    events: () => {
      const s = next();
      onSent?.(s);
      return { token: s.token, events: [s.event] };
    },
    onAccepted: (body, at) => {
      const id = /"id":"([^"]+)"/.exec(body)?.[1];
      if (id) t202.set(id, at);
    },
  });
  return { shot, t202, firstRequestAt };
}

export interface CeilingRun {
  workload: WorkloadName;
  rate: number;
  figures: ProgressFigures;
  /** CPU seconds per process of the ceiling's suite, from the first request until the progress events arrived */
  cpu?: Record<string, number>;
}

/**
 * The ceiling's end-to-end runs: for each workload and rate, a fresh emulator, the warm-up, then the
 * workload's events at the rate with a tap on the progress topic, until every progress event arrived
 * (worst case) or none for 3 s (realistic), at most 30 s after the last request.
 */
export async function runCeiling(opts: {
  ingestUrl: string;
  pubsub: PubSub;
  fresh: () => Promise<unknown>;
  runs: Array<{ workload: WorkloadName; rate: number; seconds: number; next: () => Sent }>;
  instances: Instance[];
  factory: EventFactory;
  runId: string;
  scale: number;
  onRun?: (r: { workload: WorkloadName; rate: number }) => void;
  /** starts a CPU reading of the suite's processes; what it returns ends it (CPU seconds per process) */
  cpu?: () => () => Record<string, number>;
  say: (line: string) => void;
}): Promise<CeilingRun[]> {
  const out: CeilingRun[] = [];
  for (const run of opts.runs) {
    opts.onRun?.(run);
    await opts.fresh();
    await warmUp(opts.ingestUrl, opts.instances, opts.factory, `${opts.runId}-c${run.rate}`, opts.scale);
    const progress = await progressTap(opts.pubsub);
    const cpuEnd = opts.cpu?.();
    const { shot, t202, firstRequestAt } = await e2eShot(opts.ingestUrl, run, run.next);
    if (!t202.size)
      opts.say(
        `ceiling ${run.workload} at ${run.rate}/s: nothing accepted; statuses ${JSON.stringify(shot.statuses)}, ${shot.errors} socket errors`,
      );
    await awaitProgress(progress.received, [...t202.keys()], {
      expectAll: run.workload === 'worst',
      timeoutMs: 30_000,
    });
    const cpu = cpuEnd?.();
    await progress.close();
    const figures = progressFigures(t202, progress.received, firstRequestAt);
    out.push({ workload: run.workload, rate: run.rate, figures, ...(cpu ? { cpu } : {}) });
    opts.say(
      `ceiling ${run.workload} at ${run.rate}/s: ${figures.accepted} accepted, ${figures.completed} progress events, ${figures.throughput.toFixed(1)} events/s; 202 → progress p50 ${figures.latency.p50.toFixed(1)} ms, p99 ${figures.latency.p99.toFixed(1)} ms`,
    );
  }
  return out;
}

export interface CeilingRow {
  workload: WorkloadName;
  rate: number;
  real: ProgressFigures;
  ceiling: ProgressFigures;
  /** real / ceiling sustained throughput */
  throughputRatio: number;
  /** real / ceiling p99 202 → progress */
  p99Ratio: number;
}

/** Pairs each real run with the ceiling's at the same workload and offered rate. */
export function ceilingRows(
  real: Array<{ workload: WorkloadName; rate: number; figures: ProgressFigures }>,
  ceiling: CeilingRun[],
): CeilingRow[] {
  return real.flatMap((r) => {
    const c = ceiling.find((x) => x.workload === r.workload && x.rate === r.rate);
    if (!c) return [];
    return [
      {
        workload: r.workload,
        rate: r.rate,
        real: r.figures,
        ceiling: c.figures,
        throughputRatio: r.figures.throughput / c.figures.throughput,
        p99Ratio: r.figures.latency.p99 / c.figures.latency.p99,
      },
    ];
  });
}

/**
 * The target: at every measured workload and offered rate, sustained throughput ≥ 0.8 × the ceiling's
 * and p99 202 → progress ≤ 1.5 × the ceiling's. Not met when nothing was measured or a figure is missing.
 */
export function ceilingVerdict(rows: CeilingRow[]) {
  const minThroughput = Math.min(...rows.map((r) => r.throughputRatio));
  const maxP99 = Math.max(...rows.map((r) => r.p99Ratio));
  const met =
    rows.length > 0 &&
    rows.every((r) => Number.isFinite(r.throughputRatio) && Number.isFinite(r.p99Ratio)) &&
    minThroughput >= 0.8 &&
    maxP99 <= 1.5;
  return { minThroughput, maxP99, met };
}

export interface CpuComparisonRow {
  process: string;
  /** CPU ms per accepted event */
  real: number;
  ceiling: number;
}

/**
 * Where the real pipeline's CPU per event goes beyond the ceiling's, process by process, for one run
 * (the same workload and offered rate): CPU seconds over each side's accepted events; a process one side
 * does not have counts 0 there. Sorted by the difference, largest first.
 */
export function cpuComparison(
  real: { cpu: Record<string, number>; accepted: number },
  ceiling: { cpu: Record<string, number>; accepted: number },
  skip: (process: string) => boolean = () => false,
): CpuComparisonRow[] {
  const names = [...new Set([...Object.keys(real.cpu), ...Object.keys(ceiling.cpu)])].filter((n) => !skip(n));
  const per = (side: { cpu: Record<string, number>; accepted: number }, n: string) =>
    side.accepted > 0 ? (1000 * (side.cpu[n] ?? 0)) / side.accepted : Number.NaN;
  return names
    .map((n) => ({ process: n, real: per(real, n), ceiling: per(ceiling, n) }))
    .sort((a, b) => b.real - b.ceiling - (a.real - a.ceiling));
}
