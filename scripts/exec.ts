/**
 * `npm run exec -- <command> [args…]`: starts the room (as `npm start`, data under .ldr/), runs the command
 * with the room's environment (emulator hosts, URLs, tokens, LDR_DATA_DIR, LDR_FUNCTIONS_BASE), stops the
 * room, and exits with the command's status — as `firebase emulators:exec` does.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { join } from 'node:path';
import { defaultPorts, startSuite } from '../emulators/suite.ts';

const args = process.argv.slice(2);
if (args[0] === '--') args.shift();
if (!args.length) {
  console.error('usage: npm run exec -- <command> [args…]');
  process.exit(2);
}
process.env.METADATA_SERVER_DETECTION ??= 'none';
const dataDir = join(new URL('..', import.meta.url).pathname, '.ldr');
const t0 = Date.now();
let suite: Awaited<ReturnType<typeof startSuite>>;
try {
  suite = await startSuite({ dataDir, ports: defaultPorts(), persist: true });
} catch (err) {
  console.error(`[ldr] could not start the room: ${(err as Error).message}`);
  process.exit(1);
}
console.error(`[ldr] room ready in ${((Date.now() - t0) / 1000).toFixed(1)} s; running: ${args.join(' ')}`);
const child = spawn(args[0]!, args.slice(1), {
  stdio: 'inherit',
  shell: args.length === 1, // one argument: a shell command line ("npm test && …")
  env: {
    ...process.env,
    ...suite.env,
    LDR_DATA_DIR: dataDir,
    LDR_FUNCTIONS_BASE: suite.functionUrl('').slice(0, -1),
  },
});
const forward = (sig: NodeJS.Signals) => child.kill(sig);
process.on('SIGINT', forward);
process.on('SIGTERM', forward);
const status = await new Promise<number>((resolve) => {
  child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 1)));
  child.on('error', (err) => {
    console.error(`[ldr] could not run ${args[0]}: ${err.message}`);
    resolve(127);
  });
});
await suite.stop();
console.error(`[ldr] room stopped; ${args[0]} exited with ${status}`);
process.exit(status);
