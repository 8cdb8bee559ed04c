import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Firestore } from '@google-cloud/firestore';
import { afterAll, describe, expect, it } from 'vitest';
import { latestExport, persistFirestore } from './firestore-persist.ts';
import { startFirestoreEmulator } from './google.ts';
import { freePort } from './procs.ts';

/** The room's Firestore survives a restart: exported while running, imported at the next start. */
const dataDir = mkdtempSync(join(tmpdir(), 'ldr-fs-persist-'));
const dir = join(dataDir, 'firestore');
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('Firestore persistence', () => {
  it('a document written before a stop is there after the next start; incomplete exports are skipped', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const first = await startFirestoreEmulator(port, dataDir, 'demo-ldr', latestExport(dir));
    const persistence = persistFirestore({ url, projectId: 'demo-ldr', dir, intervalMs: 60_000 });
    let db = new Firestore({ projectId: 'demo-ldr', host: `127.0.0.1:${port}`, ssl: false });
    await db.collection('progress').doc('learner-1').set({ mastery: 42 });
    persistence.markDirty();
    await persistence.flush();
    await db.collection('progress').doc('learner-2').set({ mastery: 7 });
    persistence.markDirty();
    await persistence.stop(); // the export at stop
    await db.terminate();
    await first.stop();

    const exported = latestExport(dir);
    expect(exported).toMatch(/firestore_export_\d+\.overall_export_metadata$/);
    // a crash in the middle of a later export leaves a directory without metadata: not imported
    mkdirSync(join(dir, 'firestore_export_9999999999', 'all_namespaces'), { recursive: true });
    expect(latestExport(dir)).toBe(exported);

    const second = await startFirestoreEmulator(port, dataDir, 'demo-ldr', latestExport(dir));
    try {
      db = new Firestore({ projectId: 'demo-ldr', host: `127.0.0.1:${port}`, ssl: false });
      expect((await db.collection('progress').doc('learner-1').get()).data()).toEqual({ mastery: 42 });
      expect((await db.collection('progress').doc('learner-2').get()).data()).toEqual({ mastery: 7 });
      await db.terminate();
    } finally {
      await second.stop();
    }
  }, 120_000);
});
