import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../shared/log.ts';

/**
 * The Firestore emulator keeps its data in memory; the local room keeps it across restarts as Firebase's
 * `--import` / `--export-on-exit` do: an export (the emulator's `POST /emulator/v1/projects/<p>:export`)
 * every `intervalMs` while something may have written, and one at stop; the next start imports the newest
 * complete export (`--import-data`). Each export is its own `firestore_export_<ts>/` directory, complete
 * once its `.overall_export_metadata` exists, so a crash during an export leaves the previous one usable.
 */
export function latestExport(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  for (const name of readdirSync(dir).sort().reverse()) {
    const meta = join(dir, name, `${name}.overall_export_metadata`);
    if (existsSync(meta)) return meta;
  }
  return undefined;
}

export interface FirestorePersistence {
  /** something may have written: export at the next tick */
  markDirty(): void;
  /** exports now if dirty (or when forced) */
  flush(force?: boolean): Promise<void>;
  /** stops the timer and exports a last time */
  stop(): Promise<void>;
}

export function persistFirestore(opts: {
  url: string;
  projectId: string;
  dir: string;
  intervalMs?: number;
  log?: Logger;
}): FirestorePersistence {
  let dirty = false;
  let running: Promise<void> | undefined;
  const exportNow = async () => {
    mkdirSync(opts.dir, { recursive: true });
    const res = await fetch(`${opts.url}/emulator/v1/projects/${opts.projectId}:export`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        database: `projects/${opts.projectId}/databases/(default)`,
        export_directory: opts.dir,
      }),
      signal: AbortSignal.timeout(60_000),
    });
    if (!res.ok) throw new Error(`Firestore export failed: HTTP ${res.status} ${await res.text()}`);
    // keep the newest complete export only
    const keep = latestExport(opts.dir);
    for (const name of readdirSync(opts.dir)) {
      if (keep && !keep.startsWith(join(opts.dir, name, '/')))
        rmSync(join(opts.dir, name), { recursive: true });
    }
  };
  const flush = async (force = false) => {
    if (running) await running;
    if (!dirty && !force) return;
    dirty = false;
    running = exportNow()
      .catch((err: Error) => {
        dirty = true;
        opts.log?.warn({ err: err.message }, 'Firestore export failed; retrying at the next tick');
      })
      .finally(() => {
        running = undefined;
      });
    await running;
  };
  const timer = setInterval(() => void flush(), opts.intervalMs ?? 10_000);
  timer.unref();
  return {
    markDirty: () => {
      dirty = true;
    },
    flush,
    stop: async () => {
      clearInterval(timer);
      await flush(true);
    },
  };
}
