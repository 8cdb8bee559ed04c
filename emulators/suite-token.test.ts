import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bearerMatches, ensureSuiteToken } from './suite-token.ts';

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

describe('suite token', () => {
  it('is made once per data dir, mode 0600, and kept', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'suite-token-'));
    dirs.push(dir);
    const [a, b] = await Promise.all([ensureSuiteToken(dir), ensureSuiteToken(dir)]);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(b).toBe(a);
    expect(await ensureSuiteToken(dir)).toBe(a);
    expect((await readFile(join(dir, 'suite-token'), 'utf8')).trim()).toBe(a);
    expect((await stat(join(dir, 'suite-token'))).mode & 0o777).toBe(0o600);
  });

  it.each([
    ['Bearer t0k', true],
    ['bearer t0k', true],
    ['BEARER   t0k ', true],
    ['Bearer t0kx', false],
    ['Bearer', false],
    ['Basic t0k', false],
    [undefined, false],
  ])('%j → %s', (header, ok) => {
    expect(bearerMatches(header, 't0k')).toBe(ok);
  });

  it('an empty token matches nothing', () => {
    expect(bearerMatches('Bearer ', '')).toBe(false);
  });
});
