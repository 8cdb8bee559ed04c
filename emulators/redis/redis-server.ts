import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createLogger } from '../../shared/log.ts';

const log = createLogger('redis-server');

const INSTALL_HINT = 'install it with: apt-get install -y --no-install-recommends redis-server';
const READY_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 3_000;

export interface RedisServer {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts redis-server on 127.0.0.1:port and waits until it answers PING. It persists as Upstash does: an
 * append-only file under `dir` (fsync every second), so revoked jtis, de-duplication windows and rate limits
 * survive a stop and start (`appendonly-<port>/`; Redis ≥ 7). No RDB snapshots.
 */
export async function startRedisServer(opts: { port: number; dir: string }): Promise<RedisServer> {
  const { port } = opts;
  const dir = path.resolve(opts.dir);
  const pidfile = path.join(dir, `redis-${port}.pid`);
  const logfile = path.join(dir, `redis-${port}.log`);
  await mkdir(dir, { recursive: true });
  await killStale(pidfile);
  await rm(logfile, { force: true });

  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', ''];
  args.push('--appendonly', 'yes', '--appendfsync', 'everysec', '--appenddirname', `appendonly-${port}`);
  args.push('--dir', dir, '--pidfile', pidfile, '--logfile', logfile, '--daemonize', 'no');
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new Error(`redis-server not found on PATH; ${INSTALL_HINT}`)
          : new Error(`cannot start redis-server: ${err.message}`),
      ),
    );
  });
  const pid = child.pid!;
  child.once('exit', (code, signal) => log.info({ pid, port, code, signal }, 'redis-server exited'));

  try {
    await waitForPing(port, child, READY_TIMEOUT_MS);
  } catch (err) {
    await stopChild(child, exited);
    const tail = await readFile(logfile, 'utf8').then(
      (s) => s.trim().split('\n').slice(-5).join('\n'),
      () => '',
    );
    throw new Error(`redis-server on port ${port} did not start: ${(err as Error).message}\n${tail}`);
  }
  log.info({ pid, port, dir }, 'redis-server ready');

  return {
    port,
    pid,
    stop: () => stopChild(child, exited),
  };
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if (await within(exited, STOP_TIMEOUT_MS)) return;
  child.kill('SIGKILL');
  await exited;
}

/** A pidfile left by a crashed run: if it still names a live redis-server, stop that process. */
async function killStale(pidfile: string): Promise<void> {
  const pid = Number.parseInt(await readFile(pidfile, 'utf8').catch(() => ''), 10);
  if (Number.isInteger(pid) && pid > 0 && (await isRedisServer(pid))) {
    log.warn({ pid, pidfile }, 'killing stale redis-server');
    signal(pid, 'SIGTERM');
    if (!(await pollUntil(() => !alive(pid), STOP_TIMEOUT_MS))) {
      signal(pid, 'SIGKILL');
      await pollUntil(() => !alive(pid), STOP_TIMEOUT_MS);
    }
  }
  await rm(pidfile, { force: true });
}

async function isRedisServer(pid: number): Promise<boolean> {
  const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return comm.trim() === 'redis-server' || cmdline.split(/[\0 ]/)[0]?.endsWith('redis-server') === true;
}

/** True while the process exists and is not a zombie waiting to be reaped by its parent. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function waitForPing(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`process exited early (code ${child.exitCode}, signal ${child.signalCode})`);
    }
    if (await ping(port)) return;
    await delay(25);
  }
  throw new Error(`no PONG within ${timeoutMs} ms`);
}

/** One PING over a raw socket; true on +PONG. */
export function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

async function pollUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await delay(25);
  }
  return check();
}

async function within(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
