import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type Managed, requireFile, startProcess, waitFor } from './procs.ts';

let sdk: string | undefined;

/**
 * Finds the Google Cloud SDK (LDR_GCLOUD_SDK, else next to `gcloud` on PATH), once per process: a restart of
 * an emulator must not depend on spawning a shell again (that failed once under load in the bench).
 */
export function sdkRoot(): string {
  if (process.env.LDR_GCLOUD_SDK) return process.env.LDR_GCLOUD_SDK;
  if (sdk) return sdk;
  try {
    const gcloud = execFileSync('sh', ['-c', 'command -v gcloud'], { encoding: 'utf8' }).trim();
    sdk = dirname(dirname(realpathSync(gcloud)));
    return sdk;
  } catch (err) {
    throw new Error(
      `Google Cloud SDK not found (${(err as Error).message}): install it with its pubsub and firestore emulators, or set LDR_GCLOUD_SDK`,
    );
  }
}

export function requireJava() {
  try {
    const out = execFileSync('java', ['-version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('Java not found: the Pub/Sub and Firestore emulators need Java 17 or newer on PATH');
    }
    return '';
  }
}

const httpOk = (url: string) => fetch(url, { signal: AbortSignal.timeout(1000) }).then((r) => r.status < 500);

export async function startPubsubEmulator(port: number, dataDir: string): Promise<Managed> {
  const bin = join(sdkRoot(), 'platform/pubsub-emulator/bin/cloud-pubsub-emulator');
  requireFile(bin, 'Pub/Sub emulator', 'install the Google Cloud SDK component pubsub-emulator');
  const p = startProcess('pubsub-emulator', bin, [`--host=127.0.0.1`, `--port=${port}`], { dataDir });
  await Promise.race([
    waitFor(() => httpOk(`http://127.0.0.1:${port}/`), 60_000, `Pub/Sub emulator on port ${port}`),
    p.exited.then((c) => {
      throw new Error(`Pub/Sub emulator exited with ${c}; see ${dataDir}/logs/pubsub-emulator.log`);
    }),
  ]);
  return p;
}

export async function startFirestoreEmulator(
  port: number,
  dataDir: string,
  projectId: string,
  /** an export's `.overall_export_metadata` file to start from (see firestore-persist.ts) */
  importData?: string,
): Promise<Managed> {
  const jar = join(sdkRoot(), 'platform/cloud-firestore-emulator/cloud-firestore-emulator.jar');
  requireFile(jar, 'Firestore emulator', 'install the Google Cloud SDK component cloud-firestore-emulator');
  const args = [
    '-cp',
    jar,
    'com.google.cloud.datastore.emulator.firestore.CloudFirestore',
    '--host=127.0.0.1',
    `--port=${port}`,
    `--project_id=${projectId}`,
    ...(importData ? [`--import-data=${importData}`] : []),
  ];
  const p = startProcess('firestore-emulator', 'java', args, { dataDir });
  await Promise.race([
    waitFor(() => httpOk(`http://127.0.0.1:${port}/`), 60_000, `Firestore emulator on port ${port}`),
    p.exited.then((c) => {
      throw new Error(`Firestore emulator exited with ${c}; see ${dataDir}/logs/firestore-emulator.log`);
    }),
  ]);
  return p;
}

/** PostgreSQL server binaries: LDR_PG_BIN, `pg_config --bindir`, or the newest Debian cluster version. */
export function pgBinDir(): string | undefined {
  const candidates: string[] = [];
  if (process.env.LDR_PG_BIN) candidates.push(process.env.LDR_PG_BIN);
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim());
  } catch {}
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    for (const v of readdirSync(debian).sort((a, b) => Number(b) - Number(a)))
      candidates.push(join(debian, v, 'bin'));
  }
  return candidates.find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'postgres')));
}
