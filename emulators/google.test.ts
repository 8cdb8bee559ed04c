import { describe, expect, it } from 'vitest';
import { pubsubJvmOptions } from './google.ts';

describe('pubsubJvmOptions', () => {
  it('caps the heap unless the environment gives options of its own', () => {
    expect(pubsubJvmOptions({})).toBe('-Xmx256m');
    expect(pubsubJvmOptions({ CLOUD_PUBSUB_EMULATOR_OPTS: ' ' })).toBe('-Xmx256m');
    expect(pubsubJvmOptions({ CLOUD_PUBSUB_EMULATOR_OPTS: '-Xmx1g' })).toBe('-Xmx1g');
  });
});
