/**
 * The local suite for the benchmark, in its own process so the load generator and the suite (functions
 * front door, Pub/Sub bridge, Upstash REST endpoint) do not share one event loop. Started by bench/run.ts
 * (with LDR_BENCH_FUNCTION_SOURCE for the bus ceiling: the functions run from that bundle):
 * starts the suite on free ports in a temporary data dir via startSuite, prints one JSON line
 * `{"ready": …}` on stdout, and stops everything on SIGTERM / SIGINT or when its stdin closes (the
 * benchmark went away).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts, startSuite } from '../emulators/suite.ts';

export interface SuiteReady {
  dataDir: string;
  projectId: string;
  ports: Record<string, number>;
  env: Record<string, string>;
  processPids: Record<string, number>;
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

try {
  const suite = await startSuite({
    dataDir,
    ports: await freePorts(),
    onProgress: (line) => console.error(`[bench-suite] ${line}`),
    // the bench's configuration for the functions (raised rate limits), as JSON: the workers get exactly
    // their topology's variables, so this is the only way in
    functionConfig: process.env.LDR_BENCH_FUNCTION_CONFIG
      ? (JSON.parse(process.env.LDR_BENCH_FUNCTION_CONFIG) as Record<string, string>)
      : undefined,
    // the bus ceiling's bundle (bench/ceiling.ts) instead of the built functions
    functionSource: process.env.LDR_BENCH_FUNCTION_SOURCE || undefined,
  });
  stopSuite = () => suite.stop();
  const ready: SuiteReady = {
    dataDir,
    projectId: suite.projectId,
    ports: { ...suite.ports },
    env: suite.env,
    processPids: Object.fromEntries(Object.entries(suite.processes).map(([n, p]) => [n, p.pid])),
  };
  process.stdout.write(`${JSON.stringify({ ready })}\n`);
  if (stopping) await stopping;
} catch (err) {
  console.error(`[bench-suite] could not start the suite: ${(err as Error).stack ?? err}`);
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(1);
}
