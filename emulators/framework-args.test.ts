import { afterEach, describe, expect, it } from 'vitest';
import { frameworkArgs } from './suite.ts';

describe('frameworkArgs: how the suite starts a function', () => {
  const saved = process.env.LDR_SOURCE_MAPS;
  afterEach(() => {
    if (saved === undefined) delete process.env.LDR_SOURCE_MAPS;
    else process.env.LDR_SOURCE_MAPS = saved;
  });

  it('runs the framework CLI on the function with the instance heap cap and without source maps, as Cloud Run does', () => {
    delete process.env.LDR_SOURCE_MAPS;
    const args = frameworkArgs('routeTriage', 4242);
    expect(args[0]).toBe('--max-old-space-size=256');
    expect(args[1]).toMatch(/functions-framework\/build\/src\/main\.js$/);
    expect(args.slice(2)).toEqual(['--target=routeTriage', '--port=4242']);
    expect(args).not.toContain('--enable-source-maps');
  });

  it('maps stack traces when the developer asks for it (LDR_SOURCE_MAPS=1), and only then', () => {
    process.env.LDR_SOURCE_MAPS = '1';
    expect(frameworkArgs('routeTriage', 4242, '/x.js')).toEqual([
      '--max-old-space-size=256',
      '--enable-source-maps',
      expect.stringMatching(/main\.js$/),
      '--target=routeTriage',
      '--port=4242',
      '--source=/x.js',
    ]);
    process.env.LDR_SOURCE_MAPS = '0';
    expect(frameworkArgs('routeTriage', 4242)).not.toContain('--enable-source-maps');
  });
});
