/**
 * File names from clients become the last segment of `artifacts/<artifactId>/<name>`. The id segment
 * already makes every object name unique; this keeps the name readable and harmless: no path
 * components, no `..`, no hidden files, no control or format characters, NFC, bounded length.
 */

/** Upper bound of a sanitised name in UTF-8 bytes (Cloud Storage allows 1024 for the whole object name). */
export const MAX_NAME_BYTES = 160;
const MAX_EXTENSION_CHARS = 16;
const FALLBACK = 'file';

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');

export function sanitizeFilename(raw: string, maxBytes = MAX_NAME_BYTES): string {
  const nfc = raw.normalize('NFC');
  // the last path component, whichever separator the client's platform uses
  const segments = nfc.split(/[/\\]+/).filter((s) => s !== '' && s !== '.' && s !== '..');
  let name = segments.at(-1) ?? '';
  name = name
    // letters (with their combining marks) and digits of any script, and . _ - are kept;
    // every run of anything else (controls, spaces, +, %, quotes, emoji, format characters) becomes one _
    .replace(/[^\p{L}\p{M}\p{N}._-]+/gu, '_')
    .replace(/\.{2,}/g, '.')
    .replace(/_*\._*/g, '.')
    .replace(/_{2,}/g, '_')
    .replace(/-{2,}/g, '-')
    // no hidden files, no dangling separators
    .replace(/^[._-]+/, '')
    .replace(/[._-]+$/, '');
  if (!name || !/[\p{L}\p{N}]/u.test(name)) return FALLBACK;
  return truncate(name, maxBytes);
}

/** Shortens the stem (by code points) so the name fits `maxBytes`, keeping a short extension. */
function truncate(name: string, maxBytes: number): string {
  if (utf8(name) <= maxBytes) return name;
  const dot = name.lastIndexOf('.');
  const ext = dot > 0 && name.length - dot - 1 <= MAX_EXTENSION_CHARS ? name.slice(dot) : '';
  const stem = Array.from(ext ? name.slice(0, dot) : name);
  while (stem.length && utf8(stem.join('')) + utf8(ext) > maxBytes) stem.pop();
  const cut = stem.join('').replace(/[._-]+$/, '');
  if (cut) return `${cut}${ext}`;
  return utf8(FALLBACK + ext) <= maxBytes ? FALLBACK + ext : FALLBACK;
}
