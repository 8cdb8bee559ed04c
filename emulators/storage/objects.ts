import type { FileHandle } from 'node:fs/promises';
import { open, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Digest, receiveToFile } from './body.ts';
import type { Context } from './context.ts';
import { BodyLimitError, badRequest, noSuchBucket, noSuchObject, StorageError } from './errors.ts';
import { objectHeaders } from './resources.ts';
import type { ObjectFields, ObjectPatch, ObjectRecord, Preconditions, ReceivedBytes } from './store.ts';

/** Object operations shared by the JSON and XML APIs: receive, commit + notify, delete, patch, serve. */

export interface ExpectedHashes {
  md5Hash?: string;
  crc32c?: string;
}

export interface UploadTarget {
  bucket: string;
  name: string;
  fields: ObjectFields;
  preconditions: Preconditions;
  expected?: ExpectedHashes;
}

/** Creates the bucket on first use when the emulator allows it; otherwise a missing bucket is a 404. */
export async function ensureBucket(ctx: Context, bucket: string) {
  if (ctx.store.hasBucket(bucket)) return;
  if (!ctx.autoCreateBuckets) throw noSuchBucket(bucket);
  await ctx.store.createBucket(bucket, ctx.projectId).catch((err: unknown) => {
    if (!(err instanceof StorageError && err.status === 409)) throw err;
  });
}

export interface ReceiveOptions {
  /** Stages before the digest (e.g. the multipart splitter). */
  before?: Transform[];
  minBytes?: number;
  maxBytes?: number;
}

/** Streams the request body to a temp file, hashing as it goes. Nothing is left behind on failure. */
export async function receiveObjectBytes(
  ctx: Context,
  req: IncomingMessage,
  options: ReceiveOptions = {},
): Promise<ReceivedBytes> {
  const tempFile = ctx.store.tempFile();
  const digest = new Digest(options.maxBytes);
  try {
    await receiveToFile(req, [...(options.before ?? []), digest], tempFile);
    if (options.minBytes !== undefined && digest.size < options.minBytes) {
      throw new BodyLimitError('tooSmall', `body is smaller than ${options.minBytes} bytes`);
    }
    return { tempFile, size: digest.size, md5Hash: digest.md5Base64(), crc32c: digest.crc.base64() };
  } catch (err) {
    await rm(tempFile, { force: true });
    throw err;
  }
}

/**
 * Commits received bytes as the object's new generation, then (only then) delivers OBJECT_FINALIZE, and
 * OBJECT_DELETE for a generation it replaced, as production does for buckets without versioning.
 */
export async function finishUpload(
  ctx: Context,
  target: UploadTarget,
  received: ReceivedBytes,
): Promise<ObjectRecord> {
  try {
    checkExpectedHashes(target.expected, received);
  } catch (err) {
    await rm(received.tempFile, { force: true });
    throw err;
  }
  const { record, replaced } = await ctx.store.commitObject(
    target.bucket,
    target.name,
    received,
    target.fields,
    target.preconditions,
  );
  await ctx.notifications.publish({
    type: 'OBJECT_FINALIZE',
    object: record,
    eventTime: record.updated,
    ...(replaced ? { overwroteGeneration: replaced.generation } : {}),
  });
  if (replaced) {
    await ctx.notifications.publish({
      type: 'OBJECT_DELETE',
      object: replaced,
      eventTime: record.updated,
      overwrittenByGeneration: record.generation,
    });
  }
  return record;
}

export async function deleteObject(ctx: Context, bucket: string, name: string, preconditions: Preconditions) {
  const record = await ctx.store.deleteObject(bucket, name, preconditions);
  await ctx.notifications.publish({
    type: 'OBJECT_DELETE',
    object: record,
    eventTime: new Date(ctx.now()).toISOString(),
  });
  return record;
}

export async function patchObject(
  ctx: Context,
  bucket: string,
  name: string,
  patch: ObjectPatch,
  preconditions: Preconditions,
) {
  const record = await ctx.store.patchObject(bucket, name, patch, preconditions);
  await ctx.notifications.publish({
    type: 'OBJECT_METADATA_UPDATE',
    object: record,
    eventTime: record.updated,
  });
  return record;
}

function checkExpectedHashes(expected: ExpectedHashes | undefined, received: ReceivedBytes) {
  if (expected?.md5Hash && expected.md5Hash !== received.md5Hash) {
    throw badRequest(
      `Provided MD5 hash "${expected.md5Hash}" doesn't match calculated MD5 hash "${received.md5Hash}".`,
    );
  }
  if (expected?.crc32c && expected.crc32c !== received.crc32c) {
    throw badRequest(
      `Provided CRC32C "${expected.crc32c}" doesn't match calculated CRC32C "${received.crc32c}".`,
    );
  }
}

/** `x-goog-hash: crc32c=…,md5=…` (header may repeat) → expected hashes. */
export function parseGoogHash(header: string | string[] | undefined): ExpectedHashes {
  const expected: ExpectedHashes = {};
  const values = Array.isArray(header) ? header : header ? [header] : [];
  for (const pair of values.flatMap((v) => v.split(','))) {
    const at = pair.indexOf('=');
    const [kind, value] = [pair.slice(0, at).trim().toLowerCase(), pair.slice(at + 1).trim()];
    if (kind === 'md5') expected.md5Hash = value;
    if (kind === 'crc32c') expected.crc32c = value;
  }
  return expected;
}

// ---- serving bytes ----

interface ByteRange {
  start: number;
  end: number;
}

/** A single `bytes=` range, resolved against `size`; undefined means the whole object. */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? '');
  if (!m || size === 0 || (m[1] === '' && m[2] === '')) return undefined;
  const [first, last] = [m[1]!, m[2]!];
  const range =
    first === ''
      ? { start: Math.max(0, size - Number(last)), end: size - 1 }
      : { start: Number(first), end: last === '' ? size - 1 : Math.min(Number(last), size - 1) };
  if (range.start >= size || range.start > range.end) {
    throw new StorageError(
      416,
      'requestedRangeNotSatisfiable',
      'The requested range cannot be satisfied.',
      'InvalidRange',
    );
  }
  return range;
}

/** Streams the live generation of an object (GET) or only its headers (HEAD), honouring `Range`. */
export async function sendObject(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
  bucket: string,
  name: string,
  generation?: string,
) {
  const { record, handle } = await openLive(ctx, bucket, name, generation);
  try {
    const range = parseRange(req.headers.range, record.size);
    const headers: Record<string, string> = { ...objectHeaders(record), 'Accept-Ranges': 'bytes' };
    const length = range ? range.end - range.start + 1 : record.size;
    if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${record.size}`;
    res.writeHead(range ? 206 : 200, { ...headers, 'Content-Length': String(length) });
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    const body = handle.createReadStream({
      start: range?.start ?? 0,
      end: range?.end ?? record.size - 1,
      autoClose: false,
    });
    await pipeline(body, res);
  } finally {
    await handle.close();
  }
}

/** Opens the bytes of the live generation; retries once if a concurrent overwrite removed them. */
async function openLive(
  ctx: Context,
  bucket: string,
  name: string,
  generation: string | undefined,
): Promise<{ record: ObjectRecord; handle: FileHandle }> {
  for (let attempt = 0; ; attempt++) {
    const record = ctx.store.getObject(bucket, name);
    if (generation !== undefined && generation !== record.generation) throw noSuchObject(bucket, name);
    try {
      return { record, handle: await open(ctx.store.dataPath(record), 'r') };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 0) throw err;
    }
  }
}
