import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { clientTypesPath, renderClientTypes } from '../scripts/client-types.ts';

describe('client/types.ts', () => {
  it('is what scripts/client-types.ts generates from the server schemas (no drift)', {
    timeout: 30_000,
  }, () => {
    const formatted = execFileSync(
      'node_modules/.bin/biome',
      ['format', '--stdin-file-path=client/types.ts'],
      {
        input: renderClientTypes(),
        encoding: 'utf8',
      },
    );
    expect(readFileSync(clientTypesPath, 'utf8')).toBe(formatted);
  });
});
