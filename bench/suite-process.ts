/**
 * The local suite for the benchmark, in its own process so the load generator and the suite (functions
 * front door, Pub/Sub bridge, Upstash REST endpoint) do not share one event loop. Started by bench/run.ts
 * (with LDR_BENCH_FUNCTION_SOURCE for the bus ceiling: the functions run from that bundle):
 * starts the suite on free ports in a temporary data dir via startSuite, prints one JSON line
 * `{"ready": …}` on stdout, and stops everything on SIGTERM / SIGINT or when its stdin closes (the
 * benchmark went away).
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pidDir } from '../emulators/procs.ts';
import { freePorts, type SuitePorts, startSuite } from '../emulators/suite.ts';
import { loadTopology } from '../shared/topology.ts';
import type { LabelPorts } from './counting-proxy.ts';

export interface SuiteReady {
  dataDir: string;
  projectId: string;
  ports: Record<string, number>;
  env: Record<string, string>;
  processPids: Record<string, number>;
  /** the counting proxies' stats endpoint (bench/counting-proxy.ts): GET answers a CountsSnapshot */
  countsUrl: string;
  /** the Pub/Sub emulator as the bench's baseline reaches it: through a counting proxy of its own, as the
   * functions do (the same local hop on both sides of the ingest comparison) */
  baselinePubsubHost: string;
}

/**
 * The counting proxies in their own process (bench/counting-proxy-process.ts), one set of listeners per
 * function in front of the emulators and PostgreSQL; resolves with their stats URL and ports.
 */
function startCounting(ports: SuitePorts, labels: string[]) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL('./counting-proxy-process.ts', import.meta.url).pathname],
    {
      env: {
        ...process.env,
        LDR_COUNTING_CONFIG: JSON.stringify({
          upstreams: { pubsub: ports.pubsub, firestore: ports.firestore, postgres: ports.postgres },
          labels,
        }),
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  return new Promise<{ child: typeof child; url: string; ports: Record<string, LabelPorts> }>(
    (resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const nl = buf.indexOf('\n');
        if (nl >= 0)
          resolve({
            child,
            ...(JSON.parse(buf.slice(0, nl)) as { ready: { url: string; ports: Record<string, LabelPorts> } })
              .ready,
          });
      });
      child.once('exit', (code) => reject(new Error(`counting proxies exited with ${code}`)));
    },
  );
}

process.env.METADATA_SERVER_DETECTION = 'none';
const dataDir = mkdtempSync(join(tmpdir(), 'ldr-bench-'));
chmodSync(dataDir, 0o755); // PostgreSQL runs as `postgres` when we are root and must reach its cluster dir

let stopping: Promise<void> | undefined;
let stopSuite: () => Promise<void> = async () => {};
const stop = () => {
  stopping ??= stopSuite()
    .catch((err) => console.error(`[bench-suite] stop failed: ${(err as Error).message}`))
    .finally(() => {
      rmSync(dataDir, { recursive: true, force: true });
      process.exit(0);
    });
  return stopping;
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();

let counting: Awaited<ReturnType<typeof startCounting>> | undefined;
process.on('exit', () => counting?.child.kill('SIGTERM'));
try {
  const start = async () => {
    const ports = await freePorts();
    // the function workers (only they) reach Pub/Sub, Firestore and PostgreSQL through the counting proxies
    const functions = loadTopology().functions.map((f) => f.name);
    counting = await startCounting(ports, [...functions, 'baseline']);
    const via = counting.ports;
    return startSuite({
      dataDir,
      ports,
      functionEnvOverrides: Object.fromEntries(
        functions.map((fn) => [
          fn,
          {
            PUBSUB_EMULATOR_HOST: `127.0.0.1:${via[fn]!.pubsub}`,
            FIRESTORE_EMULATOR_HOST: `127.0.0.1:${via[fn]!.firestore}`,
            DATABASE_URL: `postgres://postgres@127.0.0.1:${via[fn]!.postgres}/ldr`,
          },
        ]),
      ),
      onProgress: (line) => console.error(`[bench-suite] ${line}`),
      // the bench's configuration for the functions (raised rate limits), as JSON: the workers get exactly
      // their topology's variables, so this is the only way in
      functionConfig: process.env.LDR_BENCH_FUNCTION_CONFIG
        ? (JSON.parse(process.env.LDR_BENCH_FUNCTION_CONFIG) as Record<string, string>)
        : undefined,
      // the bus ceiling's bundle (bench/ceiling.ts) instead of the built functions
      functionSource: process.env.LDR_BENCH_FUNCTION_SOURCE || undefined,
    });
  };
  // free ports are picked before they are bound: another program may take one in between (EADDRINUSE),
  // then the suite starts again on other ports, as the test suite's global setup does
  let suite: Awaited<ReturnType<typeof startSuite>> | undefined;
  for (let attempt = 1; !suite; attempt++) {
    try {
      suite = await start();
    } catch (err) {
      counting?.child.kill('SIGTERM');
      counting = undefined;
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 3) throw err;
      console.error(`[bench-suite] ${(err as Error).message}; starting again on other ports`);
    }
  }
  const proxies = counting!;
  stopSuite = () => suite.stop();
  // after startSuite (it reaps every pid file it finds): the bench reads its CPU and kills it if left over
  writeFileSync(join(pidDir(dataDir), 'counting-proxy.pid'), String(proxies.child.pid));
  const ready: SuiteReady = {
    dataDir,
    projectId: suite.projectId,
    ports: { ...suite.ports },
    env: suite.env,
    processPids: Object.fromEntries(Object.entries(suite.processes).map(([n, p]) => [n, p.pid])),
    countsUrl: proxies.url,
    baselinePubsubHost: `127.0.0.1:${proxies.ports.baseline!.pubsub}`,
  };
  process.stdout.write(`${JSON.stringify({ ready })}\n`);
  if (stopping) await stopping;
} catch (err) {
  console.error(`[bench-suite] could not start the suite: ${(err as Error).stack ?? err}`);
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(1);
}
