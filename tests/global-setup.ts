import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { freePorts, startSuite } from '../emulators/suite.ts';
import { buildArtifact } from '../scripts/build.ts';

/** Starts the whole local suite on free ports in a temporary data dir, so tests can run beside `npm start`. */
export default async function setup(project: TestProject) {
  process.env.METADATA_SERVER_DETECTION = 'none';
  // the suite runs what deploys: the built artifact
  await buildArtifact({ quiet: true });
  const dataDir = mkdtempSync(join(tmpdir(), 'ldr-test-'));
  chmodSync(dataDir, 0o755);
  // Free ports are picked before the servers bind them, so another process (or one of the suite's own
  // outgoing connections) can take one in between: start again on new ports if that happens.
  const start = async () =>
    startSuite({
      dataDir,
      ports: await freePorts(),
      bridgeMinBackoffMs: 500,
      bridgeMaxBackoffMs: 5000,
      // the console, as `npm start` serves it: its pages are tested in Chromium (tests/console.int.test.ts)
      consolePort: 0,
    });
  let suite: Awaited<ReturnType<typeof startSuite>> | undefined;
  for (let attempt = 1; !suite; attempt++) {
    try {
      suite = await start();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 3) throw err;
      console.warn(`[global-setup] ${(err as Error).message}; starting again on other ports`);
    }
  }
  project.provide('suite', {
    dataDir,
    env: suite.env,
    ports: { ...suite.ports },
    projectId: suite.projectId,
    consoleUrl: suite.endpoints.console!,
    functionsBase: `http://127.0.0.1:${suite.ports.functions}/${suite.projectId}/europe-west3`,
    workerPids: Object.fromEntries([...suite.workers].map(([n, w]) => [n, w.current().pid])),
    workerPorts: Object.fromEntries([...suite.workers].map(([n, w]) => [n, w.port])),
    processPids: Object.fromEntries(Object.entries(suite.processes).map(([n, p]) => [n, p.pid])),
  });
  return async () => {
    await suite.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    suite: {
      dataDir: string;
      env: Record<string, string>;
      ports: Record<string, number>;
      projectId: string;
      /** the console the suite serves (emulators/console.ts) */
      consoleUrl: string;
      functionsBase: string;
      workerPids: Record<string, number>;
      workerPorts: Record<string, number>;
      processPids: Record<string, number>;
    };
  }
}
