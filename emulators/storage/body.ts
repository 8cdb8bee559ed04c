import { createHash, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Crc32c } from './crc32c.ts';
import { BodyLimitError, badRequest } from './errors.ts';

/** Hashes and counts bytes on their way to disk; refuses to pass more than `maxBytes` (per instance). */
export class Digest extends Transform {
  readonly md5: Hash = createHash('md5');
  readonly crc = new Crc32c();
  size = 0;
  /** Bytes passed by this instance (a continuing digest starts with the earlier chunks' size). */
  #passed = 0;
  /** Leading bytes to drop (a resumable chunk that repeats bytes the server already has). */
  #skip: number;

  constructor(
    private readonly maxBytes = Number.POSITIVE_INFINITY,
    skip = 0,
  ) {
    super();
    this.#skip = skip;
  }

  /** Continue an earlier digest (the next chunk of a resumable upload). */
  static continuing(prev: { md5: Hash; crc: Crc32c; size: number }, skip = 0, maxBytes?: number) {
    const d = new Digest(maxBytes, skip);
    Object.assign(d, { md5: prev.md5, crc: prev.crc, size: prev.size });
    return d;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
    let data = chunk;
    if (this.#skip > 0) {
      const dropped = Math.min(this.#skip, data.length);
      this.#skip -= dropped;
      data = data.subarray(dropped);
      if (data.length === 0) return done();
    }
    if (this.#passed + data.length > this.maxBytes) {
      return done(new BodyLimitError('tooLarge', `body exceeds ${this.maxBytes} bytes`));
    }
    this.#passed += data.length;
    this.size += data.length;
    this.md5.update(data);
    this.crc.update(data);
    done(null, data);
  }

  /** Bytes this instance let through (excludes skipped bytes and earlier chunks). */
  get passed() {
    return this.#passed;
  }

  md5Base64() {
    return this.md5.copy().digest('base64');
  }
}

/**
 * Streams a request body through `stages` into `file` (created, or appended at `start`), then fsyncs it.
 * The request is piped, not pipelined: when a stage fails (size limit, bad multipart) the socket stays
 * open so the caller can still answer with an error; the rest of the body is drained and discarded.
 */
export async function receiveToFile(
  req: Readable,
  stages: Transform[],
  file: string,
  start?: number,
): Promise<void> {
  const [first] = stages;
  if (!first) throw new Error('receiveToFile needs at least one stage');
  const out = createWriteStream(file, start === undefined ? { flags: 'w' } : { flags: 'r+', start });
  const onAbort = () => {
    if (!req.readableEnded) first.destroy(new Error('client closed the connection mid-body'));
  };
  req.on('error', onAbort);
  req.on('close', onAbort);
  req.pipe(first);
  try {
    await pipeline([...stages, out]);
  } catch (err) {
    req.unpipe(first);
    req.resume();
    throw err;
  } finally {
    req.off('error', onAbort);
    req.off('close', onAbort);
  }
  await fsync(file);
}

async function fsync(file: string) {
  const fh = await open(file, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Reads a small body whole (JSON metadata); refuses more than `limit` bytes. */
export async function readSmallBody(req: Readable, limit = 1024 * 1024): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw badRequest(`request body larger than ${limit} bytes`);
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

export async function readJson(req: Readable): Promise<unknown> {
  const raw = await readSmallBody(req);
  if (raw.length === 0) return {};
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw badRequest('request body is not valid JSON', 'parseError');
  }
}

export function boundaryOf(contentType: string | undefined): string {
  const match = /^multipart\/related\s*;(?:.*;)?\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  const boundary = match?.[1] ?? match?.[2];
  if (!boundary) throw badRequest('multipart upload needs Content-Type: multipart/related; boundary=…');
  return boundary;
}

type SplitterState = 'preamble' | 'partHeaders' | 'metadataBody' | 'mediaBody' | 'epilogue';

/**
 * Splits a `multipart/related` upload body (exactly two parts: JSON metadata, then the media) while
 * streaming: the metadata part is kept (≤ 1 MiB), the media part's bytes are passed on, never buffered whole.
 * `metadata` and `mediaHeaders` are filled in before the first media byte is pushed.
 */
export class MultipartRelatedSplitter extends Transform {
  metadata: Buffer | undefined;
  mediaHeaders: Record<string, string> = {};
  readonly #delimiter: Buffer;
  // A virtual CRLF lets the first boundary (at the very start of the body) match the same delimiter.
  #pending: Buffer = Buffer.from('\r\n');
  #state: SplitterState = 'preamble';
  #metadataParts: Buffer[] = [];
  #metadataSize = 0;
  #partIndex = 0;

  constructor(boundary: string) {
    super();
    this.#delimiter = Buffer.from(`\r\n--${boundary}`);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    try {
      while (this.#step()) {
        // each step consumes input or changes state
      }
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback) {
    if (this.#state !== 'epilogue')
      return done(badRequest('multipart body ended before its closing boundary'));
    done();
  }

  /** Advances the state machine once; false when more input is needed. */
  #step(): boolean {
    switch (this.#state) {
      case 'preamble':
        return this.#afterDelimiter(this.#pending.indexOf(this.#delimiter), () => undefined);
      case 'partHeaders':
        return this.#readPartHeaders();
      case 'metadataBody':
        return this.#readBody((data) => this.#keepMetadata(data));
      case 'mediaBody':
        return this.#readBody((data) => this.push(data));
      case 'epilogue':
        this.#pending = Buffer.alloc(0);
        return false;
    }
  }

  #readBody(emit: (data: Buffer) => void): boolean {
    const at = this.#pending.indexOf(this.#delimiter);
    if (at === -1) {
      // Keep a tail that could be the start of a delimiter split across chunks.
      const safe = this.#pending.length - (this.#delimiter.length - 1);
      if (safe > 0) {
        emit(this.#pending.subarray(0, safe));
        this.#pending = this.#pending.subarray(safe);
      }
      return false;
    }
    return this.#afterDelimiter(at, () => emit(this.#pending.subarray(0, at)));
  }

  /** Handles `delimiter` found at `at`: emits what precedes it, then moves to the next part or the end. */
  #afterDelimiter(at: number, emitBefore: () => void): boolean {
    if (at === -1) {
      this.#pending = this.#pending.subarray(Math.max(0, this.#pending.length - this.#delimiter.length));
      return false;
    }
    const after = at + this.#delimiter.length;
    if (this.#pending.length < after + 2) return false;
    emitBefore();
    const marker = this.#pending.subarray(after, after + 2).toString('latin1');
    this.#pending = this.#pending.subarray(after + 2);
    if (marker === '--') return this.#finishParts();
    if (marker !== '\r\n') throw badRequest('malformed multipart boundary line');
    this.#enterNextPart();
    return true;
  }

  #enterNextPart() {
    if (this.#state === 'mediaBody') throw badRequest(TWO_PARTS);
    this.#state = 'partHeaders';
  }

  #finishParts(): boolean {
    if (this.#state !== 'mediaBody') throw badRequest(TWO_PARTS);
    this.#state = 'epilogue';
    return true;
  }

  #readPartHeaders(): boolean {
    const end = this.#pending.indexOf('\r\n\r\n');
    if (end === -1) {
      if (this.#pending.length > 16 * 1024) throw badRequest('multipart part headers too long');
      return false;
    }
    const headers = parseHeaderLines(this.#pending.subarray(0, end).toString('latin1'));
    this.#pending = this.#pending.subarray(end + 4);
    if (this.#partIndex++ === 0) {
      this.#state = 'metadataBody';
    } else {
      this.metadata = Buffer.concat(this.#metadataParts);
      this.mediaHeaders = headers;
      this.#state = 'mediaBody';
    }
    return true;
  }

  #keepMetadata(data: Buffer) {
    this.#metadataSize += data.length;
    if (this.#metadataSize > 1024 * 1024) throw badRequest('multipart metadata part larger than 1 MiB');
    this.#metadataParts.push(Buffer.from(data));
  }
}

const TWO_PARTS = 'multipart upload must have exactly two parts: metadata and media';

function parseHeaderLines(block: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of block.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}
