import { describe, expect, it } from 'vitest';
import { compileFilter } from './filter.ts';

describe('compileFilter', () => {
  const f = compileFilter('attributes.ldr-audience = "all" OR attributes:"ldr-to-school-1"');
  it.each([
    [{ 'ldr-audience': 'all' }, true],
    [{ 'ldr-audience': 'list', 'ldr-to-school-1': '1' }, true],
    [{ 'ldr-audience': 'list', 'ldr-to-school-2': '1' }, false],
    [{}, false],
  ])('%o → %s', (attrs, want) => expect(f(attrs)).toBe(want));

  it('supports AND, NOT and parentheses', () => {
    const g = compileFilter('(attributes.a = "1" AND NOT attributes:b) OR attributes:c');
    expect(g({ a: '1' })).toBe(true);
    expect(g({ a: '1', b: 'x' })).toBe(false);
    expect(g({ c: '' })).toBe(true);
  });

  it('refuses what it does not understand', () => {
    expect(() => compileFilter('hasPrefix(attributes.a, "x")')).toThrow(/unsupported/);
    expect(() => compileFilter('attributes.a = "1" OR')).toThrow();
  });
});
