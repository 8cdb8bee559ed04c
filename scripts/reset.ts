/**
 * `npm run reset`: wipes the local room's data (.ldr/: Firestore exports, Redis, PostgreSQL, storage,
 * registry, dev identity), so the next `npm start` starts clean. Refuses while the room is running.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { portOpen, reapStale } from '../emulators/procs.ts';
import { defaultDataDir } from './room.ts';

const dataDir = process.argv[2] === '--data-dir' && process.argv[3] ? process.argv[3] : defaultDataDir();
const suiteFile = join(dataDir, 'suite.json');
if (existsSync(suiteFile)) {
  const { ports } = JSON.parse(readFileSync(suiteFile, 'utf8'));
  if (await portOpen(ports.functions)) {
    console.error('reset: the room is running; stop it (Ctrl-C in its terminal) first');
    process.exit(2);
  }
}
if (!existsSync(dataDir)) {
  console.log(`reset: nothing to wipe (${dataDir} does not exist)`);
  process.exit(0);
}
await reapStale(dataDir); // what a crashed room left running
for (const entry of readdirSync(dataDir)) rmSync(join(dataDir, entry), { recursive: true, force: true });
console.log(`reset: wiped ${dataDir}; the next \`npm start\` starts clean`);
