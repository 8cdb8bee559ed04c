import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm, stat, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { Digest, receiveToFile } from './body.ts';
import type { Context } from './context.ts';
import { BodyLimitError, badRequest, StorageError } from './errors.ts';
import { type ExpectedHashes, finishUpload, parseGoogHash, type UploadTarget } from './objects.ts';
import type { DiskStore, ObjectRecord } from './store.ts';

/**
 * Resumable upload sessions (https://cloud.google.com/storage/docs/performing-resumable-uploads).
 * Bytes go to a session file under the store's tmp dir; the session itself lives in memory, so sessions do
 * not survive an emulator restart (production keeps them for a week).
 */

export interface UploadSession {
  id: string;
  target: UploadTarget;
  expectedSize?: number;
  file: string;
  received: number;
  /** Running hashes of the received bytes; undefined after a broken chunk (recomputed at the end). */
  digest?: Digest;
  result?: ObjectRecord;
}

export type ChunkOutcome = { done: false; received: number } | { done: true; record: ObjectRecord };

/** What a `Content-Range` header asks for. */
export type ChunkRange =
  | { kind: 'status' }
  | { kind: 'finish'; total: number }
  | { kind: 'bytes'; first: number; last?: number; total?: number };

export class ResumableUploads {
  readonly #sessions = new Map<string, UploadSession>();

  constructor(private readonly store: DiskStore) {}

  async start(target: UploadTarget, expectedSize?: number): Promise<UploadSession> {
    const session: UploadSession = {
      id: randomUUID().replace(/-/g, ''),
      target,
      file: this.store.tempFile(),
      received: 0,
      digest: new Digest(),
      ...(expectedSize === undefined ? {} : { expectedSize }),
    };
    await writeFile(session.file, '');
    this.#sessions.set(session.id, session);
    return session;
  }

  get(id: string | null): UploadSession {
    const session = id ? this.#sessions.get(id) : undefined;
    if (!session) throw new StorageError(404, 'notFound', 'No such upload session.', 'NoSuchUpload');
    return session;
  }

  async cancel(id: string | null) {
    const session = this.get(id);
    this.#sessions.delete(session.id);
    await rm(session.file, { force: true });
  }
}

// Parses `bytes */*` (status), `bytes */N` (finish if N bytes are held, else status), `bytes a-b/N`,
// `bytes a-b/*`, `bytes a-*/N`, `bytes a-*/*`.
export function parseContentRange(header: string | undefined): ChunkRange {
  if (header === undefined) return { kind: 'bytes', first: 0 };
  const m = /^bytes (?:\*|(\d+)-(\d+|\*))\/(\d+|\*)$/.exec(header.trim());
  if (!m) throw badRequest(`Malformed Content-Range: ${header}`);
  const [, first, last, total] = m;
  const totalNumber = total === '*' ? undefined : Number(total);
  if (first === undefined)
    return totalNumber === undefined ? { kind: 'status' } : { kind: 'finish', total: totalNumber };
  return {
    kind: 'bytes',
    first: Number(first),
    ...(last === '*' ? {} : { last: Number(last) }),
    ...(totalNumber === undefined ? {} : { total: totalNumber }),
  };
}

/**
 * Applies one PUT to a session: a status query, a chunk of bytes, or the final chunk. Returns whether the
 * object is complete (then it has been committed and notified) or how many bytes the server holds.
 */
export async function putChunk(
  ctx: Context,
  session: UploadSession,
  req: IncomingMessage,
): Promise<ChunkOutcome> {
  if (session.result) {
    req.resume();
    return { done: true, record: session.result };
  }
  const range = parseContentRange(req.headers['content-range']);
  if (range.kind === 'status') {
    req.resume();
    return { done: false, received: session.received };
  }
  if (range.kind === 'bytes') await appendBytes(session, req, range);
  else req.resume();
  // `bytes */N` with fewer than N bytes held is the documented status check: 308 with what is held
  // (https://cloud.google.com/storage/docs/performing-resumable-uploads#status-check)
  if (range.kind === 'finish' && session.received < range.total) {
    return { done: false, received: session.received };
  }

  if (!isFinalChunk(range, session.received)) return { done: false, received: session.received };
  const total = range.kind === 'finish' ? range.total : (range.total ?? session.received);
  if (session.received !== total) {
    throw badRequest(`Upload declared ${total} bytes but ${session.received} were received.`);
  }
  try {
    const record = await complete(ctx, session, parseGoogHash(req.headers['x-goog-hash']));
    return { done: true, record };
  } catch (err) {
    await ctx.uploads.cancel(session.id); // the bytes were refused; the session cannot go on
    throw err;
  }
}

function isFinalChunk(range: Exclude<ChunkRange, { kind: 'status' }>, received: number): boolean {
  if (range.kind === 'finish') return true;
  if (range.total !== undefined) return received >= range.total;
  return range.last === undefined; // `bytes a-*/*` or no Content-Range: the body runs to the end of the object
}

async function appendBytes(
  session: UploadSession,
  req: IncomingMessage,
  range: { first: number; total?: number },
): Promise<void> {
  if (range.first > session.received) {
    req.resume();
    throw badRequest(
      `Invalid request. The upload offset ${range.first} is past the ${session.received} byte(s) received so far.`,
    );
  }
  const limit = range.total ?? session.expectedSize;
  const maxBytes = limit === undefined ? undefined : limit - session.received;
  const skip = session.received - range.first;
  const prior = session.digest;
  const digest = prior ? Digest.continuing(prior, skip, maxBytes) : new Digest(maxBytes, skip);
  const before = session.received;
  try {
    await receiveToFile(req, [digest], session.file, before);
    session.received = before + digest.passed;
    session.digest = prior ? digest : undefined;
  } catch (err) {
    // Keep what reached the disk; its hashes are recomputed when the upload completes.
    session.received = (await stat(session.file)).size;
    session.digest = undefined;
    if (err instanceof BodyLimitError) throw badRequest(`Upload is larger than the declared ${limit} bytes.`);
    throw err;
  }
}

async function complete(
  ctx: Context,
  session: UploadSession,
  headerHashes: ExpectedHashes,
): Promise<ObjectRecord> {
  if (session.expectedSize !== undefined && session.received !== session.expectedSize) {
    throw badRequest(`Upload declared ${session.expectedSize} bytes but ${session.received} were received.`);
  }
  const digest = session.digest ?? (await hashFile(session.file));
  const target = { ...session.target, expected: { ...session.target.expected, ...headerHashes } };
  const record = await finishUpload(ctx, target, {
    tempFile: session.file,
    size: session.received,
    md5Hash: digest.md5Base64(),
    crc32c: digest.crc.base64(),
  });
  session.result = record;
  return record;
}

async function hashFile(file: string): Promise<Digest> {
  const digest = new Digest();
  for await (const chunk of createReadStream(file).pipe(digest)) void chunk;
  return digest;
}
