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
import { isSignedQuery, verifySignedRequest } from './signed-url.ts';
import type { ObjectFields } from './store.ts';

/**
 * The XML API, path style (`/<bucket>/<object>`), for V4 signed URLs: GET, HEAD, PUT and DELETE of one
 * object. Every request must carry a valid signature; anonymous access is refused as for a private bucket.
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
  const record = await finishUpload(ctx, target, received);
  const headers = objectHeaders(record);
  sendEmpty(res, 200, {
    ETag: headers.ETag!,
    'x-goog-generation': record.generation,
    'x-goog-metageneration': String(record.metageneration),
    'x-goog-hash': headers['x-goog-hash']!,
    'x-goog-stored-content-length': String(record.size),
    'x-goog-stored-content-encoding': headers['x-goog-stored-content-encoding']!,
  });
};

const handlers: Record<string, XmlHandler> = {
  GET: getObject,
  HEAD: getObject,
  PUT: putObject,
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
