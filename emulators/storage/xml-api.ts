import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Context } from './context.ts';
import { sendEmpty } from './context.ts';
import { accessDenied, BodyLimitError, badRequest, notImplemented, StorageError } from './errors.ts';
import {
  deleteObject,
  ensureBucket,
  finishUpload,
  parseGoogHash,
  receiveObjectBytes,
  sendObject,
  type UploadTarget,
} from './objects.ts';
import { objectHeaders } from './resources.ts';
import { putChunk } from './resumable.ts';
import { canonicalUri, isSignedQuery, verifySignedRequest } from './signed-url.ts';
import { checkPreconditions, type ObjectFields, type ObjectRecord } from './store.ts';

/**
 * The XML API, path style (`/<bucket>/<object>`), for V4 signed URLs: GET, HEAD, PUT and DELETE of one
 * object, and POST with `x-goog-resumable: start` (a signed resumable session, `action: 'resumable'`).
 * Every request must carry a valid signature; anonymous access is refused as for a private bucket. The
 * one exception is a resumable session URI (`?upload_id=…`, from the POST's `Location`): it is its own
 * credential, as in production, and takes PUT chunks (`Content-Range`), status queries and DELETE.
 */

interface XmlRequest {
  ctx: Context;
  req: IncomingMessage;
  res: ServerResponse;
  bucket: string;
  object: string;
}

type XmlHandler = (r: XmlRequest) => Promise<void>;

export async function handleXml(
  ctx: Context,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  rawQuery: string,
) {
  const { bucket, object } = parseXmlPath(path);
  const method = req.method ?? 'GET';
  const uploadId = new URLSearchParams(rawQuery).get('upload_id');
  if (uploadId !== null && !isSignedQuery(rawQuery)) {
    await handleSession({ ctx, req, res, bucket, object: object ?? '' }, uploadId);
    return;
  }
  if (!isSignedQuery(rawQuery)) {
    throw accessDenied(
      'Anonymous caller does not have storage.objects access to the Google Cloud Storage object.',
    );
  }
  verifySignedRequest(
    { method, bucket, rawQuery, headers: req.headers, ...(object ? { object } : {}) },
    ctx.signers,
    ctx.now(),
  );
  if (!object) throw notImplemented('Bucket-level XML API requests are not supported by this emulator.');
  const handler = handlers[method];
  if (!handler)
    throw new StorageError(405, 'methodNotAllowed', `Method ${method} not allowed.`, 'MethodNotAllowed');
  await handler({ ctx, req, res, bucket, object });
}

function parseXmlPath(path: string): { bucket: string; object?: string } {
  const match = /^\/([^/]+)(?:\/(.*))?$/.exec(path);
  if (!match) throw badRequest('Path-style XML API requests look like /<bucket>/<object>.');
  try {
    const bucket = decodeURIComponent(match[1]!);
    const object = match[2] ? decodeURIComponent(match[2]) : undefined;
    return object === undefined ? { bucket } : { bucket, object };
  } catch {
    throw badRequest('Invalid percent-encoding in path.');
  }
}

const getObject: XmlHandler = ({ ctx, req, res, bucket, object }) =>
  sendObject(ctx, req, res, bucket, object);

const removeObject: XmlHandler = async ({ ctx, req, res, bucket, object }) => {
  req.resume();
  await deleteObject(ctx, bucket, object, {});
  sendEmpty(res, 204);
};

/**
 * Stores the body as the object. `x-goog-content-length-range: min,max` is enforced before reading when
 * Content-Length is known and while streaming otherwise; a violation stores nothing.
 */
const putObject: XmlHandler = async ({ ctx, req, res, bucket, object }) => {
  const limits = parseLengthRange(req.headers['x-goog-content-length-range']);
  const declared = req.headers['content-length'];
  if (limits && declared !== undefined) checkLength(Number(declared), limits);
  await ensureBucket(ctx, bucket);
  let received: Awaited<ReturnType<typeof receiveObjectBytes>>;
  try {
    received = await receiveObjectBytes(
      ctx,
      req,
      limits ? { minBytes: limits.min, maxBytes: limits.max } : {},
    );
  } catch (err) {
    if (err instanceof BodyLimitError && limits) throw lengthRangeError(err.kind, limits);
    throw err;
  }
  const generationMatch = req.headers['x-goog-if-generation-match'];
  const target: UploadTarget = {
    bucket,
    name: object,
    fields: fieldsFromHeaders(req.headers),
    preconditions: typeof generationMatch === 'string' ? { ifGenerationMatch: generationMatch } : {},
    expected: expectedHashes(req.headers),
  };
  sendEmpty(res, 200, storedHeaders(await finishUpload(ctx, target, received)));
};

function storedHeaders(record: ObjectRecord): Record<string, string> {
  const headers = objectHeaders(record);
  return {
    ETag: headers.ETag!,
    'x-goog-generation': record.generation,
    'x-goog-metageneration': String(record.metageneration),
    'x-goog-hash': headers['x-goog-hash']!,
    'x-goog-stored-content-length': String(record.size),
    'x-goog-stored-content-encoding': headers['x-goog-stored-content-encoding']!,
  };
}

/**
 * POST with `x-goog-resumable: start` (signed, so the header, the content type and any preconditions are
 * bound): opens a session and answers 201 with its URI in `Location`. Nothing of the object is stored yet.
 * `x-goog-content-length-range` is a PUT header; Cloud Storage does not apply it to a session, nor does this.
 */
const startResumable: XmlHandler = async ({ ctx, req, res, bucket, object }) => {
  req.resume();
  if (req.headers['x-goog-resumable'] !== 'start') {
    throw badRequest('POST Object starts a resumable upload: send x-goog-resumable: start.');
  }
  await ensureBucket(ctx, bucket);
  const generationMatch = req.headers['x-goog-if-generation-match'];
  const preconditions = typeof generationMatch === 'string' ? { ifGenerationMatch: generationMatch } : {};
  checkPreconditions(currentObject(ctx, bucket, object), preconditions);
  const session = await ctx.uploads.start({
    bucket,
    name: object,
    fields: fieldsFromHeaders(req.headers),
    preconditions,
    expected: expectedHashes(req.headers),
  });
  // from the Host the client used, like the JSON API's session URI
  const origin = req.headers.host ? `http://${req.headers.host}` : ctx.baseUrl();
  sendEmpty(res, 201, {
    Location: `${origin}${canonicalUri(bucket, object)}?upload_id=${session.id}`,
    'X-GUploader-UploadID': session.id,
  });
};

function currentObject(ctx: Context, bucket: string, object: string): ObjectRecord | undefined {
  try {
    return ctx.store.getObject(bucket, object);
  } catch (err) {
    if (err instanceof StorageError && err.status === 404) return undefined;
    throw err;
  }
}

/**
 * A session URI: PUT a chunk (`Content-Range: bytes a-b/total`, 308 with `Range` until the last, then
 * 200 and the finalize notification); an empty PUT whose Content-Range names only the total asks how far
 * it got (308 + `Range`); DELETE cancels (499).
 */
async function handleSession(r: XmlRequest, uploadId: string) {
  const session = r.ctx.uploads.get(uploadId);
  if (session.target.bucket !== r.bucket || session.target.name !== r.object) {
    r.req.resume();
    throw new StorageError(404, 'notFound', 'No such upload session.', 'NoSuchUpload');
  }
  if (r.req.method === 'DELETE') {
    r.req.resume();
    await r.ctx.uploads.cancel(uploadId);
    sendEmpty(r.res, 499);
    return;
  }
  if (r.req.method !== 'PUT') {
    r.req.resume();
    throw new StorageError(405, 'methodNotAllowed', 'A session URI takes PUT or DELETE.', 'MethodNotAllowed');
  }
  const outcome = await putChunk(r.ctx, session, r.req);
  if (outcome.done) {
    sendEmpty(r.res, 200, storedHeaders(outcome.record));
    return;
  }
  // 308 "Resume Incomplete"; Range names the persisted bytes (absent when there are none)
  sendEmpty(r.res, 308, outcome.received > 0 ? { Range: `bytes=0-${outcome.received - 1}` } : {});
}

const handlers: Record<string, XmlHandler> = {
  GET: getObject,
  HEAD: getObject,
  PUT: putObject,
  POST: startResumable,
  DELETE: removeObject,
};

interface LengthRange {
  min: number;
  max: number;
}

export function parseLengthRange(header: string | string[] | undefined): LengthRange | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(Array.isArray(header) ? header.join(',') : header);
  if (!m || Number(m[1]) > Number(m[2])) throw badRequest('x-goog-content-length-range must be "min,max".');
  return { min: Number(m[1]), max: Number(m[2]) };
}

function checkLength(length: number, limits: LengthRange) {
  if (length > limits.max) throw lengthRangeError('tooLarge', limits);
  if (length < limits.min) throw lengthRangeError('tooSmall', limits);
}

function lengthRangeError(kind: BodyLimitError['kind'], limits: LengthRange): StorageError {
  const [code, message] =
    kind === 'tooLarge'
      ? [
          'EntityTooLarge',
          `Your proposed upload is larger than the maximum object size specified in your Policy Document (${limits.max} bytes).`,
        ]
      : [
          'EntityTooSmall',
          `Your proposed upload is smaller than the minimum object size specified in your Policy Document (${limits.min} bytes).`,
        ];
  return accessDenied(message, code);
}

function fieldsFromHeaders(headers: IncomingHttpHeaders): ObjectFields {
  const metadata = Object.fromEntries(
    Object.entries(headers)
      .filter(([k, v]) => k.startsWith('x-goog-meta-') && typeof v === 'string')
      .map(([k, v]) => [k.slice('x-goog-meta-'.length), v as string]),
  );
  const pick = (name: string) => (typeof headers[name] === 'string' ? (headers[name] as string) : undefined);
  const fields: ObjectFields = {
    contentType: pick('content-type') ?? 'application/octet-stream',
    cacheControl: pick('cache-control'),
    contentDisposition: pick('content-disposition'),
    contentEncoding: pick('content-encoding'),
    contentLanguage: pick('content-language'),
    ...(Object.keys(metadata).length ? { metadata } : {}),
  };
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as ObjectFields;
}

function expectedHashes(headers: IncomingHttpHeaders) {
  const contentMd5 = headers['content-md5'];
  return {
    ...(typeof contentMd5 === 'string' ? { md5Hash: contentMd5 } : {}),
    ...parseGoogHash(headers['x-goog-hash']),
  };
}
