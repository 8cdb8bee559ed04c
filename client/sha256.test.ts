import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Sha256 } from './sha256.ts';

const node = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('Sha256 (incremental, for large browser Blobs)', () => {
  it('known answers', () => {
    expect(new Sha256().hex()).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(new Sha256().update(new TextEncoder().encode('abc')).hex()).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });

  it.each([1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 100_003])('matches node:crypto for %i bytes', (n) => {
    const b = randomBytes(n);
    expect(new Sha256().update(b).hex()).toBe(node(b));
  });

  it('any chunking gives the same digest', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 700 }),
        fc.array(fc.nat(200), { maxLength: 10 }),
        (bytes, cuts) => {
          const h = new Sha256();
          let at = 0;
          for (const c of cuts) {
            h.update(bytes.subarray(at, at + c));
            at = Math.min(bytes.length, at + c);
          }
          h.update(bytes.subarray(at));
          expect(h.hex()).toBe(node(bytes));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses to be used after digest()', () => {
    const h = new Sha256();
    h.digest();
    expect(() => h.update(new Uint8Array(1))).toThrow();
  });
});
