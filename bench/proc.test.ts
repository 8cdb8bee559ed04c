import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cpuIdle, cpuSeconds, jcmd, jvmLiveHeapMiB } from './proc.ts';

describe('jcmd', () => {
  it('never attaches to a process that is not java (jcmd would end it with SIGQUIT)', async () => {
    await expect(jcmd(process.pid, 'GC.heap_info')).rejects.toThrow('not a java process');
    expect(await jvmLiveHeapMiB(process.pid)).toBeNaN();
    expect(await jvmLiveHeapMiB(2 ** 22 + 1)).toBeNaN(); // no such process
  });
});

describe('cpuIdle', () => {
  const burn = (ms: number, thenIdle: boolean) =>
    spawn(process.execPath, [
      '-e',
      `const t = Date.now(); while (Date.now() - t < ${ms}); ${thenIdle ? 'setInterval(() => {}, 1000)' : ''}`,
    ]);

  it('waits out the work a process does after the load stopped, and reads its CPU once it is still', async () => {
    const child = burn(400, true);
    try {
      const cpu = await cpuIdle(child.pid!, 10_000);
      // the 400 ms busy loop is counted: it did not stop reading while the process was still working
      expect(cpu).toBeGreaterThanOrEqual(0.3);
      expect(cpuSeconds(child.pid!)).toBe(cpu);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('gives up at its deadline on a process that never goes quiet, and at once on one that is gone', async () => {
    const child = burn(60_000, false);
    try {
      const t0 = Date.now();
      expect(await cpuIdle(child.pid!, 600)).toBeUndefined();
      expect(Date.now() - t0).toBeLessThan(3_000);
    } finally {
      child.kill('SIGKILL');
    }
    expect(await cpuIdle(2 ** 22 + 1, 5_000)).toBeUndefined();
  });
});
