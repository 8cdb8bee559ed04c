/** CRC32C (Castagnoli), the checksum Cloud Storage reports as `crc32c` and in `x-goog-hash`. Slicing-by-8. */
const POLY = 0x82f63b78;
const TABLES = buildTables();

function buildTables(): Uint32Array[] {
  const base = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    base[n] = c >>> 0;
  }
  const tables = [base];
  for (let t = 1; t < 8; t++) {
    const prev = tables[t - 1]!;
    const next = new Uint32Array(256);
    for (let n = 0; n < 256; n++) next[n] = (prev[n]! >>> 8) ^ base[prev[n]! & 0xff]!;
    tables.push(next);
  }
  return tables;
}

const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
];

export class Crc32c {
  /** Running register (pre-inverted); the checksum is its complement. */
  #reg = 0xffffffff;

  update(data: Uint8Array): this {
    let crc = this.#reg;
    let i = 0;
    const end8 = data.length - (data.length % 8);
    for (; i < end8; i += 8) {
      const lo = (crc ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
      crc =
        T7[lo & 0xff]! ^
        T6[(lo >>> 8) & 0xff]! ^
        T5[(lo >>> 16) & 0xff]! ^
        T4[lo >>> 24]! ^
        T3[data[i + 4]!]! ^
        T2[data[i + 5]!]! ^
        T1[data[i + 6]!]! ^
        T0[data[i + 7]!]!;
    }
    for (; i < data.length; i++) crc = T0[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
    this.#reg = crc >>> 0;
    return this;
  }

  value(): number {
    return (this.#reg ^ 0xffffffff) >>> 0;
  }

  /** Big-endian 4 bytes, base64: the form of the JSON API `crc32c` field. */
  base64(): string {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.value());
    return out.toString('base64');
  }
}
