import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { reapStale } from './procs.ts';

const dirs: string[] = [];
const dataDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'ldr-procs-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('reapStale', () => {
  it('refuses to start over a room that is still running, and kills none of its processes', async () => {
    const dir = dataDir();
    // the owner is alive (our parent process): a second start must not reap its children
    writeFileSync(join(dir, 'owner.pid'), String(process.ppid));
    await expect(reapStale(dir)).rejects.toThrow(/already running/);
    expect(readFileSync(join(dir, 'owner.pid'), 'utf8')).toBe(String(process.ppid));
  });

  it('takes over the data dir of a room that is gone', async () => {
    const dir = dataDir();
    writeFileSync(join(dir, 'owner.pid'), '999999999');
    await reapStale(dir);
    expect(readFileSync(join(dir, 'owner.pid'), 'utf8')).toBe(String(process.pid));
  });
});
