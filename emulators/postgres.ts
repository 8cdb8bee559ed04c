import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { pgBinDir } from './google.ts';
import { type Managed, startProcess, waitFor } from './procs.ts';

/** A private PostgreSQL cluster under <dataDir>/pg, run as the `postgres` user when we are root. */
export async function startPostgres(port: number, dataDir: string): Promise<Managed & { url: string }> {
  const bin = pgBinDir();
  if (!bin) {
    throw new Error(
      'PostgreSQL server binaries (initdb, postgres) not found: install postgresql-15 or set LDR_PG_BIN',
    );
  }
  const root = join(dataDir, 'pg');
  const data = join(root, 'data');
  const sock = join(root, 'sock');
  mkdirSync(sock, { recursive: true });
  chmodSync(dataDir, 0o755);
  const asRoot = process.getuid?.() === 0;
  const prefix: string[] = [];
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(root, uid, gid);
    chownSync(sock, uid, gid);
    prefix.push('setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--');
  }
  const run = (cmd: string, args: string[]) =>
    asRoot ? { cmd: prefix[0]!, args: [...prefix.slice(1), cmd, ...args] } : { cmd, args };

  if (!existsSync(join(data, 'PG_VERSION'))) {
    const init = run(join(bin, 'initdb'), [
      '-D',
      data,
      '-A',
      'trust',
      '-U',
      'postgres',
      '--no-sync',
      '-E',
      'UTF8',
    ]);
    execFileSync(init.cmd, init.args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }
  const server = run(join(bin, 'postgres'), [
    '-D',
    data,
    '-p',
    String(port),
    '-k',
    sock,
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'fsync=off',
    '-c',
    'full_page_writes=off',
    '-c',
    'max_connections=200',
  ]);
  // fast shutdown (SIGINT to the postmaster): committed transactions are on disk before it exits
  const p = startProcess('postgres', server.cmd, server.args, {
    dataDir,
    stopSignal: 'SIGINT',
    stopGroup: false,
    stopGraceMs: 15_000,
  });
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  await Promise.race([
    waitFor(
      async () => {
        const c = new pg.Client(adminUrl);
        await c.connect();
        await c.end();
        return true;
      },
      30_000,
      `PostgreSQL on port ${port}`,
    ),
    p.exited.then((c) => {
      throw new Error(`PostgreSQL exited with ${c}; see ${dataDir}/logs/postgres.log`);
    }),
  ]);
  const admin = new pg.Client(adminUrl);
  await admin.connect();
  const { rowCount } = await admin.query(`SELECT 1 FROM pg_database WHERE datname = 'ldr'`);
  if (!rowCount) await admin.query('CREATE DATABASE ldr');
  await admin.end();
  return { ...p, url: `postgres://postgres@127.0.0.1:${port}/ldr` };
}
