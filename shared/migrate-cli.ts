/**
 * `node dist/migrate.js`: applies the migrations with the database settings of updateProgress
 * (DATABASE_URL, or CLOUD_SQL_INSTANCE + PGUSER + PGDATABASE through the Cloud SQL connector), then the
 * table grants in PG_GRANTS (`{"<database user>": "readwrite" | "read"}`). In production it runs as the
 * ldr-migrate Cloud Run job under the admin IAM database principal (docs/production.md).
 */
import { z } from 'zod';
import { createPgPool } from './clients.ts';
import { parseConfig } from './config.ts';
import { createLogger } from './log.ts';
import { grantStatements, migrate } from './migrate.ts';

const log = createLogger('migrate');
const grants = z
  .record(z.string().min(1), z.enum(['readwrite', 'read']))
  .parse(JSON.parse(process.env.PG_GRANTS || '{}'));
const config = parseConfig('updateProgress', process.env);
const pool = await createPgPool(config, 1);
try {
  const applied = await migrate(pool);
  log.info({ applied }, applied.length ? 'migrations applied' : 'schema is up to date');
  for (const sql of grantStatements(grants)) await pool.query(sql);
  if (Object.keys(grants).length) log.info({ users: Object.keys(grants) }, 'grants applied');
} catch (err) {
  log.error({ err: String(err) }, 'migration failed');
  process.exitCode = 1;
} finally {
  await pool.end();
}
