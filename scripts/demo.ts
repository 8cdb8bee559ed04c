/** `npm run demo`: the seed's end-to-end flow against the running room (`npm start` in another terminal). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runDemo } from './demo-flow.ts';

process.env.METADATA_SERVER_DETECTION ??= 'none';
const dataDir = process.env.LDR_DATA_DIR ?? join(new URL('..', import.meta.url).pathname, '.ldr');
if (!existsSync(join(dataDir, 'suite.json'))) {
  console.error('demo: the room is not running; start it with `npm start` in another terminal first');
  process.exit(2);
}
try {
  await runDemo(dataDir);
  console.log('demo: every hop worked');
  process.exit(0);
} catch (err) {
  console.error(`demo: ${(err as Error).message}`);
  process.exit(1);
}
