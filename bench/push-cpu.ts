/**
 * CPU per event of one Pub/Sub-triggered function against a no-op function served the same way
 * (bench/push-noop.ts: `registerEventFunction` with an empty handler, bundled, under the Functions
 * Framework CLI). Starts the local suite (only the chosen function) on free ports in a temporary data dir,
 * and the no-op; POSTs the documented push body of N interaction events, K in flight, straight to each
 * process's port, in two workloads: every event a new learner, and a mix of repeated learners (about 4
 * events each, one learner's events never in flight together, as an ordering key delivers them). Prints
 * the CPU ms per event of each process (utime + stime from /proc) and the ratio.
 *
 *   npm run bench:fn -- <updateProgress|routeTriage|mirrorToPartners> [events=2000] [concurrency=16]
 *
 * For mirrorToPartners a partner entitled to every event is provisioned, so copies are really made.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import pg from 'pg';
import { freePort, portOpen, waitFor } from '../emulators/procs.ts';
import { upsertPartner } from '../emulators/registry.ts';
import { frameworkArgs, freePorts, functionEnv, startSuite } from '../emulators/suite.ts';
import { buildArtifact } from '../scripts/build.ts';
import { toMessage } from '../shared/cloudevents.ts';
import type { Interaction } from '../shared/domain/interaction.ts';
import { interactionEvent } from '../shared/events.ts';
import { EventFactory } from './load.ts';
import { cpuIdle, cpuSeconds } from './proc.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
export const PUSH_FUNCTIONS = ['updateProgress', 'routeTriage', 'mirrorToPartners'] as const;

export interface PushBody {
  body: string;
  /** the ordering key: deliveries of one key are never in flight together */
  key: string;
}

/** Push bodies of `n` interaction events as the bridge (and Pub/Sub) posts them. */
export function pushBodies(
  n: number,
  opts: { runId: string; instances: string[]; learners: number; subscription: string },
): PushBody[] {
  const factory = new EventFactory(opts.runId, Math.max(1, Math.ceil(opts.learners / opts.instances.length)));
  const now = new Date();
  return Array.from({ length: n }, (_, k) => {
    const inst = opts.instances[k % opts.instances.length]!;
    const student = factory.student(
      inst,
      Math.floor(k / opts.instances.length) % factory.studentsPerInstance,
    );
    const i = factory.event(inst, student, Math.floor(Math.random() * 1000)) as Interaction;
    const m = toMessage(interactionEvent(i, now), i.studentId);
    const messageId = String(1_000_000 + k);
    const body = {
      message: {
        data: m.data.toString('base64'),
        attributes: m.attributes,
        messageId,
        message_id: messageId,
        publishTime: now.toISOString(),
        publish_time: now.toISOString(),
        orderingKey: i.studentId,
      },
      subscription: opts.subscription,
      deliveryAttempt: 1,
    };
    return { body: JSON.stringify(body), key: i.studentId };
  });
}

export interface PushRun {
  events: number;
  cpuMsPerEvent: number;
  wallSeconds: number;
  /** answers other than 2xx */
  failed: number;
}

/**
 * Posts every body to `url` with `concurrency` in flight (never two of one key at once) and returns the CPU
 * the process `pid` spent per event, read once its CPU time has stopped moving after the last answer.
 */
export async function pushCpu(opts: {
  url: string;
  pid: number;
  bodies: PushBody[];
  concurrency: number;
  /** resolves when the effects of every event are visible (polled with a deadline) */
  settled?: () => Promise<void>;
}): Promise<PushRun> {
  const cpu = () => {
    const s = cpuSeconds(opts.pid);
    if (s === undefined) throw new Error(`process ${opts.pid} is gone`);
    return s;
  };
  const pending = [...opts.bodies];
  const busy = new Set<string>();
  let failed = 0;
  const c0 = cpu();
  const t0 = Date.now();
  let wake: (() => void) | undefined;
  const next = () => {
    const at = pending.findIndex((b) => !busy.has(b.key));
    return at < 0 ? undefined : pending.splice(at, 1)[0];
  };
  await Promise.all(
    Array.from({ length: opts.concurrency }, async () => {
      while (pending.length) {
        const b = next();
        if (!b) {
          await new Promise<void>((r) => {
            wake = r;
          });
          continue;
        }
        busy.add(b.key);
        try {
          const res = await fetch(opts.url, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: b.body,
            signal: AbortSignal.timeout(60_000),
          });
          await res.arrayBuffer();
          if (!res.ok) failed++;
        } catch {
          failed++;
        } finally {
          busy.delete(b.key);
          wake?.();
        }
      }
    }),
  );
  const wallSeconds = (Date.now() - t0) / 1000;
  await opts.settled?.();
  // work after the last answer (batched publishes, GC) counts
  const last = await cpuIdle(opts.pid, 20_000);
  if (last === undefined) throw new Error(`process ${opts.pid} did not go idle within 20 s`);
  return {
    events: opts.bodies.length,
    cpuMsPerEvent: (1000 * (last - c0)) / opts.bodies.length,
    wallSeconds,
    failed,
  };
}

/**
 * One function under the Functions Framework CLI as the suite starts it (`frameworkArgs`), on a free port;
 * `source` overrides the artifact (package.json `main`). LDR_CPU_PROF=<dir> adds `--cpu-prof` into that dir.
 */
async function serveFunction(
  name: string,
  env: NodeJS.ProcessEnv,
  source?: string,
): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const prof = process.env.LDR_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.LDR_CPU_PROF}`] : [];
  const args = [...prof, ...frameworkArgs(name, port), ...(source ? [`--source=${source}`] : [])];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: root,
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killed = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(killed);
  };
  try {
    await waitFor(() => portOpen(port), 60_000, `${name} on port ${port}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `http://127.0.0.1:${port}/`, pid: child.pid!, stop };
}

/** The no-op push function (bench/push-noop.ts), bundled and served under the Functions Framework CLI. */
export async function startPushNoop(): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const dir = join(root, '.ldr', 'bench');
  mkdirSync(dir, { recursive: true });
  const bundle = join(dir, 'push-noop.mjs');
  await build({
    absWorkingDir: root,
    entryPoints: [join(root, 'bench', 'push-noop.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    packages: 'external',
    sourcemap: 'linked',
    logLevel: 'error',
  });
  return serveFunction(
    'pushNoop',
    {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      FUNCTION_TARGET: 'pushNoop',
      LISTEN_HOST: '127.0.0.1',
      NODE_ENV: 'production',
      METADATA_SERVER_DETECTION: 'none',
    },
    bundle,
  );
}

async function main() {
  const fn = process.argv[2] as (typeof PUSH_FUNCTIONS)[number];
  const events = Number(process.argv[3] ?? 2000);
  const concurrency = Number(process.argv[4] ?? 16);
  if (!PUSH_FUNCTIONS.includes(fn) || !(events > 0) || !(concurrency > 0)) {
    console.error(`usage: npm run bench:fn -- <${PUSH_FUNCTIONS.join('|')}> [events=2000] [concurrency=16]`);
    process.exit(2);
  }
  process.env.METADATA_SERVER_DETECTION = 'none';
  await buildArtifact({ quiet: true });
  const dataDir = mkdtempSync(join(tmpdir(), 'ldr-push-cpu-'));
  chmodSync(dataDir, 0o755); // PostgreSQL runs as `postgres` when we are root
  const cleanup: Array<() => Promise<unknown>> = [
    async () => rmSync(dataDir, { recursive: true, force: true }),
  ];
  try {
    const suite = await startSuite({ dataDir, ports: await freePorts(), only: [fn] });
    cleanup.unshift(() => suite.stop());
    const noop = await startPushNoop();
    cleanup.unshift(() => noop.stop());
    // a second instance of the function, started as the suite starts its worker, so it can be profiled
    const fnProc = await serveFunction(fn, functionEnv(fn, suite.env));
    cleanup.unshift(() => fnProc.stop());
    const runId = Date.now().toString(36);
    const instances = Array.from({ length: 8 }, (_, k) => `pcpu-${runId}-i${k}`);
    if (fn === 'mirrorToPartners') {
      upsertPartner(dataDir, {
        slug: `pcpu-${runId}`,
        displayName: 'Push CPU partner',
        instances,
        eventTypes: ['learnflow.interaction.v1'],
      });
      const r = await fetch(`http://127.0.0.1:${suite.ports.functions}/_ldr/registry/apply`, {
        method: 'POST',
        headers: { authorization: `Bearer ${suite.env.LDR_ADMIN_TOKEN}` },
      });
      if (!r.ok) throw new Error(`partner provisioning failed: HTTP ${r.status}`);
    }
    const db = new pg.Pool({ connectionString: suite.env.DATABASE_URL, max: 1 });
    cleanup.unshift(() => db.end());
    const subscription = `projects/${suite.projectId}/subscriptions/fn.${fn}.interaction`;
    const targets = [
      { name: 'no-op', url: noop.url, pid: noop.pid },
      { name: fn, url: fnProc.url, pid: fnProc.pid },
    ];
    const applied = async (bodies: PushBody[]) => {
      const students = [...new Set(bodies.map((b) => b.key))];
      const { rows } = await db.query(
        'SELECT count(*)::int AS n FROM interactions WHERE student_id = ANY($1)',
        [students],
      );
      return rows[0].n as number;
    };
    // warm-up: JIT, connections, the partner directory
    const warm = pushBodies(1000, { runId: `${runId}w`, instances, learners: 250, subscription });
    for (const t of targets) await pushCpu({ ...t, bodies: warm, concurrency });
    const rows: string[] = [];
    for (const shape of ['new learners', 'repeated learners'] as const) {
      const bodies = pushBodies(events, {
        runId: `${runId}${shape[0]}`,
        instances,
        learners: shape === 'new learners' ? events : Math.ceil(events / 4),
        subscription,
      });
      const [n, f] = [
        await pushCpu({ ...targets[0]!, bodies, concurrency }),
        await pushCpu({
          ...targets[1]!,
          bodies,
          concurrency,
          settled:
            fn === 'updateProgress'
              ? () => waitFor(async () => (await applied(bodies)) === events, 30_000, 'every event applied')
              : undefined,
        }),
      ];
      rows.push(
        `| ${shape} | ${events} | ${concurrency} | ${n.cpuMsPerEvent.toFixed(3)} | ${f.cpuMsPerEvent.toFixed(3)} | ${(f.cpuMsPerEvent / n.cpuMsPerEvent).toFixed(2)}× | ${n.wallSeconds.toFixed(1)} / ${f.wallSeconds.toFixed(1)} s | ${n.failed + f.failed} |`,
      );
    }
    const load = (await import('node:fs'))
      .readFileSync('/proc/loadavg', 'utf8')
      .split(' ')
      .slice(0, 3)
      .join(' ');
    console.log(
      [
        `${fn}: CPU ms per event (utime+stime of each process), load average ${load}`,
        '| workload | events | in flight | no-op ms/event | function ms/event | ratio | wall (no-op / fn) | non-2xx |',
        '| --- | --- | --- | --- | --- | --- | --- | --- |',
        ...rows,
      ].join('\n'),
    );
  } finally {
    for (const c of cleanup) await c().catch((err) => console.error(`cleanup: ${(err as Error).message}`));
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
