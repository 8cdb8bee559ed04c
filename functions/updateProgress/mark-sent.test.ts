import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { groupedMarkSent } from './handler.ts';

/** A pool whose UPDATEs finish when the test lets them, recording the ids of each. */
function fakePool() {
  const updates: string[][] = [];
  const release: Array<(err?: Error) => void> = [];
  const pool = {
    query: (_sql: string, [ids]: [string[]]) =>
      new Promise<void>((resolve, reject) => {
        updates.push([...ids]);
        release.push((err) => (err ? reject(err) : resolve()));
      }),
  } as unknown as pg.Pool;
  return { pool, updates, release };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('groupedMarkSent', () => {
  it('sends ids that arrive while an UPDATE runs together in the next one', async () => {
    const { pool, updates, release } = fakePool();
    const mark = groupedMarkSent(pool);
    const first = mark(['a']);
    await tick();
    const second = mark(['b']);
    const third = mark(['c', 'd']);
    await tick();
    expect(updates).toEqual([['a']]); // b, c, d wait for a's UPDATE
    release[0]!();
    await first;
    await tick();
    expect(updates).toEqual([['a'], ['b', 'c', 'd']]);
    release[1]!();
    await Promise.all([second, third]);
  });

  it('fails the callers of a failed UPDATE only, and goes on', async () => {
    const { pool, updates, release } = fakePool();
    const mark = groupedMarkSent(pool);
    const first = mark(['a']);
    await tick();
    const second = mark(['b']);
    release[0]!(new Error('connection reset'));
    await expect(first).rejects.toThrow('connection reset');
    await tick();
    release[1]!();
    await second;
    expect(updates).toEqual([['a'], ['b']]);
  });
});
