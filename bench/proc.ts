/**
 * What /proc says about the processes of the local suite: CPU time (utime + stime, in seconds) and resident
 * memory. Linux only; on other systems every reading is undefined and the reports say "n/a".
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

let ticks: number | undefined;
/** Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`, 100 on every usual Linux). */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

export interface ProcStat {
  pid: number;
  comm: string;
  ppid: number;
  pgrp: number;
  /** utime + stime of the process itself, seconds */
  cpu: number;
  /** cutime + cstime: children it has waited for, seconds */
  childCpu: number;
}

/** /proc/<pid>/stat, or undefined when the process is gone. The command name may hold spaces and parentheses. */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const f = text.slice(close + 2).split(' ');
  // f[0] = state (field 3); utime is field 14 → f[11]
  const n = (i: number) => Number(f[i] ?? 0);
  const hz = clockTicks();
  return { pid, comm, ppid: n(1), pgrp: n(2), cpu: (n(11) + n(12)) / hz, childCpu: (n(13) + n(14)) / hz };
}

/** CPU seconds used so far by one process (not its children). */
export const cpuSeconds = (pid: number): number | undefined => procStat(pid)?.cpu;

/**
 * Waits until a process's CPU time has not moved for `quietMs` (work it does after its last answer, such as
 * batched publishes or GC, belongs to the measurement), at most `timeoutMs`. Resolves with its CPU seconds
 * then, or undefined at the deadline or when the process is gone.
 */
export async function cpuIdle(pid: number, timeoutMs: number, quietMs = 150): Promise<number | undefined> {
  let last = cpuSeconds(pid);
  const deadline = Date.now() + timeoutMs;
  while (last !== undefined && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, quietMs));
    const now = cpuSeconds(pid);
    if (now === last) return now;
    last = now;
  }
  return undefined;
}

/** Every live process, read once. */
export function allProcesses(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = procStat(Number(d));
    if (s) out.push(s);
  }
  return out;
}

/**
 * CPU seconds of a whole process group (a Java emulator under its shell wrapper, PostgreSQL and its
 * backends): the live members plus what the leader collected from children that exited.
 */
export function groupCpuSeconds(pgid: number, snapshot = allProcesses()): number | undefined {
  const members = snapshot.filter((p) => p.pgrp === pgid);
  if (!members.length) return undefined;
  const leader = members.find((p) => p.pid === pgid);
  return members.reduce((a, p) => a + p.cpu, 0) + (leader?.childCpu ?? 0);
}

/** Resident set size of a process in MiB (VmRSS of /proc/<pid>/status). */
export function rssMiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Resident memory of a process group in MiB. */
export function groupRssMiB(pgid: number, snapshot = allProcesses()): number | undefined {
  const members = snapshot.filter((p) => p.pgrp === pgid);
  if (!members.length) return undefined;
  return members.reduce((a, p) => a + (rssMiB(p.pid) ?? 0), 0);
}

/**
 * The managed processes of a suite data dir, by name: `<dataDir>/pids/<name>.pid` (emulators, PostgreSQL,
 * function workers) and `<dataDir>/redis/redis-<port>.pid`.
 */
export function suitePids(dataDir: string): Record<string, number> {
  const out: Record<string, number> = {};
  const read = (file: string) => Number(readFileSync(file, 'utf8').trim());
  const pids = join(dataDir, 'pids');
  if (existsSync(pids)) {
    for (const f of readdirSync(pids)) if (f.endsWith('.pid')) out[f.slice(0, -4)] = read(join(pids, f));
  }
  const redis = join(dataDir, 'redis');
  if (existsSync(redis)) {
    for (const f of readdirSync(redis))
      if (/^redis-\d+\.pid$/.test(f)) out['redis-server'] = read(join(redis, f));
  }
  return out;
}

/** Busy CPU seconds of the whole machine so far (all cores; /proc/stat user+nice+system+irq+softirq+steal). */
export function machineBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('cpu '));
    const f = line!.trim().split(/\s+/).slice(1).map(Number);
    return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / clockTicks();
  } catch {
    return undefined;
  }
}

/** Sends SIGKILL to what is left of a suite's processes (process groups of its pid files), checking each pid still runs the same program. */
export function killLeftovers(pids: Record<string, ProcStat>) {
  for (const before of Object.values(pids)) {
    const now = procStat(before.pid);
    if (!now || now.comm !== before.comm) continue;
    try {
      if (now.pgrp === now.pid) process.kill(-now.pid, 'SIGKILL');
      else process.kill(now.pid, 'SIGKILL');
    } catch {}
  }
}

/**
 * Asks a JVM something through `jcmd <pid> <command>` (the JDK's tool); rejects when jcmd or the JVM fails,
 * and at once when `pid` is not a java process: jcmd attaches by sending SIGQUIT, which would end any other.
 */
export function jcmd(pid: number, command: string): Promise<string> {
  let exe = '';
  try {
    exe = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
  } catch {}
  if (!/(^|\/)java$/.test(exe)) return Promise.reject(new Error(`pid ${pid} is not a java process`));
  return new Promise((resolve, reject) =>
    execFile('jcmd', [String(pid), command], { timeout: 30_000 }, (err, out) =>
      err ? reject(err) : resolve(out),
    ),
  );
}

/**
 * A JVM's live heap: what its heap holds right after a full collection (`GC.run`, then `GC.heap_info`), in
 * MiB; NaN when jcmd is not there or the JVM does not answer.
 */
export async function jvmLiveHeapMiB(pid: number): Promise<number> {
  try {
    await jcmd(pid, 'GC.run');
    const used = /\btotal \d+K, used (\d+)K/.exec(await jcmd(pid, 'GC.heap_info'))?.[1];
    return used ? Number(used) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
