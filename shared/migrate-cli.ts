/**
 * `node dist/migrate.js`: applies the migrations with the database settings of updateProgress
 * (DATABASE_URL, or CLOUD_SQL_INSTANCE + PGUSER + PGDATABASE through the Cloud SQL connector). In
 * production it runs as a Cloud Run job under the migration principal (docs/production.md).
 */
import { createPgPool } from './clients.ts';
import { parseConfig } from './config.ts';
import { createLogger } from './log.ts';
import { migrate } from './migrate.ts';

const log = createLogger('migrate');
const config = parseConfig('updateProgress', process.env);
const pool = await createPgPool(config, 1);
try {
  const applied = await migrate(pool);
  log.info({ applied }, applied.length ? 'migrations applied' : 'schema is up to date');
} catch (err) {
  log.error({ err: String(err) }, 'migration failed');
  process.exitCode = 1;
} finally {
  await pool.end();
}
