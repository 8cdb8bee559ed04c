/**
 * Builds @ldr/client: `dist/ldr-client.js` (one ESM file for browsers and Node; Node built-ins stay dynamic
 * imports on the Node-only paths) and `dist/ldr-client.d.ts` (tsc declarations).
 * `npm run build` in client/, or `npm run build:client` at the root.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = fileURLToPath(new URL('.', import.meta.url));
const dist = `${here}dist`;
rmSync(dist, { recursive: true, force: true });
await build({
  entryPoints: [`${here}index.ts`],
  outfile: `${dist}/ldr-client.js`,
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: ['es2022'],
  external: ['node:*'],
  sourcemap: true,
  legalComments: 'none',
});
execFileSync(`${here}../node_modules/.bin/tsc`, ['-p', `${here}tsconfig.build.json`], { stdio: 'inherit' });
writeFileSync(`${dist}/ldr-client.d.ts`, "export * from './types/index.js';\n");
console.log(`built ${dist}/ldr-client.js and ldr-client.d.ts`);
