import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';

const dir = new URL('./migrations/', import.meta.url);

/** Applies shared/migrations/*.sql in name order, each once, under an advisory lock. */
export async function migrate(pool: pg.Pool): Promise<string[]> {
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    // migrations may run long (and wait for another migrator's lock): no statement_timeout here
    await client.query('SET statement_timeout = 0');
    await client.query('SELECT pg_advisory_lock(7402)');
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const done = new Set((await client.query('SELECT name FROM schema_migrations')).rows.map((r) => r.name));
    for (const name of readdirSync(dir)
      .filter((f) => f.endsWith('.sql'))
      .sort()) {
      if (done.has(name)) continue;
      await client.query('BEGIN');
      await client.query(readFileSync(new URL(name, dir), 'utf8'));
      await client.query('INSERT INTO schema_migrations (name) VALUES ($1)', [name]);
      await client.query('COMMIT');
      applied.push(name);
    }
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await client.query('SELECT pg_advisory_unlock(7402)').catch(() => {});
    client.release();
  }
  return applied;
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The GRANT statements for function database users: readwrite (DML + sequences) or read (SELECT). */
export function grantStatements(grants: Record<string, 'readwrite' | 'read'>): string[] {
  return Object.entries(grants).flatMap(([user, level]) => {
    const u = quoteIdent(user);
    return level === 'readwrite'
      ? [
          `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${u}`,
          `GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ${u}`,
        ]
      : [`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${u}`];
  });
}
