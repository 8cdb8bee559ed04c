/**
 * `npm run bench`: throughput, latency and CPU cost of the room's front door and pipeline on this machine,
 * against a bare Functions Framework baseline measured in the same run. Writes BENCHMARKS.md and
 * bench/latency.svg. See BENCHMARKS.md ("How it is measured") for the method.
 *
 * Environment (all optional):
 *   LDR_BENCH_URL       base URL of a running suite's functions port (e.g. http://127.0.0.1:5001) instead
 *                       of starting one; its emulators are then expected on the ports of firebase.json or
 *                       PUBSUB_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST / DATABASE_URL
 *   LDR_BENCH_DATA_DIR  data dir of that suite (its dev identity signs the tokens), default .ldr
 *   LDR_BENCH_SCALE     multiplies every run's duration (default 1; 0.3 for a smoke run)
 *   LDR_BENCH_OUT       where to write the report (default BENCHMARKS.md beside package.json)
 *   LDR_BENCH_SOAK_EVENTS  events of the soak (default 40,000; two per learner)
 *   LDR_BENCH_SOAK_RATE    offered events/s of the soak (default 22: what the pipeline sustains on 2 cores)
 *   LDR_BENCH_WORKLOADS    end-to-end workloads, comma-separated: worst, realistic (default both)
 *   LDR_BENCH_CEILING      0 skips the bus ceiling (a second suite running bench/ceiling.ts); default on
 * Flags: `--soak` adds the soak (npm run bench -- --soak); it is not in the default run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Firestore } from '@google-cloud/firestore';
import { type Message, PubSub } from '@google-cloud/pubsub';
import cliProgress from 'cli-progress';
import { build } from 'esbuild';
import pg from 'pg';
import { ensureIdentity, mintToken } from '../emulators/identity.ts';
import { freePort, portOpen } from '../emulators/procs.ts';
import { upsertPartner } from '../emulators/registry.ts';
import { defaultPorts, frameworkArgs } from '../emulators/suite.ts';
import { buildArtifact } from '../scripts/build.ts';
import { clientEventId } from '../shared/events.ts';
import { loadTopology } from '../shared/topology.ts';
import {
  awaitProgress,
  type CeilingRow,
  type CeilingRun,
  ceilingRows,
  ceilingVerdict,
  cpuComparison,
  type Dist,
  dist,
  e2eShot,
  type ProgressFigures,
  progressFigures,
  progressTap,
  runCeiling,
  tap,
  waitUntil,
  warmUp,
} from './ceiling-run.ts';
import { writeChart } from './chart.ts';
import { costPerMillion, loadPrices, loadStartCost, type OpsPerEvent } from './cost.ts';
import { type Counts, type CountsSnapshot, countsDelta, emptyCounts } from './counting-proxy.ts';
import { EventFactory, type Instance, type ShotResult, shoot } from './load.ts';
import {
  allProcesses,
  cpuIdle,
  groupCpuSeconds,
  jvmLiveHeapMiB,
  killLeftovers,
  machineBusySeconds,
  type ProcStat,
  procStat,
  rssMiB,
  suitePids,
} from './proc.ts';
import { type SoakResult, soakSlot, soakVerdict } from './soak.ts';
import type { SuiteReady } from './suite-process.ts';
import { type Sent, WORKLOADS, type WorkloadName, workload } from './workload.ts';

const root = new URL('..', import.meta.url).pathname;

// ------------------------------------------------------------------------------------------------
// Configuration: a pure function of the environment
// ------------------------------------------------------------------------------------------------

export interface BenchConfig {
  externalUrl?: string;
  externalDataDir: string;
  scale: number;
  out: string;
  instances: number;
  studentsPerInstance: number;
  /** connections per batch size for the closed-loop runs: at most ~400 events in flight, so no publish waits
   * out its 10 s deadline (a cancelled RPC is what sends the Pub/Sub emulator into its failure spiral) */
  connections: Record<number, number>;
  e2e: Array<{ rate: number; seconds: number }>;
  /** the end-to-end workloads (bench/workload.ts), each at every rate of `e2e` */
  workloads: WorkloadName[];
  /** run the same end-to-end workloads against the bus ceiling (only in a suite of the bench's own) */
  ceiling: boolean;
  soak?: { events: number; rate: number };
  sweepRates: number[];
  sweepSeconds: number;
  throughputSeconds: number;
  /**
   * requests per closed-loop throughput run, per batch size: a fixed number, every answer counted, so no
   * request is cut at the end of a window with its CPU counted and its events not (which weighed most on
   * the shape with the fewest, slowest requests: batches of 100)
   */
  throughputRequests: Record<number, number>;
  shapes: number[];
}

export function parseBenchConfig(env: Record<string, string | undefined>): BenchConfig {
  const problems: string[] = [];
  const scale = env.LDR_BENCH_SCALE === undefined ? 1 : Number(env.LDR_BENCH_SCALE);
  if (!(scale > 0 && scale <= 10))
    problems.push(`LDR_BENCH_SCALE must be a number in (0, 10], got ${env.LDR_BENCH_SCALE}`);
  const externalUrl = env.LDR_BENCH_URL?.replace(/\/+$/, '');
  if (externalUrl !== undefined) {
    try {
      const u = new URL(externalUrl);
      if (u.hostname !== '127.0.0.1' && u.hostname !== 'localhost')
        problems.push('LDR_BENCH_URL must point at 127.0.0.1');
    } catch {
      problems.push(`LDR_BENCH_URL is not a URL: ${externalUrl}`);
    }
  }
  const workloads = (env.LDR_BENCH_WORKLOADS ?? 'worst,realistic')
    .split(',')
    .map((w) => w.trim())
    .filter(Boolean);
  for (const w of workloads)
    if (!(w in WORKLOADS)) problems.push(`LDR_BENCH_WORKLOADS: unknown workload ${w} (worst, realistic)`);
  if (problems.length) throw new Error(`invalid bench configuration: ${problems.join('; ')}`);
  const s = (x: number) => Math.max(2, Math.round(x * scale));
  return {
    externalUrl,
    externalDataDir: env.LDR_BENCH_DATA_DIR ?? join(root, '.ldr'),
    scale,
    out: env.LDR_BENCH_OUT ?? join(root, 'BENCHMARKS.md'),
    instances: 8,
    studentsPerInstance: 500,
    connections: { 1: 32, 10: 16, 100: 4 },
    e2e: [
      { rate: 20, seconds: s(8) },
      { rate: 50, seconds: s(8) },
      { rate: 200, seconds: s(12) },
    ],
    workloads: workloads as WorkloadName[],
    ceiling: env.LDR_BENCH_CEILING !== '0' && !externalUrl,
    sweepRates: [25, 50, 100, 200, 400],
    sweepSeconds: s(3),
    throughputSeconds: s(6),
    throughputRequests: Object.fromEntries(
      Object.entries({ 1: 1800, 10: 240, 100: 48 }).map(([b, n]) => [b, Math.max(32, Math.round(n * scale))]),
    ),
    shapes: [1, 10, 100],
    ...(env.LDR_BENCH_SOAK
      ? {
          soak: {
            events: Number(env.LDR_BENCH_SOAK_EVENTS ?? 40_000),
            rate: Number(env.LDR_BENCH_SOAK_RATE ?? 22),
          },
        }
      : {}),
  };
}

// ------------------------------------------------------------------------------------------------
// Child processes: the suite (unless one is given) and the baseline
// ------------------------------------------------------------------------------------------------

interface Child<T> {
  child: ChildProcess;
  ready: T;
  stop(graceMs?: number): Promise<void>;
}

function spawnReady<T>(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  log: string[],
): Promise<Child<T>> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL(script, import.meta.url).pathname, ...args],
    {
      env,
      cwd: root,
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let stopping = false;
  const exited = new Promise<void>((r) =>
    child.once('exit', (code, signal) => {
      // a suite or helper that goes away in the middle of a run says so, with its last words
      if (!stopping)
        console.error(`\n${script} exited (${signal ?? code}) during the run:\n${log.slice(-30).join('\n')}`);
      r();
    }),
  );
  child.stderr!.on('data', (d: Buffer) => {
    log.push(...d.toString().split('\n').filter(Boolean));
    if (log.length > 400) log.splice(0, log.length - 400);
  });
  const stop = async (graceMs = 20_000) => {
    stopping = true;
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killed = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(killed);
  };
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      void stop();
      reject(
        new Error(`${script} did not become ready in ${timeoutMs / 1000} s:\n${log.slice(-20).join('\n')}`),
      );
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const msg = JSON.parse(line) as { ready?: T };
          if (msg.ready) {
            clearTimeout(timer);
            resolve({ child, ready: msg.ready, stop });
          }
        } catch {}
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited with ${code}:\n${log.slice(-20).join('\n')}`));
    });
  });
}

interface Target {
  functionsBase: string;
  /** the suite's bearer token for /_ldr/* */
  adminToken?: string;
  dataDir: string;
  projectId: string;
  pubsubHost: string;
  /** where the baseline publishes: through the same kind of counting-proxy hop as the functions, when ours */
  baselinePubsubHost?: string;
  firestoreHost: string;
  databaseUrl: string;
  /** pid of the process that runs the front door, the bridge and the Upstash REST endpoint, when ours */
  suitePid?: number;
  /** the Upstash REST endpoint (its GET /_stats counts round trips and commands) */
  restUrl?: string;
  /** the counting proxies in front of the functions' Pub/Sub, Firestore and PostgreSQL (bench/counting-proxy.ts) */
  countsUrl?: string;
  restToken?: string;
  owned: boolean;
  stop(): Promise<void>;
}

const admin = (t: Target) => ({ headers: { authorization: `Bearer ${t.adminToken ?? ''}` } });

export const BENCH_FUNCTION_CONFIG = {
  RATE_INSTANCE_EVENTS_PER_MIN: '100000000',
  RATE_STUDENT_PER_MIN: '100000000',
  RATE_STUDENT_EVENTS_PER_MIN: '100000000',
};

type RestStats = {
  requests: number;
  commands: number;
  byCommand: Record<string, number>;
  /** as Upstash bills: scripts' inner commands included (null when the endpoint cannot tell) */
  billed?: number | null;
};
/** The Upstash REST endpoint's counters (round trips, commands); undefined when it does not count. */
async function restStats(t: Target): Promise<RestStats | undefined> {
  if (!t.restUrl) return undefined;
  try {
    const res = await fetch(`${t.restUrl}/_stats`, {
      headers: { authorization: `Bearer ${t.restToken ?? ''}` },
    });
    return res.ok ? ((await res.json()) as RestStats) : undefined;
  } catch {
    return undefined;
  }
}
const restDelta = (a?: RestStats, b?: RestStats) =>
  a && b
    ? {
        requests: b.requests - a.requests,
        commands: b.commands - a.commands,
        // every admission reads with exactly one MGET (shared/redis-ports.ts redisAdmission)
        admissions: (b.byCommand.mget ?? 0) - (a.byCommand.mget ?? 0),
        billed:
          typeof a.billed === 'number' && typeof b.billed === 'number' ? b.billed - a.billed : undefined,
      }
    : undefined;

/** What the functions sent through the counting proxies (per function and in all); undefined when not ours. */
async function countStats(t: Target): Promise<CountsSnapshot | undefined> {
  if (!t.countsUrl) return undefined;
  try {
    const res = await fetch(t.countsUrl);
    return res.ok ? ((await res.json()) as CountsSnapshot) : undefined;
  } catch {
    return undefined;
  }
}
const countsWindow = (a?: CountsSnapshot, b?: CountsSnapshot): CountsSnapshot | undefined =>
  a && b
    ? {
        total: countsDelta(a.total, b.total),
        byLabel: Object.fromEntries(
          Object.entries(b.byLabel).map(([fn, c]) => [fn, countsDelta(a.byLabel[fn] ?? emptyCounts(), c)]),
        ),
      }
    : undefined;

/** A partner entitled to the interactions of the given instances, in a suite of our own; the HTTP status. */
async function provisionPartner(t: Target, slug: string, instances: Instance[]) {
  upsertPartner(t.dataDir, {
    slug,
    displayName: 'Bench partner',
    instances: instances.map((i) => i.id),
    eventTypes: ['learnflow.interaction.v1'],
  });
  const res = await fetch(`${t.functionsBase}/_ldr/registry/apply`, { method: 'POST', ...admin(t) });
  return res.status;
}

/** One esbuild bundle of a bench entry point, as scripts/build.ts bundles the functions. */
async function bundle(entry: string, name: string) {
  const outfile = join(root, '.ldr', 'bench', name);
  await build({
    absWorkingDir: root,
    entryPoints: [join(root, 'bench', entry)],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    packages: 'external',
    logLevel: 'error',
  });
  return outfile;
}

/**
 * The baselines (bench/baseline.ts) served as the functions are: one esbuild bundle, each target in its own
 * Functions Framework CLI process with only the variables it needs.
 */
async function startFramework(
  target: 'baseline' | 'noop',
  env: Record<string, string>,
  log: string[],
): Promise<Child<{ port: number }>> {
  const source = await bundle('baseline.ts', 'baseline.mjs');
  const port = await freePort();
  const child = spawn(process.execPath, frameworkArgs(target, port, source), {
    cwd: root,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      FUNCTION_TARGET: target,
      LISTEN_HOST: '127.0.0.1',
      NODE_ENV: 'production',
      METADATA_SERVER_DETECTION: 'none',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr!.on('data', (d: Buffer) => log.push(...d.toString().split('\n').filter(Boolean)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (graceMs = 5_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killed = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(killed);
  };
  await waitUntil(() => portOpen(port), 60_000, `the ${target} process on port ${port}`);
  return { child, ready: { port }, stop };
}

/** The suite under test: a running one (LDR_BENCH_URL), or one of our own running `functionSource`
 * (a bundle such as the bus ceiling's) instead of the built functions when given. */
async function startTarget(cfg: BenchConfig, log: string[], functionSource?: string): Promise<Target> {
  if (cfg.externalUrl && !functionSource) {
    // a running suite describes itself in <dataDir>/suite.json; the ports of firebase.json otherwise
    const file = join(cfg.externalDataDir, 'suite.json');
    const described = existsSync(file)
      ? (JSON.parse(readFileSync(file, 'utf8')) as { env?: Record<string, string>; projectId?: string })
      : {};
    const p = defaultPorts();
    return {
      functionsBase: cfg.externalUrl,
      adminToken: described.env?.LDR_ADMIN_TOKEN,
      restUrl: described.env?.UPSTASH_REDIS_REST_URL,
      restToken: described.env?.UPSTASH_REDIS_REST_TOKEN,
      dataDir: cfg.externalDataDir,
      projectId: described.projectId ?? 'demo-ldr',
      pubsubHost:
        process.env.PUBSUB_EMULATOR_HOST ?? described.env?.PUBSUB_EMULATOR_HOST ?? `127.0.0.1:${p.pubsub}`,
      firestoreHost:
        process.env.FIRESTORE_EMULATOR_HOST ??
        described.env?.FIRESTORE_EMULATOR_HOST ??
        `127.0.0.1:${p.firestore}`,
      databaseUrl:
        process.env.DATABASE_URL ??
        described.env?.DATABASE_URL ??
        `postgres://postgres@127.0.0.1:${p.postgres}/ldr`,
      owned: false,
      stop: async () => {},
    };
  }
  // the suite runs what deploys: the built artifact of this checkout
  await buildArtifact({ quiet: true });
  // Raise the app's rate limits for the bench: the suite passes them to the workers as functionConfig.
  const env = {
    ...process.env,
    LDR_BENCH_FUNCTION_CONFIG: JSON.stringify(BENCH_FUNCTION_CONFIG),
    LDR_SUITE_LOG: process.env.LDR_SUITE_LOG ?? 'error',
    METADATA_SERVER_DETECTION: 'none',
    ...(functionSource ? { LDR_BENCH_FUNCTION_SOURCE: functionSource } : {}),
  };
  const s = await spawnReady<SuiteReady>('./suite-process.ts', [], env, 180_000, log);
  return {
    functionsBase: `http://127.0.0.1:${s.ready.ports.functions}`,
    adminToken: s.ready.env.LDR_ADMIN_TOKEN,
    restUrl: s.ready.env.UPSTASH_REDIS_REST_URL,
    restToken: s.ready.env.UPSTASH_REDIS_REST_TOKEN,
    countsUrl: s.ready.countsUrl,
    dataDir: s.ready.dataDir,
    projectId: s.ready.projectId,
    pubsubHost: s.ready.env.PUBSUB_EMULATOR_HOST!,
    baselinePubsubHost: s.ready.baselinePubsubHost,
    firestoreHost: s.ready.env.FIRESTORE_EMULATOR_HOST!,
    databaseUrl: s.ready.env.DATABASE_URL!,
    suitePid: s.child.pid,
    owned: true,
    // A suite under a backlog can take long to stop (every worker gets 5 s): after 20 s what is left of it
    // (the process groups of its pid files, all started by this run) is killed and its data dir removed.
    stop: async () => {
      const before: Record<string, ProcStat> = {};
      for (const [name, pid] of Object.entries(suitePids(s.ready.dataDir))) {
        const st = procStat(pid);
        if (st) before[name] = st;
      }
      await s.stop(20_000);
      killLeftovers(before);
      rmSync(s.ready.dataDir, { recursive: true, force: true });
    },
  };
}

// ------------------------------------------------------------------------------------------------
// Measurements
// ------------------------------------------------------------------------------------------------

type Workers = Record<string, { pid: number; port: number }>;

/** CPU seconds of every piece of the suite we can see, read at one moment. */
type CpuSnapshot = Record<string, number | undefined>;

function cpuSnapshot(
  t: Target,
  workers: Workers,
  extra: Record<string, number | undefined> = {},
): CpuSnapshot {
  const snap = allProcesses();
  const out: CpuSnapshot = {};
  for (const [name, w] of Object.entries(workers)) out[`fn:${name}`] = procStat(w.pid)?.cpu;
  const pids = suitePids(t.dataDir);
  for (const [name, label] of [
    ['pubsub-emulator', 'Pub/Sub emulator'],
    ['firestore-emulator', 'Firestore emulator'],
    ['postgres', 'PostgreSQL'],
  ] as const) {
    if (pids[name]) out[label] = groupCpuSeconds(pids[name], snap);
  }
  if (pids['redis-server']) out.Redis = procStat(pids['redis-server'])?.cpu;
  if (t.suitePid) out['suite process (bridge, Upstash REST, front door)'] = procStat(t.suitePid)?.cpu;
  for (const [name, pid] of Object.entries(extra)) if (pid) out[name] = procStat(pid)?.cpu;
  const u = process.cpuUsage();
  out['load generator (autocannon)'] = (u.user + u.system) / 1e6;
  return out;
}

const cpuDelta = (a: CpuSnapshot, b: CpuSnapshot): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const k of Object.keys(b)) {
    const x = a[k];
    const y = b[k];
    if (x !== undefined && y !== undefined && y >= x) out[k] = y - x;
  }
  return out;
};

async function getWorkers(t: Target): Promise<Workers> {
  const res = await fetch(`${t.functionsBase}/_ldr/workers`, admin(t));
  if (!res.ok) throw new Error(`GET /_ldr/workers: ${res.status}`);
  return (await res.json()) as Workers;
}

const pendingStub = (fn: string) => {
  const file = join(root, 'functions', fn, 'index.ts');
  return !existsSync(file) || /registerPending(Event|Http)\s*\(/.test(readFileSync(file, 'utf8'));
};

interface E2EResult {
  workload: WorkloadName;
  rate: number;
  shot: ShotResult;
  accepted: number;
  applied: number;
  readable: number;
  drainSeconds: number;
  ledger: Dist;
  readableDist: Dist;
  /** 202 → the progress event published on its topic, and the sustained throughput on that signal */
  progress: ProgressFigures;
  triage: Dist;
  partner?: Dist;
  bridge: { delivered: number; retried: number; deadLettered: number };
  cpu: Record<string, number>;
  redis?: { requests: number; commands: number; admissions: number; billed?: number };
  /** Pub/Sub, Firestore and PostgreSQL operations of the functions in the window, counted at the proxies */
  ops?: CountsSnapshot;
  /** resident memory of each function worker at the end, MiB */
  rss: Record<string, number>;
}

const MACHINE = 'machine (every process)';
const SUITE = 'suite process (bridge, Upstash REST, front door)';
const LOADGEN = 'load generator (autocannon)';

/** Which share of the machine's CPU in a window went to processes that are not part of this run. */
export function othersShare(cpu: Record<string, number>): number {
  const machine = cpu[MACHINE];
  if (machine === undefined || machine <= 0) return Number.NaN;
  const ours = Object.entries(cpu)
    .filter(([k]) => k !== MACHINE)
    .reduce((a, [, v]) => a + v, 0);
  return Math.max(0, (machine - ours) / machine);
}

type BridgeStats = { delivered: number; retried: number; deadLettered: number };
async function bridgeStats(t: Target): Promise<BridgeStats> {
  return fetch(`${t.functionsBase}/_ldr/bridge`, admin(t))
    .then((r) => r.json() as Promise<BridgeStats>)
    .catch(() => ({ delivered: Number.NaN, retried: Number.NaN, deadLettered: Number.NaN }));
}

/**
 * Restarts the Pub/Sub emulator of a suite of our own, so a measurement starts from an empty emulator: it
 * keeps every backlog of the unconsumed subscriptions in memory and slows down as they grow (see the notes).
 * The suite re-provisions the topology and the partner registry and starts a new bridge.
 */
async function freshPubsub(t: Target) {
  if (!t.owned) return false;
  for (const action of ['stop', 'start']) {
    const res = await fetch(`${t.functionsBase}/_ldr/control/pubsub/${action}`, {
      method: 'POST',
      ...admin(t),
    });
    if (!res.ok) throw new Error(`pubsub ${action}: ${res.status} ${await res.text()}`);
  }
  return true;
}

/** The Pub/Sub emulator's live heap after a full collection, MiB (NaN without jcmd). */
const emulatorLiveHeapMiB = (t: Target) => {
  const pid = suitePids(t.dataDir)['pubsub-emulator'];
  return pid ? jvmLiveHeapMiB(pid) : Promise.resolve(Number.NaN);
};

/** The Pub/Sub emulator's own state: exceptions in its log, threads, resident memory. */
function emulatorState(t: Target) {
  const pid = suitePids(t.dataDir)['pubsub-emulator'];
  let exceptions = Number.NaN;
  try {
    exceptions = (
      readFileSync(join(t.dataDir, 'logs', 'pubsub-emulator.log'), 'utf8').match(/NoSuchMethodError/g) ?? []
    ).length;
  } catch {}
  let threads = Number.NaN;
  let rss = Number.NaN;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1]);
    rss = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1]) / 1024;
  } catch {}
  return { exceptions, threads, rss };
}

// ------------------------------------------------------------------------------------------------
// The run
// ------------------------------------------------------------------------------------------------

async function main() {
  const cfg = parseBenchConfig({
    ...process.env,
    ...(process.argv.includes('--soak') ? { LDR_BENCH_SOAK: '1' } : {}),
  });
  const startedAt = new Date();
  const loadStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const runId = randomBytes(4).toString('hex');
  const childLog: string[] = [];
  const notes: string[] = [];

  const e2ePlan = cfg.workloads.flatMap((workload) => cfg.e2e.map((e) => ({ workload, ...e })));
  // progress: one bar over the planned seconds of every phase
  const plan: Array<[string, number]> = [
    ['start the suite', cfg.externalUrl ? 2 : 30],
    ['baseline and warm-up', 16],
    ...e2ePlan.map(
      (e) => [`end-to-end, ${e.workload}, ${e.rate} events/s`, e.seconds + 15] as [string, number],
    ),
    ['latency against offered load', cfg.sweepRates.length * (2 * cfg.sweepSeconds + 4)],
    ...cfg.shapes.map(
      (b) =>
        [`throughput, ${b === 1 ? 'single events' : `batches of ${b}`}`, 2 * (cfg.throughputSeconds + 4)] as [
          string,
          number,
        ],
    ),
    ...(cfg.soak ? [['soak', cfg.soak.events / cfg.soak.rate + 30] as [string, number]] : []),
    ...(cfg.ceiling
      ? [
          ['start the bus ceiling', 40] as [string, number],
          ...e2ePlan.map(
            (e) => [`bus ceiling, ${e.workload}, ${e.rate} events/s`, e.seconds + 10] as [string, number],
          ),
        ]
      : []),
    ['stop and report', 20],
  ];
  const total = Math.round(plan.reduce((a, [, sec]) => a + sec, 0));
  const bars = new cliProgress.MultiBar(
    {
      format: ' bench |{bar}| {percentage}% | {phase} | {elapsed}s',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      noTTYOutput: true,
      notTTYSchedule: 10_000,
    },
    cliProgress.Presets.shades_classic,
  );
  const bar = bars.create(total, 0, { phase: 'starting', elapsed: 0 });
  let offset = 0;
  let phaseAt = Date.now();
  let phaseEst = 0;
  let phaseIndex = -1;
  const elapsed = () => Math.round((Date.now() - startedAt.getTime()) / 1000);
  const startPhase = () => {
    if (phaseIndex >= 0) offset += phaseEst;
    phaseIndex++;
    const [name, est] = plan[phaseIndex] ?? ['…', 1];
    phaseAt = Date.now();
    phaseEst = est;
    bar.update(Math.round(offset), { phase: name, elapsed: elapsed() });
  };
  const ticker = setInterval(() => {
    const inPhase = Math.min(phaseEst, (Date.now() - phaseAt) / 1000);
    bar.update(Math.min(total, Math.round(offset + inPhase)), { elapsed: elapsed() });
  }, 250);
  const say = (line: string) => bars.log(`${line}\n`);

  startPhase();
  let target: Target;
  try {
    target = await startTarget(cfg, childLog);
  } catch (err) {
    clearInterval(ticker);
    bars.stop();
    throw err;
  }
  let baseline: Child<{ port: number }> | undefined;
  let noop: Child<{ port: number }> | undefined;
  let paused: number[] = [];
  const pause = (pids: number[]) => {
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    paused.push(...pids);
  };
  const resumeAll = () => {
    for (const pid of paused) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {}
    }
    paused = [];
  };
  let ceilingTarget: Target | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanup = () => {
    cleaned ??= (async () => {
      resumeAll();
      await baseline?.stop(5_000);
      await noop?.stop(5_000);
      await target.stop();
      await ceilingTarget?.stop();
    })();
    return cleaned;
  };
  process.once('SIGINT', () => {
    clearInterval(ticker);
    bars.stop();
    void cleanup().finally(() => process.exit(130));
  });

  const pubsub = new PubSub({ projectId: target.projectId, apiEndpoint: target.pubsubHost });
  const firestore = new Firestore({ projectId: target.projectId, host: target.firestoreHost, ssl: false });
  const db = new pg.Pool({ connectionString: target.databaseUrl, max: 3 });
  // an idle client whose server stops (the suite stopping before the pool ends) is not the bench failing
  db.on('error', () => {});
  const partnerSlug = `bench-${runId}`;

  try {
    const identity = await ensureIdentity(target.dataDir);
    let workers = await getWorkers(target);
    const ingestPort = workers.ingestInteraction?.port;
    if (!ingestPort) throw new Error('the suite has no ingestInteraction worker');
    const ingestUrl = `http://127.0.0.1:${ingestPort}`;

    // ---- baseline and warm-up
    startPhase();
    const frameworkEnv = {
      PUBSUB_EMULATOR_HOST: target.baselinePubsubHost ?? target.pubsubHost,
      GOOGLE_CLOUD_PROJECT: target.projectId,
    };
    baseline = await startFramework('baseline', frameworkEnv, childLog);
    noop = await startFramework('noop', frameworkEnv, childLog);
    const baselineUrl = `http://127.0.0.1:${baseline.ready.port}`;
    const noopUrl = `http://127.0.0.1:${noop.ready.port}`;
    const snapshot = () => ({
      ...cpuSnapshot(target, workers, { baseline: baseline?.child.pid, noop: noop?.child.pid }),
      [MACHINE]: machineBusySeconds(),
    });

    const factory = new EventFactory(runId, cfg.studentsPerInstance);
    const instances: Instance[] = await Promise.all(
      Array.from({ length: cfg.instances }, async (_, i) => {
        const id = `bench-${runId}-i${i}`;
        return {
          id,
          token: await mintToken(identity, {
            sub: `app-${id}`,
            role: 'app',
            instance: id,
            ttlSeconds: 3 * 3600,
          }),
        };
      }),
    );
    let rr = 0;
    /** events of one request: one app-instance (round robin), students of that instance at random */
    const spread = (n: number) => {
      const inst = instances[rr++ % instances.length]!;
      return {
        token: inst.token,
        events: Array.from({ length: n }, () => factory.event(inst.id, factory.randomStudent(inst.id))),
      };
    };

    // A partner entitled to the interactions of every bench instance, so the end-to-end runs also time the
    // pseudonymised copy on its topic. Only in a suite of our own: the registry is written to its data dir.
    const mirrorImplemented = !pendingStub('mirrorToPartners');
    let partnerTopic: string | undefined;
    if (mirrorImplemented && target.owned) {
      const status = await provisionPartner(target, partnerSlug, instances);
      if (status < 300) partnerTopic = `partner.${partnerSlug}.events`;
      else notes.push(`partner provisioning failed (${status}); partner copies not measured`);
    }

    for (const [name, url] of [
      ['baseline', baselineUrl],
      ['ingest', ingestUrl],
    ] as const) {
      await shoot({ target: name, url, batch: 10, seconds: 2, connections: 8, rate: 20, events: spread });
    }

    // the no-op handler, served like the functions: its CPU per request is the floor of any function
    let noopShot: (ShotResult & { cpu: Record<string, number> }) | undefined;
    {
      await shoot({ target: 'noop', url: noopUrl, batch: 1, seconds: 2, connections: 8, events: spread });
      const c0 = snapshot();
      const r = await shoot({
        target: 'noop',
        url: noopUrl,
        batch: 1,
        seconds: Math.max(3, cfg.throughputSeconds),
        connections: 16,
        rate: 200,
        events: spread,
      });
      noopShot = { ...r, cpu: cpuDelta(c0, snapshot()) };
      say(
        `noop     ${Math.round(r.reqPerSec)} requests/s, ${f3((1000 * (noopShot.cpu.noop ?? Number.NaN)) / Math.max(1, r.requests))} CPU ms/request`,
      );
    }

    // ---- end-to-end at fixed offered loads, pipeline running, for each workload. The taps live for the
    // whole run: every closed subscriber stream costs the emulator an exception (see BENCHMARKS.md).
    const e2e: E2EResult[] = [];
    const emulator: Array<{ phase: string; exceptions: number; threads: number; rss: number }> = [];
    const noteEmulator = (phase: string) => emulator.push({ phase, ...emulatorState(target) });
    // the realistic workload's learners are the same across rates (their progress carries over), on both sides
    const nextOf = (wl: WorkloadName, rate: number) =>
      workload(wl, factory, instances, wl === 'worst' ? `e2e-${runId}-${rate}` : `r-${runId}`);
    const realisticNext = nextOf('realistic', 0);
    const e2eRuns = e2ePlan.map((run) => ({
      ...run,
      next: run.workload === 'realistic' ? realisticNext : nextOf('worst', run.rate),
    }));
    for (const run of e2eRuns) {
      startPhase();
      const label = `${run.workload} at ${run.rate}/s`;
      if (await freshPubsub(target)) noteEmulator(`restarted before end-to-end ${label}`);
      await warmUp(ingestUrl, instances, factory, `${runId}-${run.workload}-${run.rate}`, cfg.scale);
      workers = await getWorkers(target);
      const triageTap = await tap(
        pubsub,
        'learnflow.triage.routed',
        (m) => (JSON.parse(m.data.toString()) as { interactionId?: string }).interactionId,
      );
      const progress = await progressTap(pubsub);
      const partnerTap = partnerTopic
        ? await tap(pubsub, partnerTopic, (m) => m.attributes['ce-id'])
        : undefined;
      const meta = new Map<string, { student: string; topic: string; ceId: string }>();
      const bridge0 = await bridgeStats(target);
      const rest0 = await restStats(target);
      const counts0 = await countStats(target);
      const cpu0 = snapshot();
      const { shot, t202, firstRequestAt } = await e2eShot(ingestUrl, run, run.next, (s: Sent) =>
        meta.set(s.event.id, {
          student: s.event.studentId,
          topic: s.event.topic!,
          ceId: clientEventId(s.event.studentId, s.event.id),
        }),
      );
      const ids = [...t202.keys()];
      const drain0 = Date.now();
      const drainDeadline = 30_000;
      let applied = 0;
      await waitUntil(
        async () => {
          applied = Number(
            (await db.query('SELECT count(*) FROM interactions WHERE event_id = ANY($1)', [ids])).rows[0]
              .count,
          );
          return applied >= ids.length;
        },
        drainDeadline,
        `${ids.length} interactions to be applied`,
      ).catch(() =>
        notes.push(
          `end-to-end ${label}: only ${applied} of ${ids.length} accepted events were applied ${drainDeadline / 1000} s after the last request.`,
        ),
      );
      // Firestore readable: the creation of the learner's topic document, which is that event becoming
      // readable only when every event is its learner's first (the worst case)
      const readableAt = new Map<string, number>();
      if (run.workload === 'worst') {
        const refs = ids.map((id) => {
          const m = meta.get(id)!;
          return firestore.collection('students').doc(m.student).collection('topics').doc(m.topic);
        });
        await waitUntil(
          async () => {
            const missing = refs.map((r, i) => [r, ids[i]!] as const).filter(([, id]) => !readableAt.has(id));
            for (let i = 0; i < missing.length; i += 300) {
              const chunk = missing.slice(i, i + 300);
              const snaps = await firestore.getAll(...chunk.map(([r]) => r));
              snaps.forEach((sn, j) => {
                if (sn.exists && sn.createTime)
                  readableAt.set(
                    chunk[j]![1],
                    sn.createTime.seconds * 1000 + sn.createTime.nanoseconds / 1e6,
                  );
              });
            }
            return readableAt.size >= applied;
          },
          15_000,
          'progress documents',
        ).catch(() => {});
      }
      await awaitProgress(progress.received, ids, {
        expectAll: run.workload === 'worst',
        timeoutMs: 15_000,
      });
      const tapped = (m: Map<string, number>, byCeId = false) =>
        ids.filter((id) => m.has(byCeId ? meta.get(id)!.ceId : id)).length;
      await waitUntil(
        async () =>
          tapped(triageTap.received) >= ids.length &&
          (!partnerTap || tapped(partnerTap.received, true) >= ids.length),
        5_000,
        'taps',
      ).catch(() => {});
      const drainSeconds = (Date.now() - drain0) / 1000;
      const cpu1 = snapshot();
      const bridge1 = await bridgeStats(target);
      const rest1 = await restStats(target);
      const counts1 = await countStats(target);
      const rss: Record<string, number> = {};
      for (const [name, w] of Object.entries(workers)) {
        const m = rssMiB(w.pid);
        if (m !== undefined) rss[name] = m;
      }
      noteEmulator(`after end-to-end ${label}`);
      await triageTap.close();
      await progress.close();
      await partnerTap?.close();
      const ledgerRows = await db.query<{ event_id: string; t: number }>(
        'SELECT event_id, extract(epoch FROM applied_at) * 1000 AS t FROM interactions WHERE event_id = ANY($1)',
        [ids],
      );
      const lat = (m: Map<string, number>, byCeId = false) =>
        ids
          .filter((id) => m.has(byCeId ? meta.get(id)!.ceId : id))
          .map((id) => m.get(byCeId ? meta.get(id)!.ceId : id)! - t202.get(id)!);
      const ledgerAt = new Map(ledgerRows.rows.map((r) => [r.event_id, Number(r.t)]));
      const r: E2EResult = {
        workload: run.workload,
        rate: run.rate,
        shot,
        accepted: ids.length,
        applied,
        readable: run.workload === 'worst' ? readableAt.size : Number.NaN,
        drainSeconds,
        ledger: dist(lat(ledgerAt)),
        readableDist: dist(lat(readableAt)),
        progress: progressFigures(t202, progress.received, firstRequestAt),
        triage: dist(lat(triageTap.received)),
        partner: partnerTap ? dist(lat(partnerTap.received, true)) : undefined,
        bridge: {
          delivered: bridge1.delivered - bridge0.delivered,
          retried: bridge1.retried - bridge0.retried,
          deadLettered: bridge1.deadLettered - bridge0.deadLettered,
        },
        cpu: cpuDelta(cpu0, cpu1),
        redis: restDelta(rest0, rest1),
        ops: countsWindow(counts0, counts1),
        rss,
      };
      e2e.push(r);
      say(
        `end-to-end ${label}: ${r.accepted} accepted, ${r.applied} applied, ${r.progress.completed} progress events, ${f1(r.progress.throughput)} events/s; 202 → progress event p50 ${f1(r.progress.latency.p50)} ms, p99 ${f1(r.progress.latency.p99)} ms; 202 → readable p99 ${f1(r.readableDist.p99)} ms`,
      );
    }

    // ---- from here on only the front door is measured: the Pub/Sub-triggered workers are paused
    workers = await getWorkers(target);
    if (target.owned) {
      pause(
        ['routeTriage', 'updateProgress', 'mirrorToPartners', 'finalizeArtifact']
          .map((f) => workers[f]?.pid)
          .filter((p): p is number => !!p),
      );
    } else {
      notes.push(
        'The suite is not ours (LDR_BENCH_URL): its Pub/Sub-triggered workers kept running during the throughput runs.',
      );
    }

    startPhase();
    const sweep: ShotResult[] = [];
    for (const rate of cfg.sweepRates) {
      await freshPubsub(target);
      for (const [name, url] of [
        ['baseline', baselineUrl],
        ['ingest', ingestUrl],
      ] as const) {
        sweep.push(
          await shoot({
            target: name,
            url,
            batch: 1,
            seconds: cfg.sweepSeconds,
            connections: 64,
            rate,
            events: spread,
          }),
        );
      }
    }

    const throughput: ReportInput['throughput'] = [];
    for (const batch of cfg.shapes) {
      startPhase();
      for (const [name, url] of [
        ['baseline', baselineUrl],
        ['ingest', ingestUrl],
      ] as const) {
        if (await freshPubsub(target)) noteEmulator(`restarted before ${name} ${shapeName(batch)}`);
        const rest0 = await restStats(target);
        const c0 = snapshot();
        const r = await shoot({
          target: name,
          url,
          batch,
          amount: cfg.throughputRequests[batch]!,
          connections: cfg.connections[batch] ?? 8,
          events: spread,
        });
        // what the process does after its last answer (batched publishes, confirmations) is its work too
        const busy = name === 'ingest' ? workers.ingestInteraction?.pid : baseline.child.pid;
        if (busy) await cpuIdle(busy, 5_000);
        const c1 = snapshot();
        throughput.push({ ...r, cpu: cpuDelta(c0, c1), redis: restDelta(rest0, await restStats(target)) });
        noteEmulator(`after ${name} ${shapeName(batch)}`);
        say(
          `${name.padEnd(8)} ${r.shape.padEnd(9)} ${Math.round(r.eventsPerSec)} events/s, p50 ${r.p50} ms, p99 ${r.p99} ms ${statusList(r.statuses)}`,
        );
      }
    }

    let soak: SoakResult | undefined;
    if (cfg.soak) {
      startPhase();
      resumeAll();
      await freshPubsub(target);
      workers = await getWorkers(target);
      // no partner entitled during the soak (runSoak says why); the ceiling provisions its own
      if (partnerTopic) await provisionPartner(target, partnerSlug, []);
      soak = await runSoak(cfg.soak, target, workers, instances, factory, runId, pubsub, db, say);
    }

    // ---- the bus ceiling: the same end-to-end runs against a second suite whose functions only publish
    // what the real ones would (bench/ceiling.ts); the real suite is stopped first, so they do not share cores
    let ceiling: CeilingRun[] = [];
    if (cfg.ceiling) {
      startPhase();
      resumeAll();
      await baseline.stop(5_000);
      await noop.stop(5_000);
      // the clients of the real suite go first (an idle PostgreSQL client whose server goes away fails)
      await db.end().catch(() => {});
      await firestore.terminate().catch(() => {});
      await pubsub.close().catch(() => {});
      await target.stop();
      const source = await bundle('ceiling.ts', 'ceiling.mjs');
      const c = await startTarget(cfg, childLog, source);
      ceilingTarget = c;
      const cPubsub = new PubSub({ projectId: c.projectId, apiEndpoint: c.pubsubHost });
      try {
        if (mirrorImplemented) {
          const status = await provisionPartner(c, partnerSlug, instances);
          if (status >= 300) notes.push(`bus ceiling: partner provisioning failed (${status})`);
        }
        const cWorkers = await getWorkers(c);
        ceiling = await runCeiling({
          ingestUrl: `http://127.0.0.1:${cWorkers.ingestInteraction!.port}`,
          pubsub: cPubsub,
          fresh: () => freshPubsub(c),
          // the same generators, continued: the realistic learners go on where the real runs left them
          runs: e2eRuns,
          instances,
          factory,
          runId,
          scale: cfg.scale,
          onRun: () => startPhase(),
          cpu: () => {
            const c0 = cpuSnapshot(c, cWorkers);
            return () => cpuDelta(c0, cpuSnapshot(c, cWorkers));
          },
          say,
        });
      } finally {
        await cPubsub.close().catch(() => {});
      }
    } else {
      notes.push(
        cfg.externalUrl
          ? 'Bus ceiling not measured: the suite is not ours (LDR_BENCH_URL).'
          : 'Bus ceiling not measured (LDR_BENCH_CEILING=0).',
      );
    }

    startPhase();
    const finishedAt = new Date();
    const report = renderReport({
      cfg,
      startedAt,
      finishedAt,
      e2e,
      sweep,
      throughput,
      notes,
      mirror: !mirrorImplemented ? 'stub' : partnerTopic ? 'measured' : 'unprovisioned',
      owned: target.owned,
      emulator,
      noop: noopShot,
      soak,
      ceiling: ceilingRows(
        e2e.map((e) => ({ workload: e.workload, rate: e.rate, figures: e.progress })),
        ceiling,
      ),
      ceilingRuns: ceiling,
      loadavg: {
        start: loadStart,
        end: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
      },
    });
    writeFileSync(cfg.out, report.markdown);
    writeChart(new URL('./latency.svg', import.meta.url), report.chart);
    await cleanup();
    clearInterval(ticker);
    bar.update(total, { phase: 'done', elapsed: elapsed() });
    bars.stop();
    console.log(report.summary);
    console.log(`\nwrote ${cfg.out} and bench/latency.svg in ${elapsed()} s`);
  } catch (err) {
    clearInterval(ticker);
    bars.stop();
    console.error(`bench failed: ${(err as Error).stack ?? err}`);
    console.error(childLog.slice(-30).join('\n'));
    process.exitCode = 1;
  } finally {
    clearInterval(ticker);
    await pubsub.close().catch(() => {});
    await firestore.terminate().catch(() => {});
    await db.end().catch(() => {});
    await cleanup();
  }
}

/**
 * The soak: `events` interactions of `events / 2` distinct learners (soakSlot), offered at a fixed rate with
 * the whole pipeline running, in ten equal slices. After each slice: the interactions applied (PostgreSQL
 * ledger rows) during it, the backlog, the emulator's threads and memory, every worker's RSS. The
 * subscriptions without a function are drained meanwhile, as their consumers (memory service, agents,
 * audit, backend) would in production — otherwise the emulator keeps every message. No partner is entitled
 * during the soak: partner topics are keyed by the partner's learner reference, one ordering key per
 * learner on the partner's ordered subscription, and the emulator keeps a thread per key for good
 * (docs/performance.md §4); partner copies are measured in the end-to-end runs.
 */
async function runSoak(
  soak: { events: number; rate: number },
  target: Target,
  workers: Workers,
  instances: Instance[],
  factory: EventFactory,
  runId: string,
  pubsub: PubSub,
  db: pg.Pool,
  say: (line: string) => void,
): Promise<SoakResult> {
  const learners = Math.ceil(soak.events / 2);
  const perTenth = Math.ceil(soak.events / 10);
  const lag = Math.min(500, Math.max(1, Math.floor(learners / 20)));
  const ingestUrl = `http://127.0.0.1:${workers.ingestInteraction!.port}`;
  // only the soak's own learners: what earlier runs left in the bridge's queues is applied meanwhile too
  const prefix = `soak-${runId}-`;
  const applied = async () =>
    Number(
      (
        await db.query('SELECT count(*)::int AS n FROM interactions WHERE starts_with(student_id, $1)', [
          prefix,
        ])
      ).rows[0].n,
    );
  let drained = 0;
  const consumers = loadTopology()
    .subscriptions.filter((x) => !x.function)
    .map((x) =>
      pubsub
        .subscription(x.name, { flowControl: { maxMessages: 1000 } })
        .on('message', (m: Message) => {
          drained++;
          m.ack();
        })
        .on('error', () => {}),
    );
  let n = 0;
  let acceptedSoFar = 0;
  const tenths: SoakResult['tenths'] = [];
  try {
    const atStart = await applied();
    let before = atStart;
    for (let k = 0; k < 10; k++) {
      const t0 = Date.now();
      const r = await shoot({
        target: 'ingest',
        url: ingestUrl,
        batch: 1,
        seconds: Math.max(1, Math.round(perTenth / soak.rate)),
        connections: 32,
        rate: soak.rate,
        events: () => {
          const { learner } = soakSlot(n++, learners, lag);
          const inst = instances[learner % instances.length]!;
          return {
            token: inst.token,
            events: [factory.event(inst.id, `soak-${runId}-${learner.toString(36)}`, n)],
          };
        },
      });
      const after = await applied();
      acceptedSoFar += r.acceptedEvents;
      const em = emulatorState(target);
      const liveHeap = await emulatorLiveHeapMiB(target);
      const workerRssMiB: Record<string, number> = {};
      for (const [name, w] of Object.entries(workers)) {
        const m = rssMiB(w.pid);
        if (m !== undefined) workerRssMiB[name] = m;
      }
      const tenth = {
        accepted: r.acceptedEvents,
        eventsPerSec: r.eventsPerSec,
        appliedPerSec: (after - before) / ((Date.now() - t0) / 1000),
        backlog: acceptedSoFar - (after - atStart),
        emulatorThreads: em.threads,
        emulatorRssMiB: em.rss,
        emulatorLiveHeapMiB: liveHeap,
        workerRssMiB,
      };
      tenths.push(tenth);
      before = after;
      say(
        `soak ${k + 1}/10: ${Math.round(r.eventsPerSec)} accepted/s, ${Math.round(tenth.appliedPerSec)} applied/s, emulator ${em.threads} threads ${Math.round(em.rss)} MiB (live heap ${Math.round(liveHeap)} MiB)`,
      );
    }
  } finally {
    await Promise.all(consumers.map((c) => c.close().catch(() => {})));
  }
  return { events: soak.events, learners, rate: soak.rate, tenths, drained };
}

// ------------------------------------------------------------------------------------------------
// The report
// ------------------------------------------------------------------------------------------------

interface ReportInput {
  cfg: BenchConfig;
  startedAt: Date;
  finishedAt: Date;
  e2e: E2EResult[];
  sweep: ShotResult[];
  throughput: Array<
    ShotResult & {
      cpu: Record<string, number>;
      redis?: { requests: number; commands: number; admissions: number; billed?: number };
    }
  >;
  noop?: ShotResult & { cpu: Record<string, number> };
  soak?: SoakResult;
  /** the real pipeline against the bus ceiling, per workload and offered rate */
  ceiling: CeilingRow[];
  /** the ceiling's runs as measured (with the CPU of its processes) */
  ceilingRuns?: CeilingRun[];
  loadavg: { start: string; end: string };
  notes: string[];
  mirror: 'stub' | 'measured' | 'unprovisioned';
  owned: boolean;
  emulator: Array<{ phase: string; exceptions: number; threads: number; rss: number }>;
}

const f0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
const pct = (x: number) => (Number.isFinite(x) ? `${Math.round(100 * x)} %` : 'n/a');
const statusList = (s: Record<string, number>) =>
  Object.entries(s)
    .sort()
    .map(([k, v]) => `${k}×${v.toLocaleString('en-US')}`)
    .join(' ');
const d3 = (d: Dist | undefined) => (d?.n ? `${f1(d.p50)} / ${f1(d.p99)} / ${f1(d.max)}` : 'n/a');

function table(head: string[], rows: Array<Array<string | number>>) {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

const shapeName = (b: number) => (b === 1 ? 'single' : `batch ${b}`);

/**
 * The interactions that entered the pipeline in an end-to-end window: the messages ingestInteraction
 * published (counted at the proxy), which includes posts still in flight when the load generator stopped
 * (their 202 is not counted as accepted, their work downstream is); the accepted count when not counted.
 */
const ingestedIn = (e: E2EResult) => e.ops?.byLabel.ingestInteraction?.pubsub.messages || e.accepted;

const FIRESTORE_READS_HOW =
  'counted in documents at the gRPC proxy: one per document found or missing in BatchGetDocuments, per document a query returns (at least one per query)';
const FIRESTORE_WRITES_HOW =
  'counted in documents at the gRPC proxy: one per Write in a Commit that succeeded (a refused precondition writes nothing)';

/**
 * The operations-per-event rows counted at the proxies (bench/counting-proxy.ts): for the worst case and the
 * realistic workload at the rate the cost uses (the worst case's 200 events/s, else its highest), in all and
 * per function.
 */
function opsRows(e2e: E2EResult[]): string[][] {
  const worst = e2e.filter((e) => e.workload === 'worst');
  const rate = (worst.find((e) => e.rate === 200) ?? worst[worst.length - 1])?.rate;
  const runs = e2e.filter((e) => e.rate === rate);
  if (!runs.some((e) => e.ops))
    return [
      ['Pub/Sub publish requests and billable bytes', 'not counted', 'the suite is not ours (LDR_BENCH_URL)'],
      ['Firestore reads / writes', 'not counted', 'the suite is not ours'],
      ['PostgreSQL round trips', 'not counted', 'the suite is not ours'],
    ];
  const rows: string[][] = [];
  for (const e of runs) {
    if (!e.ops || !e.accepted) continue;
    const n = ingestedIn(e);
    const of = `${e.workload}, ${e.rate}/s, per interaction published by ingest: ${f0(n)}, ${f0(e.accepted)} accepted`;
    const fns = Object.entries(e.ops.byLabel);
    const split = (pick: (c: Counts) => number, digits = 3) =>
      fns
        .filter(([, c]) => pick(c) > 0)
        .map(([fn, c]) => `${fn} ${(pick(c) / n).toFixed(digits)}`)
        .join(', ') || 'none';
    const t = e.ops.total;
    const p = t.pubsub;
    const fs = t.firestore;
    const rpcs = Object.entries(t.grpc)
      .filter(([path]) => path.startsWith('/google.firestore'))
      .map(
        ([path, c]) =>
          `${path.split('/').pop()} ${f3(c.requests / n)}${c.failed ? ` (${f3(c.failed / n)} failed)` : ''}`,
      )
      .join(', ');
    rows.push(
      [
        `Pub/Sub publish requests (${of})`,
        `${f3(p.publishRequests / n)} requests, ${f3(p.messages / n)} messages, ${f0(p.billableBytes / n)} billable bytes (${f0(p.requestBytes / n)} request bytes)${p.failedRequests ? `; ${f3(p.failedRequests / n)} failed requests (not billed)` : ''}`,
        `counted at the gRPC proxy in front of the emulator (every Publish RPC of every function that succeeded; billable = max(1,000, request bytes) per request); requests by function: ${split((c) => c.pubsub.publishRequests)}`,
      ],
      [
        `Firestore reads / writes (${of})`,
        `${f3(fs.reads / n)} reads, ${f3(fs.writes / n)} writes${fs.deletes ? `, ${f3(fs.deletes / n)} deletes (not priced)` : ''}`,
        `${FIRESTORE_READS_HOW}; writes ${FIRESTORE_WRITES_HOW.replace('counted in documents at the gRPC proxy: ', '')}; calls: ${rpcs || 'none'}; reads by function: ${split((c) => c.firestore.reads)}; writes by function: ${split((c) => c.firestore.writes)}`,
      ],
      [
        `PostgreSQL round trips (${of})`,
        f2(t.postgres.roundTrips / n),
        `counted at the TCP proxy from the frontend protocol (each simple query \`Q\` and each Sync \`S\`; ${f0(t.postgres.connections)} connections opened in the window); by function: ${split((c) => c.postgres.roundTrips, 2)}`,
      ],
    );
  }
  return rows;
}

export function renderReport(r: ReportInput) {
  const cpu = os.cpus();
  const machine = `${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores, ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB memory, ${os.type()} ${os.release()}, Node ${process.version}`;
  const by = (target: string, batch: number) =>
    r.throughput.find((t) => t.target === target && t.batch === batch);
  const ratios = r.cfg.shapes.map((b) => {
    const i = by('ingest', b);
    const base = by('baseline', b);
    return {
      batch: b,
      ingest: i?.eventsPerSec ?? Number.NaN,
      baseline: base?.eventsPerSec ?? Number.NaN,
      ratio: (i?.eventsPerSec ?? Number.NaN) / (base?.eventsPerSec ?? Number.NaN),
    };
  });
  // CPU, operations and cost per event: the worst case at 200 events/s (as before the workloads)
  const worst = r.e2e.filter((e) => e.workload === 'worst');
  const e200 = worst.find((e) => e.rate === 200) ?? worst[worst.length - 1] ?? r.e2e[r.e2e.length - 1];
  const perEvent = (t: ShotResult & { cpu: Record<string, number> }, key: string) =>
    t.cpu[key] !== undefined && t.acceptedEvents ? (1000 * t.cpu[key]!) / t.acceptedEvents : Number.NaN;
  const windows = [...r.e2e.map((e) => e.cpu), ...r.throughput.map((t) => t.cpu)];
  const others = windows.map(othersShare).filter(Number.isFinite);
  const othersMean = others.length ? others.reduce((a, b) => a + b, 0) / others.length : Number.NaN;

  const md: string[] = [];
  md.push(
    '# Benchmarks',
    '',
    '_Written by `npm run bench` (bench/run.ts); run it again rather than editing. The method is at the end._',
    '',
    `- **Machine:** ${machine}`,
    `- **Date:** ${r.startedAt.toISOString()} (the run took ${((r.finishedAt.getTime() - r.startedAt.getTime()) / 1000).toFixed(0)} s)`,
    `- **Command:** \`npm run bench\`${r.cfg.scale !== 1 ? ` with \`LDR_BENCH_SCALE=${r.cfg.scale}\`` : ''}${r.cfg.externalUrl ? ` against \`LDR_BENCH_URL=${r.cfg.externalUrl}\`` : ' (its own suite on free ports in a temporary directory)'}`,
    `- **Load:** ${r.cfg.instances} app-instances, each with its own app token, ${r.cfg.studentsPerInstance} students per instance; every event id unique; autocannon, closed loop with ${Object.entries(
      r.cfg.connections,
    )
      .map(([b, c]) => `${c} connections for ${shapeName(Number(b))}`)
      .join(', ')}; each throughput run a fixed number of requests (${Object.entries(r.cfg.throughputRequests)
      .map(([b, n]) => `${f0(n)} for ${shapeName(Number(b))}`)
      .join(', ')}), every answer counted and the CPU read once the process is idle.`,
    `- **Other load on the machine:** processes outside this run used ${pct(othersMean)} of the machine's CPU on average during the measured windows (min ${pct(Math.min(...others))}, max ${pct(Math.max(...others))}). Figures taken while the cores are shared are lower than the machine can do.`,
    '',
    `- **Load average (1, 5, 15 min):** ${r.loadavg.start} at the start, ${r.loadavg.end} at the end (2 cores).`,
    '',
    ...targetsAndCost(r, e200),
    '## Throughput (closed loop, as fast as it goes)',
    '',
    table(
      [
        'shape',
        'target',
        'events/s',
        'requests/s',
        'HTTP p50 ms',
        'p90 ms',
        'p99 ms',
        'max ms',
        'statuses',
        'socket errors',
      ],
      r.throughput.map((t) => [
        t.shape,
        t.target,
        f0(t.eventsPerSec),
        f0(t.reqPerSec),
        t.p50,
        t.p90,
        t.p99,
        t.max,
        statusList(t.statuses),
        t.errors,
      ]),
    ),
    '',
    '### Ratios ingest / baseline',
    '',
    table(
      ['shape', 'ingest events/s', 'baseline events/s', 'ratio'],
      ratios.map((x) => [shapeName(x.batch), f0(x.ingest), f0(x.baseline), `${f2(x.ratio)}×`]),
    ),
    '',
    '### Ratios by CPU (what each side could do per core if it were the bottleneck)',
    '',
    'The emulator, not the function, limits both sides on this machine, so the throughput ratio above mostly compares two queues in front of the same emulator. The CPU each function process spends per accepted event is the portable comparison:',
    '',
    table(
      [
        'shape',
        'ingest CPU ms / event',
        'baseline CPU ms / event',
        'ingest events per CPU-second',
        'baseline events per CPU-second',
        'ratio',
      ],
      r.cfg.shapes.map((b) => {
        const i = by('ingest', b);
        const base = by('baseline', b);
        const ci = i ? perEvent(i, 'fn:ingestInteraction') : Number.NaN;
        const cb = base ? perEvent(base, 'baseline') : Number.NaN;
        return [shapeName(b), f3(ci), f3(cb), f0(1000 / ci), f0(1000 / cb), `${f2(cb / ci)}×`];
      }),
    ),
    '',
    '## Latency against offered load (single events, open loop)',
    '',
    '![latency against offered load](bench/latency.svg)',
    '',
    table(
      ['offered events/s', 'target', 'achieved events/s', 'HTTP p50 ms', 'p99 ms', 'max ms', 'statuses'],
      r.sweep.map((t) => [
        f0(t.offeredEventsPerSec ?? Number.NaN),
        t.target,
        f0(t.eventsPerSec),
        t.p50,
        t.p99,
        t.max,
        statusList(t.statuses),
      ]),
    ),
    '',
    '## End to end (pipeline running; single events)',
    '',
    `Workloads: ${r.cfg.workloads.map((w) => `**${w}** (${WORKLOADS[w]})`).join('; ')}. Latencies are p50 / p99 / max in ms from the 202 arriving at the client. Sustained throughput: events whose progress event was published, per second from the first request to the last of them. Progress readable in Firestore is measured in the worst case only (the creation of the learner's topic document is then that event becoming readable).`,
    '',
    table(
      [
        'workload',
        'offered events/s',
        'accepted',
        'applied',
        'readable',
        'HTTP p50 / p99 ms',
        '→ triage published',
        '→ ledger (PostgreSQL)',
        '→ progress readable (Firestore)',
        '→ progress event published',
        'sustained events/s',
        '→ partner copy published',
        'bridge retries / dead letters',
        'drain s',
      ],
      r.e2e.map((e) => [
        e.workload,
        e.rate,
        f0(e.accepted),
        f0(e.applied),
        f0(e.readable),
        `${e.shot.p50} / ${e.shot.p99}`,
        d3(e.triage),
        d3(e.ledger),
        d3(e.readableDist),
        `${d3(e.progress.latency)} (${f0(e.progress.completed)})`,
        f1(e.progress.throughput),
        d3(e.partner),
        `${f0(e.bridge.retried)} / ${f0(e.bridge.deadLettered)}`,
        f1(e.drainSeconds),
      ]),
    ),
    '',
    r.mirror === 'stub'
      ? '202 → partner copy: **not measured: mirrorToPartners not implemented** (functions/mirrorToPartners/index.ts still registers a pending stub).'
      : r.mirror === 'unprovisioned'
        ? "202 → partner copy: **not measured**: no partner could be provisioned (only done in a suite of the bench's own)."
        : '202 → partner copy: a partner entitled to every bench instance (interaction events) is provisioned; the column is the publish time of the pseudonymised copy on `partner.<slug>.events`.',
    '',
    ...ceilingSection(r),
    '## CPU per event',
    '',
  );
  if (e200) {
    const rows = Object.entries(e200.cpu).filter(([k]) => k !== 'baseline' && k !== MACHINE);
    const sum = rows.reduce((a, [, v]) => a + v, 0);
    md.push(
      `Pipeline stages, end-to-end run at ${e200.rate} events/s (${f0(e200.accepted)} events; utime + stime of each process from /proc/<pid>/stat, from the first request until the last progress document was readable, divided by the events):`,
      '',
      table(
        ['process', 'CPU ms / event', 'share'],
        [
          ...rows
            .sort((a, b) => b[1] - a[1])
            .map(([k, v]) => [k.replace(/^fn:/, ''), f3((1000 * v) / e200.accepted), pct(v / sum)]),
          ["**sum of this run's processes**", `**${f3((1000 * sum) / e200.accepted)}**`, ''],
          [
            '(processes outside this run)',
            f3((1000 * Math.max(0, (e200.cpu[MACHINE] ?? Number.NaN) - sum)) / e200.accepted),
            '',
          ],
        ],
      ),
      '',
    );
    const c200 = r.ceilingRuns?.find((c) => c.workload === e200.workload && c.rate === e200.rate && c.cpu);
    if (c200?.cpu) {
      const rows = cpuComparison(
        { cpu: e200.cpu, accepted: e200.accepted },
        { cpu: c200.cpu, accepted: c200.figures.accepted },
        (k) => ['baseline', 'noop', MACHINE, 'load generator (autocannon)'].includes(k),
      );
      const total = (side: 'real' | 'ceiling') => rows.reduce((a, x) => a + (x[side] || 0), 0);
      md.push(
        `The same run against the bus ceiling (${e200.workload}, ${e200.rate} events/s; the ceiling's ${f0(c200.figures.accepted)} accepted events, its processes read the same way), process by process, largest difference first. At saturation the throughput ratio follows the ratio of these sums:`,
        '',
        table(
          ['process', 'real CPU ms / event', 'ceiling CPU ms / event', 'real − ceiling'],
          [
            ...rows.map((x) => [
              x.process.replace(/^fn:/, ''),
              f3(x.real),
              f3(x.ceiling),
              f3(x.real - x.ceiling),
            ]),
            [
              '**sum (without the load generator)**',
              `**${f3(total('real'))}**`,
              `**${f3(total('ceiling'))}**`,
              `**${f3(total('real') - total('ceiling'))}** (ceiling / real ${f2(total('ceiling') / total('real'))}×)`,
            ],
          ],
        ),
        '',
      );
    }
  }
  md.push(
    'Front door, throughput runs (CPU ms per accepted event; the Pub/Sub-triggered workers are paused):',
    '',
    table(
      [
        'shape',
        'ingestInteraction worker',
        'baseline process',
        'Pub/Sub emulator (ingest / baseline)',
        'suite process: Upstash REST (ingest / baseline)',
        'Redis (ingest)',
      ],
      r.cfg.shapes.map((b) => {
        const i = by('ingest', b);
        const base = by('baseline', b);
        if (!i || !base) return [shapeName(b), 'n/a', 'n/a', 'n/a', 'n/a', 'n/a'];
        return [
          shapeName(b),
          f3(perEvent(i, 'fn:ingestInteraction')),
          f3(perEvent(base, 'baseline')),
          `${f3(perEvent(i, 'Pub/Sub emulator'))} / ${f3(perEvent(base, 'Pub/Sub emulator'))}`,
          `${f3(perEvent(i, SUITE))} / ${f3(perEvent(base, SUITE))}`,
          f3(perEvent(i, 'Redis')),
        ];
      }),
    ),
    '',
  );
  if (r.emulator.length) {
    md.push(
      '## The Pub/Sub emulator during the run',
      '',
      "Restarted (empty) before every measurement. `NoSuchMethodError` counts the exceptions its gRPC server logged for cancelled calls (cumulative: the log is appended across restarts; they come with the restarts, when the bridge closes its streams). The thread count is the emulator's JVM after each run.",
      '',
      table(
        ['moment', 'NoSuchMethodError', 'threads', 'RSS MiB'],
        r.emulator.map((e) => [e.phase, f0(e.exceptions), f0(e.threads), f0(e.rss)]),
      ),
      '',
    );
  }
  md.push('## Where the time goes', '', ...whereTimeGoes(r, ratios, e200).map((l) => `- ${l}`), '');
  md.push(
    '## How it is measured',
    '',
    '- The suite runs in its own process (`bench/suite-process.ts` → `startSuite`, free ports, temporary data dir), so the load generator does not share an event loop with the bridge; the rate limits are raised through `SuiteOptions.functionConfig` (`RATE_INSTANCE_EVENTS_PER_MIN`, `RATE_STUDENT_PER_MIN`, `RATE_STUDENT_EVENTS_PER_MIN`; the workers get exactly their topology variables).',
    "- Pub/Sub publish requests and billable bytes, Firestore reads and writes and PostgreSQL round trips are counted, not estimated: the function workers (only they, through `SuiteOptions.functionEnvOverrides`) reach the emulators and PostgreSQL through bench-only forwarding proxies (`bench/counting-proxy.ts`, in a process of their own; h2c gRPC counted per method and decoded just enough to count messages and documents, PostgreSQL counted from the frontend protocol). They add one local hop to each of those calls; their CPU falls under “processes outside this run”, not the pipeline's. The baseline publishes through a proxy of its own too, so both sides of the ingest comparison make the same hop.",
    '- `ingestInteraction` is driven at its worker port (the one `/_ldr/workers` names), the baseline at its own: the local front-door proxy, which production does not have, is left out of both.',
    "- The baselines (`bench/baseline.ts`) are served as the functions are: bundled by esbuild, each under the Functions Framework CLI in its own process, behind the same body guard (`shared/serve.ts`). `baseline` publishes the same CloudEvents (same attributes, the same ordering key as ingest — the student id, or its shard on the emulator — same topic, same `createBus` publisher) to the same Pub/Sub emulator, without authentication, validation, rate limit or de-duplication; `noop` reads the body and answers (the floor of any function served this way, compared with the Pub/Sub-triggered functions' CPU per event).",
    '- Redis operations are counted by the local Upstash REST endpoint (`GET /_stats`: HTTP round trips and commands), read before and after each run.',
    "- Every body is built per request in autocannon's `setupRequest` (unique ids); accepted events are counted from the 202 bodies.",
    "- End to end: each event's 202 arrival time against (a) `interactions.applied_at` in PostgreSQL (start of the ledger transaction), (b) the Firestore `createTime` of `students/{id}/topics/{topic}` (worst case only: every event is a new learner's first, so the document's creation is that event becoming readable), (c) the publish time of its triage decision on `learnflow.triage.routed`, (d) the publish time of its partner copy (matched by its ce-id), (e) the publish time of its progress event on `learnflow.progress.updated` (matched by `interactionId`). All clocks are this machine's.",
    '- Workloads (`bench/workload.ts`): **worst**, every event a new learner; **realistic**, 2,000 learners over the 8 instances, 64 of them in a session at once, each session a `session` start, 3–8 interactions of mixed kinds on one topic and a `session` end (the learners carry over from rate to rate). Each at every offered rate, open loop, single events, 32 connections.',
    '- Sustained throughput (end to end and bus ceiling): the events whose progress event arrived on the tap, divided by the time from the first request to the last arrival. Below capacity it is close to the offered rate; above it, it is what the pipeline keeps up with. A run waits for every progress event (worst case) or until none has arrived for 3 s (realistic), at most 30 s after the last request.',
    "- Bus ceiling: after every other measurement the suite is stopped and a second one started with `functionSource` = the bundle of `bench/ceiling.ts` (`startSuite({ functionSource })`, the Functions Framework CLI's `--source`); it gets the same partner, a fresh emulator before each run, the same warm-up, and the same event generators, continued.",
    '- The Pub/Sub emulator is restarted (empty; the suite re-provisions the topology and the partner registry) before each end-to-end run, each rate of the sweep and each throughput run: it keeps the backlog of every unconsumed subscription in memory and slows down as those grow.',
    '- During the latency sweep and the throughput runs the Pub/Sub-triggered workers are paused (SIGSTOP), so the baseline and ingest both measure HTTP → Pub/Sub only and not a backlog being worked off beside them; the downstream cost is measured in the end-to-end runs.',
    '- A negative latency to the triage decision or the ledger means the pipeline was faster than the HTTP answer: ingestInteraction answers only after the publish *and* the de-duplication confirmation, so under load the 202 can reach the client after the interaction was already routed and applied.',
    '- CPU: utime + stime from /proc/<pid>/stat per process (process groups for the emulators and PostgreSQL), the whole machine from /proc/stat.',
    ...r.notes.map((n) => `- ${n}`),
    '',
  );

  const chart = {
    title: 'Latency against offered load (single events)',
    subtitle: `${cpu.length} cores, ${cpu[0]?.model ?? ''}; ${r.startedAt.toISOString().slice(0, 10)}; others used ${pct(othersMean)} of the CPU`,
    xLabel: 'offered load, events/s',
    yLabel: 'latency, ms',
    logX: true,
    logY: true,
    target: { y: 250, label: 'end-to-end target 250 ms' },
    series: [
      {
        name: 'ingest HTTP p50',
        color: '#1f77b4',
        points: r.sweep
          .filter((t) => t.target === 'ingest')
          .map((t) => ({ x: t.offeredEventsPerSec!, y: t.p50 })),
      },
      {
        name: 'ingest HTTP p99',
        color: '#1f77b4',
        dashed: true,
        points: r.sweep
          .filter((t) => t.target === 'ingest')
          .map((t) => ({ x: t.offeredEventsPerSec!, y: t.p99 })),
      },
      {
        name: 'baseline HTTP p50',
        color: '#7f7f7f',
        points: r.sweep
          .filter((t) => t.target === 'baseline')
          .map((t) => ({ x: t.offeredEventsPerSec!, y: t.p50 })),
      },
      {
        name: 'baseline HTTP p99',
        color: '#7f7f7f',
        dashed: true,
        points: r.sweep
          .filter((t) => t.target === 'baseline')
          .map((t) => ({ x: t.offeredEventsPerSec!, y: t.p99 })),
      },
      {
        name: '202 → readable p50',
        color: '#2ca02c',
        points: worst.map((e) => ({ x: e.rate, y: e.readableDist.p50 })),
      },
      {
        name: '202 → readable p99',
        color: '#2ca02c',
        dashed: true,
        points: worst.map((e) => ({ x: e.rate, y: e.readableDist.p99 })),
      },
    ],
  };

  const summary = [
    '',
    table(
      ['shape', 'ingest events/s', 'baseline events/s', 'ingest/baseline'],
      ratios.map((x) => [shapeName(x.batch), f0(x.ingest), f0(x.baseline), `${f2(x.ratio)}×`]),
    ),
    '',
    ...r.e2e.map(
      (e) =>
        `end-to-end ${e.workload} at ${e.rate} events/s: ${e.applied}/${e.accepted} applied; 202 → progress event p50 ${f1(e.progress.latency.p50)} ms, p99 ${f1(e.progress.latency.p99)} ms; ${f1(e.progress.throughput)} events/s sustained`,
    ),
    ...r.ceiling.map(
      (c) =>
        `bus ceiling ${c.workload} at ${c.rate} events/s: ${f1(c.ceiling.throughput)} events/s, p99 ${f1(c.ceiling.latency.p99)} ms; real/ceiling throughput ${f2(c.throughputRatio)}×, p99 ${f2(c.p99Ratio)}×`,
    ),
    `other processes used ${pct(othersMean)} of the CPU during the measured windows`,
  ].join('\n');
  return { markdown: `${md.join('\n')}\n`, chart, summary };
}

/** The "Bus ceiling" section: the real pipeline against the no-op publishers, per workload and rate. */
function ceilingSection(r: ReportInput): string[] {
  if (!r.ceiling.length) return [];
  const v = ceilingVerdict(r.ceiling);
  return [
    '## Bus ceiling',
    '',
    'The same end-to-end runs (same workloads, offered rates, durations and learners) against a second suite with the same topology, bridge and emulators, whose functions are no-op publishers (`bench/ceiling.ts`: each publishes what the real one would — same topics, CloudEvents, ordering keys, through the same `createBus` — with no store, Redis, authentication or validation). Both are measured on the same signal: the progress event arriving on a tap subscription of `learnflow.progress.updated` (in the real pipeline it is published after the ledger commit and the Firestore projection, so it is never earlier than readable). Sustained throughput: events whose progress event arrived, per second from the first request to the last arrival. Latency: 202 → progress event, p50 / p99 ms.',
    '',
    table(
      [
        'workload',
        'offered events/s',
        'real events/s',
        'ceiling events/s',
        'throughput real / ceiling',
        'real p50 / p99 ms',
        'ceiling p50 / p99 ms',
        'p99 real / ceiling',
      ],
      r.ceiling.map((c) => [
        c.workload,
        c.rate,
        `${f1(c.real.throughput)} (${f0(c.real.completed)}/${f0(c.real.accepted)})`,
        `${f1(c.ceiling.throughput)} (${f0(c.ceiling.completed)}/${f0(c.ceiling.accepted)})`,
        `${f2(c.throughputRatio)}×`,
        `${f1(c.real.latency.p50)} / ${f1(c.real.latency.p99)}`,
        `${f1(c.ceiling.latency.p50)} / ${f1(c.ceiling.latency.p99)}`,
        `${f2(c.p99Ratio)}×`,
      ]),
    ),
    '',
    `Target (issue 14): throughput ≥ 0.8× and p99 ≤ 1.5× the ceiling's in every row: lowest throughput ratio ${f2(v.minThroughput)}×, highest p99 ratio ${f2(v.maxP99)}× — ${v.met ? 'met' : 'not met'}. The (n/m) after a throughput is events with a progress event / accepted: in the realistic workload only interactions that change mastery or level announce progress, the same ones on both sides (the ceiling advances the same pure domain in memory).`,
    '',
  ];
}

/** The bullet points of "where the time goes", computed from the figures of this run. */
/** The Targets table of issue 14, operations per event, cost per million and the soak. */
function targetsAndCost(r: ReportInput, e200: E2EResult | undefined): string[] {
  const verdict = (ok: boolean) => (ok ? '**met**' : '**not met**');
  const by = (target: string, batch: number) =>
    r.throughput.find((t) => t.target === target && t.batch === batch);
  const perEvent = (t: { cpu: Record<string, number>; acceptedEvents: number } | undefined, key: string) =>
    t && t.cpu[key] !== undefined && t.acceptedEvents ? (1000 * t.cpu[key]!) / t.acceptedEvents : Number.NaN;
  const cpuRatios = r.cfg.shapes.map((b) => ({
    b,
    ratio: perEvent(by('ingest', b), 'fn:ingestInteraction') / perEvent(by('baseline', b), 'baseline'),
  }));
  const ingestSingle = by('ingest', 1);
  const redisReq = ingestSingle?.redis;
  // per admission (its one MGET; one per request that reached Redis), so that requests still in flight when
  // autocannon stops count on both sides
  const rtPerAdmission = redisReq?.admissions ? redisReq.requests / redisReq.admissions : Number.NaN;
  const cmdPerAdmission = redisReq?.admissions ? redisReq.commands / redisReq.admissions : Number.NaN;
  const noopMs =
    r.noop?.cpu.noop !== undefined && r.noop.requests
      ? (1000 * r.noop.cpu.noop) / r.noop.requests
      : Number.NaN;
  const pushFns = ['routeTriage', 'updateProgress', 'mirrorToPartners'];
  const fnMs = (fn: string) =>
    e200 && e200.cpu[`fn:${fn}`] !== undefined && e200.accepted
      ? (1000 * e200.cpu[`fn:${fn}`]!) / e200.accepted
      : Number.NaN;
  const fnRatios = pushFns.map((fn) => ({ fn, ms: fnMs(fn), ratio: fnMs(fn) / noopMs }));

  // operations per event and cost (single events, the end-to-end run at the highest rate)
  const prices = loadPrices();
  const start = loadStartCost();
  let cost: ReturnType<typeof costPerMillion> | undefined;
  let ops: OpsPerEvent | undefined;
  if (e200?.accepted) {
    // everything per interaction that entered the pipeline (requests that timed out at the load generator
    // after ingest published them are processed too, so `accepted` would overstate the cost per event)
    const n = ingestedIn(e200);
    const cpuSeconds: Record<string, number> = {};
    const memoryGiB: Record<string, number> = {};
    for (const [k, v] of Object.entries(e200.cpu)) {
      if (!k.startsWith('fn:')) continue;
      const fn = k.slice(3);
      cpuSeconds[fn] = v / n;
      memoryGiB[fn] = (e200.rss[fn] ?? 256) / 1024;
    }
    const deliveries = e200.bridge.delivered / n;
    const counted = e200.ops?.total;
    ops = {
      cpuSeconds,
      memoryGiB,
      functionRequests: {
        value: 1 + deliveries,
        how: 'counted: 1 ingest request per event (single posts) + the pushes the bridge delivered',
      },
      pubsubPublishRequests: counted
        ? {
            value: counted.pubsub.publishRequests / n,
            how: `counted (every Publish RPC of every function that succeeded, at the gRPC proxy in front of the emulator), per interaction ingestInteraction published in the window`,
          }
        : {
            value: deliveries,
            how: 'not counted (the suite is not ours): one publish request per message assumed, messages per event assumed equal to pushes per event',
          },
      ...(counted && {
        pubsubPublishBillableBytes: {
          value: counted.pubsub.billableBytes / n,
          how: 'counted: max(1,000, PublishRequest bytes) per request',
        },
      }),
      pubsubDeliveries: { value: deliveries, how: 'counted (pushes the bridge delivered per event)' },
      redisCommands: e200.redis?.billed
        ? {
            value: e200.redis.billed / n,
            how: `counted at the Upstash REST endpoint (every function) as Upstash bills them: every command sent plus every command a script runs (${f2(e200.redis.commands / n)} sent per interaction)`,
          }
        : {
            value: e200.redis ? e200.redis.commands / n : Number.NaN,
            how: 'counted at the Upstash REST endpoint (every function): commands sent',
          },
      firestoreReads: counted
        ? { value: counted.firestore.reads / n, how: FIRESTORE_READS_HOW }
        : {
            value: 1,
            how: 'not counted (the suite is not ours): 1 per event assumed from the projection code',
          },
      firestoreWrites: counted
        ? { value: counted.firestore.writes / n, how: FIRESTORE_WRITES_HOW }
        : { value: 1, how: 'not counted (the suite is not ours): 1 per event assumed' },
    };
    cost = costPerMillion(ops, prices);
  }
  const soakV = r.soak ? soakVerdict(r.soak) : undefined;
  const ceilingV = { ...ceilingVerdict(r.ceiling), rows: r.ceiling.length };
  const out: string[] = [
    '## Targets',
    '',
    'Issue 14. CPU is utime + stime per process (/proc), so the ratios hold on a loaded machine better than throughput does.',
    '',
    table(
      ['target', 'measured', ''],
      [
        [
          'ingest CPU per event ≤ 1.5 × the bare-publish baseline (single, 10, 100)',
          cpuRatios.map((x) => `${shapeName(x.b)} ${f2(x.ratio)}×`).join(', '),
          verdict(cpuRatios.every((x) => x.ratio <= 1.5)),
        ],
        [
          '≤ 1 Redis round trip per ingest request on the hot path; verified tokens cached',
          `before each answer exactly 1 (the admission pipeline: deny-list, quotas, claims; counted per request at the REST endpoint by functions/ingestInteraction/admission.int.test.ts); here ${f2(rtPerAdmission)} round trips and ${f2(cmdPerAdmission)} commands per admission in all, the confirmations batched behind the answers (single events); verified tokens cached until exp (shared/auth.test.ts)`,
          verdict(rtPerAdmission <= 1.5),
        ],
        [
          'each Pub/Sub-triggered function ≤ 3 × the no-op handler’s CPU per event',
          `no-op ${f3(noopMs)} ms/request; ${fnRatios.map((x) => `${x.fn} ${f3(x.ms)} ms (${f1(x.ratio)}×)`).join(', ')}`,
          verdict(fnRatios.every((x) => x.ratio <= 3)),
        ],
        [
          'end-to-end sustained throughput ≥ 0.8 × the bus ceiling; p99 202 → progress ≤ 1.5 × the ceiling’s (each workload and offered rate)',
          ceilingV.rows
            ? `lowest throughput ratio ${f2(ceilingV.minThroughput)}×, highest p99 ratio ${f2(ceilingV.maxP99)}× over ${ceilingV.rows} runs (section "Bus ceiling")`
            : 'not measured (see the notes)',
          verdict(ceilingV.met),
        ],
        [
          'the soak holds (20,000 learners, 40,000 events)',
          soakV
            ? `${f0(r.soak!.learners)} learners, ${f0(r.soak!.events)} events at ${r.soak!.rate}/s${r.soak!.events < 40_000 ? ' (smaller than the target’s: it cannot meet it)' : ''}: last/first tenth applied/s ${f2(soakV.throughput)}×, emulator threads ${f2(soakV.threads)}×, emulator RSS ${f2(soakV.emulatorRss)}×, emulator live heap ${f2(soakV.liveHeap)}×, largest worker RSS growth ${soakV.worstWorker[0]} ${f2(soakV.worstWorker[1])}×; ${soakV.holds ? 'holds' : 'does not hold'}`
            : 'not run (`npm run bench -- --soak`)',
          verdict(!!soakV?.holds && r.soak!.events >= 40_000 && r.soak!.learners >= 20_000),
        ],
        [
          'cost per million interactions ≤ 0.5 × the figure at the start of issue 14',
          cost
            ? `$${f2(cost.total)} now; ${start ? `$${f2(start.usdPerMillion)} at the start (${start.note})` : 'no start figure recorded (bench/start-cost.json)'}`
            : 'n/a',
          verdict(!!cost && !!start && cost.total <= 0.5 * start.usdPerMillion),
        ],
      ],
    ),
    '',
    '## Operations per event',
    '',
    table(
      ['operation', 'per event', 'how'],
      [
        [
          'Redis (ingest, single events)',
          ingestSingle?.redis
            ? `${f2(ingestSingle.redis.requests / ingestSingle.acceptedEvents)} round trips, ${f2(ingestSingle.redis.commands / ingestSingle.acceptedEvents)} commands`
            : 'not counted',
          'counted at the Upstash REST endpoint during the single-event throughput run',
        ],
        ...r.cfg.shapes
          .filter((b) => b > 1)
          .map((b) => {
            const t = by('ingest', b);
            return [
              `Redis (ingest, batches of ${b})`,
              t?.redis
                ? `${f3(t.redis.requests / t.acceptedEvents)} round trips, ${f3(t.redis.commands / t.acceptedEvents)} commands`
                : 'not counted',
              'counted, as above',
            ];
          }),
        [
          'Redis (whole pipeline)',
          e200?.redis
            ? `${f2(e200.redis.requests / ingestedIn(e200))} round trips, ${f2(e200.redis.commands / ingestedIn(e200))} commands sent, ${e200.redis.billed !== undefined ? f2(e200.redis.billed / ingestedIn(e200)) : 'n/a'} billed`
            : 'not counted',
          `counted during the end-to-end run at ${e200?.rate ?? '?'} events/s, per interaction ingested; billed = as Upstash bills (every command a script runs counts; bench/prices.json)`,
        ],
        [
          'Pub/Sub deliveries (pushes to functions)',
          e200 ? f2(e200.bridge.delivered / Math.max(1, ingestedIn(e200))) : 'n/a',
          'counted by the bridge',
        ],
        ...opsRows(r.e2e),
      ],
    ),
    '',
    '## Cost per million interactions (production list prices)',
    '',
    cost
      ? table(
          ['item', 'per event', 'USD per million', 'how'],
          [
            ...cost.rows.map((c) => [c.item, c.perEvent, f2(c.usdPerMillion), c.how]),
            [
              '**total**',
              '',
              `**${f2(cost.total)}**`,
              'Cloud SQL (an instance billed per hour) not included',
            ],
            [
              'hosted pipeline for comparison',
              '',
              f2(prices.hostedPipelines.rudderstackGrowthPerMonthFor1M),
              `RudderStack Growth, 1M events/month (${prices.hostedPipelines.status}; ${prices.hostedPipelines.source})`,
            ],
          ],
        )
      : 'n/a (no end-to-end run)',
    '',
    `Prices: bench/prices.json (${prices.date}; sources and which are assumptions are listed there). CPU and memory measured on this loaded machine are an upper bound for production instances.`,
    '',
  ];
  if (r.soak) {
    out.push(
      '## Soak',
      '',
      `${f0(r.soak.events)} events of ${f0(r.soak.learners)} distinct learners (two each; every slice half new learners, half returning) offered at ${r.soak.rate} events/s with the whole pipeline running, in ten slices; no partner entitled (partner topics keep one ordering key per learner reference, and the emulator a thread per key); the ${f0(r.soak.drained)} messages of the subscriptions without a function (memory service, agents, audit, backend) were pulled and acknowledged as their consumers would. Applied = interactions written to the PostgreSQL ledger during the slice; backlog = accepted so far − applied so far.`,
      '',
      table(
        [
          'slice',
          'accepted',
          'accepted/s',
          'applied/s',
          'backlog',
          'emulator threads',
          'emulator RSS MiB',
          'emulator live heap MiB',
          'largest worker RSS MiB',
        ],
        r.soak.tenths.map((t, i) => {
          const [name, m] = Object.entries(t.workerRssMiB).reduce((a, b) => (b[1] > a[1] ? b : a), ['-', 0]);
          return [
            i + 1,
            f0(t.accepted),
            f1(t.eventsPerSec),
            f1(t.appliedPerSec),
            f0(t.backlog),
            f0(t.emulatorThreads),
            f0(t.emulatorRssMiB),
            f0(t.emulatorLiveHeapMiB),
            `${name} ${f0(m)}`,
          ];
        }),
      ),
      '',
    );
  }
  return out;
}

function whereTimeGoes(
  r: ReportInput,
  ratios: Array<{ batch: number; ratio: number }>,
  e: E2EResult | undefined,
): string[] {
  const out: string[] = [];
  const ms = (t: ShotResult & { cpu: Record<string, number> }, k: string) =>
    t.cpu[k] !== undefined ? (1000 * t.cpu[k]!) / Math.max(1, t.acceptedEvents) : Number.NaN;
  const single = r.throughput.find((t) => t.target === 'ingest' && t.batch === 1);
  const singleBase = r.throughput.find((t) => t.target === 'baseline' && t.batch === 1);
  if (single && singleBase) {
    out.push(
      `Single events: the ingest worker spends ${f3(ms(single, 'fn:ingestInteraction'))} ms of CPU per event, the bare baseline ${f3(ms(singleBase, 'baseline'))} ms. The difference is per request: ES256 JWT verification, the zod validation, and one Upstash REST round trip (the admission pipeline: deny-list, quotas, de-duplication claims; the confirmations follow in batches), which also cost ${f3(ms(single, SUITE))} ms per event in the process serving the Upstash REST endpoint and ${f3(ms(single, 'Redis'))} ms in Redis. The Pub/Sub emulator spends ${f3(ms(single, 'Pub/Sub emulator'))} ms (ingest) and ${f3(ms(singleBase, 'Pub/Sub emulator'))} ms (baseline) per published event.`,
    );
  }
  const b100 = ratios.find((x) => x.batch === 100);
  const b1 = ratios.find((x) => x.batch === 1);
  const i100 = r.throughput.find((t) => t.target === 'ingest' && t.batch === 100);
  if (b100 && b1 && i100) {
    out.push(
      `Batches amortise the per-request work (one token, one rate-limit call, one Redis script for all ids): ingest/baseline goes from ${f2(b1.ratio)}× for single events to ${f2(b100.ratio)}× for batches of 100. What is left per event is the publish: the client sends one Publish RPC per ordering key in flight (the student id in production, one of 256 shards on the emulator), and the emulator spends ${f3(ms(i100, 'Pub/Sub emulator'))} ms of CPU per event — the ceiling for both sides on this machine.`,
    );
  }
  if (e) {
    const rows = Object.entries(e.cpu).filter(([k]) => k !== 'baseline' && k !== LOADGEN && k !== MACHINE);
    const sum = rows.reduce((a, [, v]) => a + v, 0);
    const top = rows.sort((a, b) => b[1] - a[1]).slice(0, 4);
    out.push(
      `Pipeline at ${e.rate} events/s: ${f2((1000 * sum) / Math.max(1, e.accepted))} ms of CPU per event over the processes of the suite; the largest shares are ${top.map(([k, v]) => `${k.replace(/^fn:/, '')} ${pct(v / sum)}`).join(', ')}. At ${f2((1000 * sum) / Math.max(1, e.accepted))} ms per event, ${os.cpus().length} cores cannot sustain more than about ${f0((os.cpus().length * 1000) / Math.max(0.001, (1000 * sum) / Math.max(1, e.accepted)))} events/s end to end even with nothing else running.`,
      `End-to-end latency at ${e.rate} events/s builds up as: published and routed (202 → triage decision p50 ${f1(e.triage.p50)} ms), ledger transaction (202 → applied p50 ${f1(e.ledger.p50)} ms), Firestore projection (202 → readable p50 ${f1(e.readableDist.p50)} ms); the tail (p99 ${f1(e.readableDist.p99)} ms) is queueing for the shared cores — every message crosses the bridge and the emulator several times (interaction → routeTriage, updateProgress, mirrorToPartners; decision → audit and agent topics; progress event → mirrorToPartners).`,
    );
  }
  out.push(
    'Inside the ingest worker (a `node --cpu-prof` profile of the worker under 16 concurrent single-event posts, taken while writing this bench): about 17 % of its busy time goes to `node:domain` and async-hook bookkeeping, because the Functions Framework wraps every HTTP request in a `domain` (function_wrappers.js), which makes Node run domain hooks for every promise; @upstash/redis about 15 % (four sequential REST calls per request before issue 14: revocation check, rate limit, de-duplication claim, confirmation; now one admission pipeline and batched confirmations); gRPC / google-gax / Pub/Sub client about 35 %; garbage collection about 9 %. The baseline pays the domain and gRPC share too, not the Upstash and JWT share.',
    `The emulator's JVM starts with about 45 threads and ends a run with up to ${f0(Math.max(...r.emulator.map((e) => e.threads).filter(Number.isFinite), 0))} (table above) and up to ${f0(Math.max(...r.emulator.map((e) => e.rss).filter(Number.isFinite), 0))} MiB: its threads grow with the number of distinct ordering keys (learners) it has seen, which is what makes it slower the longer it runs, and why the bench restarts it before each measurement.`,
    'The Pub/Sub emulator is the ceiling of the local stack: the publisher batches only messages of one ordering key (on the emulator one of 256 shards of the student id; docs/performance.md §4), so it sends about one Publish RPC per event at these rates, and each message fans out to several ordered subscriptions (routeTriage, updateProgress, mirrorToPartners, memory.interactions, the audit and agent topics after triage). The emulator in this SDK (cloud-pubsub-emulator 0.8.20) also throws `NoSuchMethodError` in `onRstStreamRead` for every cancelled RPC (a publish that hits its 10 s deadline, a subscriber that closes): once it is overloaded, timeouts make it slower still. The bench keeps at most ~400 events in flight for that reason.',
  );
  out.push(
    "Everything — load generator, functions, bridge, Java emulators, PostgreSQL, Redis — shares the same cores, so absolute figures are a floor for this machine, not a production capacity (managed Pub/Sub, Firestore and Cloud SQL do not run on the functions' cores); the ratios to the baseline are the portable result.",
  );
  return out;
}

await main();
process.exit(process.exitCode ?? 0);
