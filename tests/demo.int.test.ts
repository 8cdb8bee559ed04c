/** `npm run demo` against the running suite: the seed's end-to-end flow, step by step. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runDemo } from '../scripts/demo-flow.ts';
import { suite } from './helpers.ts';

const ROOT = new URL('..', import.meta.url).pathname;

/** SPEC §7 by hand: one quiz answer with score 0.9 on one day: 100 × (0.3 × 0.9 + 0.1 × 1/7) = 28.4 */
const MASTERY = Math.round(10 * 100 * (0.3 * 0.9 + 0.1 * (1 / 7))) / 10;

describe('the demo flow', () => {
  it('every hop works, the partner copies carry no student id, mastery is as computed by hand', async () => {
    const lines: string[] = [];
    const result = await runDemo(suite().dataDir, (line) => lines.push(line));

    const steps = lines.filter((l) => !l.startsWith(' '));
    expect(steps.length).toBeGreaterThanOrEqual(9);
    for (const [i, step] of steps.entries()) expect(step).toMatch(new RegExp(`^✓ ${i + 1}\\. `));

    expect(MASTERY).toBe(28.4);
    expect(result.mastery).toBe(MASTERY);
    expect(lines).toContain(`   mastery in python.loops: ${MASTERY}`);

    for (const copy of [result.partnerCopy, result.partnerHttpCopy])
      expect(JSON.stringify(copy)).not.toContain(result.studentId);
    const copy = result.partnerCopy as { attributes: Record<string, string>; data: Record<string, unknown> };
    expect(copy.attributes['ce-id']).toBe(result.eventId);
    expect(copy.data.learnerRef).toEqual(expect.any(String));
    expect(copy.attributes['ce-subject']).toBe(`learners/${copy.data.learnerRef}`);
    // the same learner, the same partner: the same ref through the custom URL
    expect(result.partnerHttpCopy).toMatchObject({
      id: result.eventId,
      subject: `learners/${copy.data.learnerRef}`,
    });
    expect((result.partnerHttpCopy.data as { learnerRef: string }).learnerRef).toBe(copy.data.learnerRef);
  }, 120_000);

  it('`node --import tsx scripts/demo.ts` exits 0 and says every hop worked', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], {
      cwd: ROOT,
      env: { ...process.env, LDR_DATA_DIR: suite().dataDir },
      timeout: 110_000,
    });
    expect(stdout).toContain('demo: every hop worked');
    expect(stdout).not.toContain('✗');
  }, 120_000);

  it('`npm run demo` without a running room says so and exits 2', async () => {
    const err = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/demo.ts'], {
      cwd: ROOT,
      env: { ...process.env, LDR_DATA_DIR: `${suite().dataDir}/nowhere` },
    }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain('the room is not running');
  });
});
