import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_NAME_BYTES, sanitizeFilename } from './filename.ts';

describe('sanitizeFilename', () => {
  it.each([
    ['report.pdf', 'report.pdf'],
    ['../../etc/passwd', 'passwd'],
    ['..', 'file'],
    ['../', 'file'],
    ['./.././a.txt', 'a.txt'],
    ['C:\\Users\\ana\\Desktop\\notes.txt', 'notes.txt'],
    ['dir/sub\\mixed/name.png', 'name.png'],
    ['my video+final.mp4', 'my_video_final.mp4'],
    ['Übung ü 🎓.pdf', 'Übung_ü.pdf'],
    // NFD input comes out NFC
    ['U\u0308bung.pdf', 'Übung.pdf'],
    ['.bashrc', 'bashrc'],
    ['...hidden...txt', 'hidden.txt'],
    ['a\u0000b\u001fc\u007f.txt', 'a_b_c.txt'],
    ['evil\u202Etxt.exe', 'evil_txt.exe'],
    ['line\r\nbreak.txt', 'line_break.txt'],
    ['100% sure?.txt', '100_sure.txt'],
    ['"quoted" <tag>.json', 'quoted_tag.json'],
    ['a  -  b.mp4', 'a_-_b.mp4'],
    ['🎓🎓🎓', 'file'],
    ['', 'file'],
    ['   ', 'file'],
    ['---.pdf', 'pdf'],
    ['資料 第1回.pdf', '資料_第1回.pdf'],
    ['ملف.txt', 'ملف.txt'],
  ])('%j → %j', (raw, safe) => {
    expect(sanitizeFilename(raw)).toBe(safe);
  });

  it('bounds the length in UTF-8 bytes and keeps the extension', () => {
    const long = `${'ü'.repeat(500)}.mp4`;
    const safe = sanitizeFilename(long);
    expect(Buffer.byteLength(safe)).toBeLessThanOrEqual(MAX_NAME_BYTES);
    expect(safe.endsWith('.mp4')).toBe(true);
    expect(safe.startsWith('üüü')).toBe(true);
    expect(sanitizeFilename('a'.repeat(400))).toBe('a'.repeat(MAX_NAME_BYTES));
  });

  it('whatever the input: one safe, bounded, NFC path segment', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (raw) => {
        const safe = sanitizeFilename(raw);
        expect(safe.length).toBeGreaterThan(0);
        expect(Buffer.byteLength(safe)).toBeLessThanOrEqual(MAX_NAME_BYTES);
        expect(safe).not.toMatch(/[/\\]/);
        expect(safe).not.toContain('..');
        expect(safe).not.toMatch(/^[._-]/);
        expect(safe).toMatch(/^[\p{L}\p{M}\p{N}._-]+$/u);
        expect(safe).toBe(safe.normalize('NFC'));
        expect(sanitizeFilename(safe)).toBe(safe);
      }),
      { numRuns: 500 },
    );
  });
});
