import { describe, expect, it } from 'vitest';
import { suite } from '../tests/helpers.ts';
import { createPgPool } from './clients.ts';

describe('createPgPool', () => {
  it('sets statement_timeout on every session: a statement running longer is cancelled', async () => {
    const pool = await createPgPool({
      DATABASE_URL: suite().env.DATABASE_URL,
      PGDATABASE: 'ldr',
      PG_STATEMENT_TIMEOUT_MS: 300,
    });
    try {
      expect((await pool.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('300ms');
      await expect(pool.query('SELECT pg_sleep(5)')).rejects.toMatchObject({ code: '57014' });
      // the session survives the cancellation
      expect((await pool.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    } finally {
      await pool.end();
    }
  });
});
