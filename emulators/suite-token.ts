import { randomBytes, timingSafeEqual } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The local suite's own bearer token: what the real services' credentials are to their APIs. It guards
 * the storage emulator's JSON API (storage/auth.ts) and `/_ldr/control/*`; `npm start` prints it, tests
 * and tools read it from `<dataDir>/suite-token` (mode 0600). Made once per data dir, kept across restarts.
 */
export async function ensureSuiteToken(dataDir: string): Promise<string> {
  const file = join(dataDir, 'suite-token');
  await mkdir(dataDir, { recursive: true });
  const existing = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (existing?.trim()) return existing.trim();
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temp, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
  try {
    await link(temp, file); // appears whole or not at all; the first of two racing processes wins
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(temp);
  }
  return (await readFile(file, 'utf8')).trim();
}

/** `Authorization: Bearer <token>` (scheme in any case), compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m || !token) return false;
  const a = Buffer.from(m[1]!);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}
