import { describe, expect, it } from 'vitest';
import { isTransient, retryTransient, within } from './retry.ts';

describe('retryTransient', () => {
  it('retries connection failures until the operation succeeds', async () => {
    let calls = 0;
    const v = await retryTransient(
      async () => {
        calls++;
        if (calls < 3) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        return 'ok';
      },
      { budgetMs: 5000 },
    );
    expect(v).toBe('ok');
    expect(calls).toBe(3);
  });

  it('throws other errors at once', async () => {
    let calls = 0;
    await expect(
      retryTransient(
        async () => {
          calls++;
          throw Object.assign(new Error('duplicate key'), { code: '23505' });
        },
        { budgetMs: 5000 },
      ),
    ).rejects.toThrow('duplicate key');
    expect(calls).toBe(1);
  });

  it('gives up when the budget is spent', async () => {
    const started = Date.now();
    await expect(
      retryTransient(
        async () => {
          throw Object.assign(new Error('down'), { code: '57P01' });
        },
        { budgetMs: 300 },
      ),
    ).rejects.toThrow('down');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it.each([
    [{ code: 'ECONNRESET' }, true],
    [{ code: '08006' }, true],
    [{ message: 'Connection terminated unexpectedly' }, true],
    [{ code: '23505' }, false],
    [new Error('boom'), false],
  ])('isTransient(%o) = %s', (err, want) => expect(isTransient(err)).toBe(want));
});

describe('within', () => {
  it('answers what the promise answers before the deadline, and times out after it', async () => {
    await expect(within(Promise.resolve('ok'), 50)).resolves.toBe('ok');
    await expect(within(Promise.reject(new Error('down')), 50)).rejects.toThrow('down');
    await expect(within(new Promise(() => {}), 20)).rejects.toThrow('timeout');
  });
});
