import { describe, expect, it } from 'vitest';
import { jcmd, jvmLiveHeapMiB } from './proc.ts';

describe('jcmd', () => {
  it('never attaches to a process that is not java (jcmd would end it with SIGQUIT)', async () => {
    await expect(jcmd(process.pid, 'GC.heap_info')).rejects.toThrow('not a java process');
    expect(await jvmLiveHeapMiB(process.pid)).toBeNaN();
    expect(await jvmLiveHeapMiB(2 ** 22 + 1)).toBeNaN(); // no such process
  });
});
