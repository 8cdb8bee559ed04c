import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

/** Child processes of the local suite: started with a pid file, stopped by pid (whole process group). */
export interface Managed {
  name: string;
  pid: number;
  child: ChildProcess;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export function pidDir(dataDir: string) {
  const dir = join(dataDir, 'pids');
  mkdirSync(dir, { recursive: true });
  return dir;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Kills what a crashed earlier run left behind (its pid files), so a second start recovers — but never
 * what a room that is still running owns: the owner's pid is kept in `<dataDir>/owner.pid`, and while
 * that process lives a second start is refused instead.
 */
export async function reapStale(dataDir: string) {
  const dir = pidDir(dataDir);
  const ownerFile = join(dataDir, 'owner.pid');
  const owner = existsSync(ownerFile) ? Number(readFileSync(ownerFile, 'utf8')) : 0;
  if (owner > 1 && owner !== process.pid && alive(owner)) {
    throw new Error(
      `a room is already running from ${dataDir} (pid ${owner}); stop it (Ctrl-C, or kill -INT ${owner}) first`,
    );
  }
  writeFileSync(ownerFile, String(process.pid));
  const { readdirSync } = await import('node:fs');
  for (const f of readdirSync(dir)) {
    const pid = Number(readFileSync(join(dir, f), 'utf8'));
    if (pid > 1 && alive(pid)) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      await waitFor(() => !alive(pid), 5_000, `stale process ${f} (pid ${pid}) to exit`);
    }
    rmSync(join(dir, f), { force: true });
  }
}

export function startProcess(
  name: string,
  cmd: string,
  args: string[],
  opts: {
    dataDir: string;
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    logFile?: string;
    inheritOutput?: boolean;
    /** how to ask it to stop: default SIGTERM to the whole group; PostgreSQL wants SIGINT to the postmaster */
    stopSignal?: NodeJS.Signals;
    stopGroup?: boolean;
    stopGraceMs?: number;
  },
): Managed {
  const logDir = join(opts.dataDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const out = opts.inheritOutput ? 'inherit' : openSync(opts.logFile ?? join(logDir, `${name}.log`), 'a');
  const spawnOpts: SpawnOptions = {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    detached: true, // own process group: stop() reaches grandchildren (java under shell wrappers)
    stdio: ['ignore', out, out],
  };
  const child = spawn(cmd, args, spawnOpts);
  if (!child.pid) throw new Error(`could not start ${name} (${cmd})`);
  const pid = child.pid;
  const pidFile = join(pidDir(opts.dataDir), `${name}.pid`);
  writeFileSync(pidFile, String(pid));
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      rmSync(pidFile, { force: true });
      resolve(code);
    });
    child.once('error', () => resolve(-1));
  });
  return {
    name,
    pid,
    child,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const kill = (sig: NodeJS.Signals) => {
        try {
          process.kill(-pid, sig);
        } catch {}
      };
      if (opts.stopGroup === false) {
        try {
          process.kill(pid, opts.stopSignal ?? 'SIGTERM');
        } catch {}
      } else kill(opts.stopSignal ?? 'SIGTERM');
      const timer = setTimeout(() => kill('SIGKILL'), opts.stopGraceMs ?? 5_000);
      await exited;
      clearTimeout(timer);
      kill('SIGKILL'); // leftovers in the group
    },
  };
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const portOpen = (port: number, host = '127.0.0.1') =>
  new Promise<boolean>((resolve) => {
    const s = net.connect({ port, host });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export async function assertPortFree(port: number, what: string) {
  if (await portOpen(port)) {
    throw Object.assign(
      new Error(`port ${port} for ${what} is in use by another program; stop it or choose another port`),
      { code: 'EADDRINUSE' },
    );
  }
}

export function requireFile(path: string, what: string, hint: string) {
  if (!existsSync(path)) throw new Error(`${what} not found at ${path}: ${hint}`);
}
