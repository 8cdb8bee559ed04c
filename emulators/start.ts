/** `npm start`: the whole room on this machine until Ctrl-C. Data under .ldr/. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultPorts, startSuite } from './suite.ts';

const { values } = parseArgs({ options: { only: { type: 'string' } } });
const only = values.only
  ?.split(',')
  .map((s) => s.trim())
  .filter(Boolean);

const root = new URL('..', import.meta.url).pathname;
process.env.METADATA_SERVER_DETECTION ??= 'none';
const t0 = Date.now();
const say = (line: string) => console.log(`[ldr] ${line}`);

try {
  const suite = await startSuite({
    dataDir: join(root, '.ldr'),
    ports: defaultPorts(),
    persist: true,
    only,
    consolePort: JSON.parse(readFileSync(join(root, 'firebase.json'), 'utf8')).emulators.ui.port,
    orderedConsumers: process.env.LDR_ORDERED_CONSUMERS === '1',
    onProgress: (l) => say(`${l} (${((Date.now() - t0) / 1000).toFixed(1)} s)`),
  });
  say('endpoints:');
  const width = Math.max(...Object.keys(suite.endpoints).map((k) => k.length));
  for (const [name, url] of Object.entries(suite.endpoints)) say(`  ${name.padEnd(width)}  ${url}`);
  say(
    'tokens: npm run token -- --sub <id> --role student|teacher|app|platform|partner [--instance <id>] [--partner <slug>]',
  );
  say(`logs: ${join('.ldr', 'logs')}/ (one file per function: fn-<name>.log)`);
  say(`admin token for /_ldr/* and the storage emulator's JSON API: ${suite.env.LDR_ADMIN_TOKEN}`);
  say(`ready in ${((Date.now() - t0) / 1000).toFixed(1)} s; Ctrl-C stops everything`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    say('stopping…');
    await suite.stop();
    say('stopped');
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
} catch (err) {
  console.error(`[ldr] could not start the room: ${(err as Error).message}`);
  process.exit(1);
}
