import zlib from 'node:zlib';

/** `mib` MiB of spaces as a multi-member gzip stream (one 1 MiB member repeated): ~1 KB on the wire per MiB */
export function gzipBomb(mib: number): Buffer {
  const member = zlib.gzipSync(Buffer.alloc(1024 * 1024, 0x20), { level: 9 });
  return Buffer.concat(Array.from({ length: mib }, () => member));
}
