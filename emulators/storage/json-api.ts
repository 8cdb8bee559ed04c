import { z } from 'zod';
import { boundaryOf, MultipartRelatedSplitter, readJson, readSmallBody } from './body.ts';
import { type Call, sendEmpty, sendJson } from './context.ts';
import { badRequest, StorageError } from './errors.ts';
import { EVENT_TYPES, fullTopicName, notificationResource } from './notifications.ts';
import {
  deleteObject,
  ensureBucket,
  finishUpload,
  parseGoogHash,
  patchObject,
  receiveObjectBytes,
  sendObject,
  type UploadTarget,
} from './objects.ts';
import { bucketResource, objectResource } from './resources.ts';
import { putChunk } from './resumable.ts';
import type { ObjectFields, Preconditions } from './store.ts';

/**
 * The JSON API (https://cloud.google.com/storage/docs/json_api/v1). Paths are accepted with the
 * `/storage/v1` prefix (what `apiEndpoint` produces) and without it (what `STORAGE_EMULATOR_HOST` produces).
 * Requests are not authenticated, as in the other Google emulators.
 */

type Handler = (call: Call) => Promise<void>;

interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

const JSON_PREFIX = '(?:/storage/v1)?';
const B = '(?<bucket>[^/]+)';
const O = '(?<object>.+)';

const route = (method: string, path: string, handler: Handler): Route => ({
  method,
  pattern: new RegExp(`^${path}$`),
  handler,
});

/** True for paths this API serves (the rest belongs to the XML API). */
export const isJsonApiPath = (path: string) =>
  /^(\/storage\/v1|\/upload\/storage\/v1|\/download\/storage\/v1)?\/b(\/|$)/.test(path);

// ---- request schemas ----

const metadataValue = z.union([z.string(), z.number(), z.boolean()]).transform(String);

const objectFieldsSchema = z.object({
  name: z.string().optional(),
  contentType: z.string().optional(),
  metadata: z.record(z.string(), metadataValue).optional(),
  cacheControl: z.string().optional(),
  contentDisposition: z.string().optional(),
  contentEncoding: z.string().optional(),
  contentLanguage: z.string().optional(),
  md5Hash: z.string().optional(),
  crc32c: z.string().optional(),
});

const objectPatchSchema = objectFieldsSchema
  .omit({ name: true, md5Hash: true, crc32c: true })
  .extend({ metadata: z.record(z.string(), metadataValue.nullable()).nullable().optional() });

const bucketSchema = z.object({
  name: z.string(),
  location: z.string().optional(),
  storageClass: z.string().optional(),
});

const notificationSchema = z.object({
  topic: z.string(),
  payload_format: z.enum(['JSON_API_V1', 'NONE']).optional(),
  event_types: z.array(z.enum(EVENT_TYPES)).optional(),
  object_name_prefix: z.string().optional(),
  custom_attributes: z.record(z.string(), z.string()).optional(),
});

function parseBody<T>(schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw badRequest(
      parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '),
      'invalid',
    );
  }
  return parsed.data;
}

function preconditionsOf(query: URLSearchParams): Preconditions {
  const keys = [
    'ifGenerationMatch',
    'ifGenerationNotMatch',
    'ifMetagenerationMatch',
    'ifMetagenerationNotMatch',
  ] as const;
  return Object.fromEntries(keys.filter((k) => query.has(k)).map((k) => [k, query.get(k)!]));
}

function splitFields(body: z.infer<typeof objectFieldsSchema>): {
  fields: ObjectFields;
  md5Hash?: string;
  crc32c?: string;
} {
  const { name: _name, md5Hash, crc32c, ...fields } = body;
  return { fields, ...(md5Hash ? { md5Hash } : {}), ...(crc32c ? { crc32c } : {}) };
}

const requireParam = (value: string | undefined, what: string) => {
  if (!value) throw badRequest(`Required parameter missing: ${what}`, 'required');
  return value;
};

// ---- buckets ----

const listBuckets: Handler = async ({ ctx, res, query }) => {
  const items = ctx.store.listBuckets(query.get('prefix') ?? '').map((b) => bucketResource(b, ctx.baseUrl()));
  sendJson(res, 200, { kind: 'storage#buckets', ...(items.length ? { items } : {}) });
};

const createBucket: Handler = async ({ ctx, req, res, query }) => {
  const body = parseBody(bucketSchema, await readJson(req));
  const record = await ctx.store.createBucket(body.name, query.get('project') ?? ctx.projectId, body);
  sendJson(res, 200, bucketResource(record, ctx.baseUrl()));
};

const getBucket: Handler = async ({ ctx, res, params }) => {
  sendJson(res, 200, bucketResource(ctx.store.getBucket(params.bucket!), ctx.baseUrl()));
};

const deleteBucket: Handler = async ({ ctx, res, params }) => {
  await ctx.store.deleteBucket(params.bucket!);
  sendEmpty(res, 204);
};

// ---- objects ----

const listObjects: Handler = async ({ ctx, res, params, query }) => {
  const maxResults = query.get('maxResults');
  const page = ctx.store.listObjects(params.bucket!, {
    prefix: query.get('prefix') ?? '',
    ...(query.get('delimiter') ? { delimiter: query.get('delimiter')! } : {}),
    ...(query.get('pageToken') ? { pageToken: query.get('pageToken')! } : {}),
    ...(maxResults ? { maxResults: Number(maxResults) } : {}),
    ...(query.get('startOffset') ? { startOffset: query.get('startOffset')! } : {}),
    ...(query.get('endOffset') ? { endOffset: query.get('endOffset')! } : {}),
    includeTrailingDelimiter: query.get('includeTrailingDelimiter') === 'true',
  });
  sendJson(res, 200, {
    kind: 'storage#objects',
    ...(page.prefixes.length ? { prefixes: page.prefixes } : {}),
    ...(page.items.length ? { items: page.items.map((o) => objectResource(o, ctx.baseUrl())) } : {}),
    ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}),
  });
};

/** Metadata, or with `alt=media` the bytes (also what `/download/storage/v1/...` serves). */
const getObject: Handler = async ({ ctx, req, res, params, query }) => {
  const generation = query.get('generation') ?? undefined;
  if (query.get('alt') === 'media' || req.url?.startsWith('/download/')) {
    await sendObject(ctx, req, res, params.bucket!, params.object!, generation);
    return;
  }
  const record = ctx.store.getObject(params.bucket!, params.object!);
  if (generation !== undefined && generation !== record.generation) {
    throw new StorageError(404, 'notFound', `No such object: ${params.bucket}/${params.object}`, 'NoSuchKey');
  }
  sendJson(res, 200, objectResource(record, ctx.baseUrl()));
};

const patchObjectMetadata: Handler = async ({ ctx, req, res, params, query }) => {
  const { metadata, ...rest } = parseBody(objectPatchSchema, await readJson(req));
  // `metadata: null` clears every custom key.
  const current = ctx.store.getObject(params.bucket!, params.object!).metadata ?? {};
  const metadataPatch =
    metadata === null ? Object.fromEntries(Object.keys(current).map((k) => [k, null])) : metadata;
  const record = await patchObject(
    ctx,
    params.bucket!,
    params.object!,
    { ...rest, ...(metadataPatch ? { metadata: metadataPatch } : {}) },
    preconditionsOf(query),
  );
  sendJson(res, 200, objectResource(record, ctx.baseUrl()));
};

const removeObject: Handler = async ({ ctx, res, params, query }) => {
  await deleteObject(ctx, params.bucket!, params.object!, preconditionsOf(query));
  sendEmpty(res, 204);
};

// ---- uploads ----

/** `uploadType=media`: the body is the object; name in the query, type in Content-Type. */
const uploadMedia: Handler = async ({ ctx, req, res, params, query }) => {
  const bucket = params.bucket!;
  const name = requireParam(query.get('name') ?? undefined, 'name');
  await ensureBucket(ctx, bucket);
  const received = await receiveObjectBytes(ctx, req);
  const contentType = req.headers['content-type'];
  const target: UploadTarget = {
    bucket,
    name,
    fields: contentType ? { contentType } : {},
    preconditions: preconditionsOf(query),
    expected: parseGoogHash(req.headers['x-goog-hash']),
  };
  sendJson(res, 200, objectResource(await finishUpload(ctx, target, received), ctx.baseUrl()));
};

/** `uploadType=multipart`: multipart/related with a JSON metadata part and a media part, streamed. */
const uploadMultipart: Handler = async ({ ctx, req, res, params, query }) => {
  const bucket = params.bucket!;
  await ensureBucket(ctx, bucket);
  const splitter = new MultipartRelatedSplitter(boundaryOf(req.headers['content-type']));
  const received = await receiveObjectBytes(ctx, req, { before: [splitter] });
  let metadataJson: unknown;
  try {
    metadataJson = splitter.metadata?.length ? JSON.parse(splitter.metadata.toString('utf8')) : {};
  } catch {
    throw badRequest('multipart metadata part is not valid JSON', 'parseError');
  }
  const body = parseBody(objectFieldsSchema, metadataJson);
  const { fields, md5Hash, crc32c } = splitFields(body);
  const name = requireParam(query.get('name') ?? body.name, 'name');
  const mediaType = splitter.mediaHeaders['content-type'];
  const target: UploadTarget = {
    bucket,
    name,
    fields: { ...(mediaType ? { contentType: mediaType } : {}), ...fields },
    preconditions: preconditionsOf(query),
    expected: {
      ...(md5Hash ? { md5Hash } : {}),
      ...(crc32c ? { crc32c } : {}),
      ...parseGoogHash(req.headers['x-goog-hash']),
    },
  };
  sendJson(res, 200, objectResource(await finishUpload(ctx, target, received), ctx.baseUrl()));
};

/** `uploadType=resumable` POST: opens a session; its URI goes back in `Location`. */
const startResumable: Handler = async ({ ctx, req, res, params, query }) => {
  const bucket = params.bucket!;
  await ensureBucket(ctx, bucket);
  const body = parseBody(objectFieldsSchema, await readJson(req));
  const { fields, md5Hash, crc32c } = splitFields(body);
  const name = requireParam(query.get('name') ?? body.name, 'name');
  const declaredType = req.headers['x-upload-content-type'];
  const declaredLength = req.headers['x-upload-content-length'];
  const session = await ctx.uploads.start(
    {
      bucket,
      name,
      fields: { ...(typeof declaredType === 'string' ? { contentType: declaredType } : {}), ...fields },
      preconditions: preconditionsOf(query),
      expected: { ...(md5Hash ? { md5Hash } : {}), ...(crc32c ? { crc32c } : {}) },
    },
    typeof declaredLength === 'string' ? Number(declaredLength) : undefined,
  );
  // Built from the Host the client used, so the session URI works through proxies and other host names.
  const origin = req.headers.host ? `http://${req.headers.host}` : ctx.baseUrl();
  const location = new URL(`${origin}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o`);
  location.search = new URLSearchParams({ uploadType: 'resumable', name, upload_id: session.id }).toString();
  sendEmpty(res, 200, { Location: location.href, 'X-GUploader-UploadID': session.id });
};

const uploadHandlers: Record<string, Handler> = {
  media: uploadMedia,
  multipart: uploadMultipart,
  resumable: startResumable,
};

const upload: Handler = async (call) => {
  const uploadType = call.query.get('uploadType') ?? 'media';
  const handler = uploadHandlers[uploadType];
  if (!handler) throw badRequest(`Unsupported uploadType: ${uploadType}`);
  await handler(call);
};

// PUT to a session URI: a chunk, the last chunk, or a status query (`Content-Range: bytes */*`).
const resumableChunk: Handler = async ({ ctx, req, res, query }) => {
  const session = ctx.uploads.get(query.get('upload_id'));
  const outcome = await putChunk(ctx, session, req);
  if (outcome.done) {
    sendJson(res, 200, objectResource(outcome.record, ctx.baseUrl()));
    return;
  }
  // 308 "Resume Incomplete"; Range says which bytes are persisted (absent when none are).
  sendEmpty(res, 308, outcome.received > 0 ? { Range: `bytes=0-${outcome.received - 1}` } : {});
};

const cancelResumable: Handler = async ({ ctx, req, res, query }) => {
  await readSmallBody(req);
  await ctx.uploads.cancel(query.get('upload_id'));
  sendEmpty(res, 499);
};

// ---- notifications ----

const createNotification: Handler = async ({ ctx, req, res, params }) => {
  const bucket = ctx.store.getBucket(params.bucket!).name;
  const body = parseBody(notificationSchema, await readJson(req));
  const config = ctx.notifications.add(bucket, fullTopicName(body.topic, ctx.projectId), {
    ...(body.payload_format ? { payloadFormat: body.payload_format } : {}),
    ...(body.event_types ? { eventTypes: body.event_types } : {}),
    ...(body.object_name_prefix ? { objectNamePrefix: body.object_name_prefix } : {}),
    ...(body.custom_attributes ? { customAttributes: body.custom_attributes } : {}),
  });
  sendJson(res, 200, notificationResource(config, ctx.baseUrl()));
};

const listNotifications: Handler = async ({ ctx, res, params }) => {
  const bucket = ctx.store.getBucket(params.bucket!).name;
  const items = ctx.notifications.list(bucket).map((c) => notificationResource(c, ctx.baseUrl()));
  sendJson(res, 200, { kind: 'storage#notifications', ...(items.length ? { items } : {}) });
};

const getNotification: Handler = async ({ ctx, res, params }) => {
  sendJson(res, 200, notificationResource(ctx.notifications.get(params.bucket!, params.id!), ctx.baseUrl()));
};

const deleteNotification: Handler = async ({ ctx, res, params }) => {
  ctx.notifications.remove(params.bucket!, params.id!);
  sendEmpty(res, 204);
};

const routes: Route[] = [
  route('GET', `${JSON_PREFIX}/b`, listBuckets),
  route('POST', `${JSON_PREFIX}/b`, createBucket),
  route('GET', `${JSON_PREFIX}/b/${B}`, getBucket),
  route('DELETE', `${JSON_PREFIX}/b/${B}`, deleteBucket),
  route('GET', `${JSON_PREFIX}/b/${B}/o`, listObjects),
  route('GET', `(?:/storage/v1|/download/storage/v1)?/b/${B}/o/${O}`, getObject),
  route('PATCH', `${JSON_PREFIX}/b/${B}/o/${O}`, patchObjectMetadata),
  route('DELETE', `${JSON_PREFIX}/b/${B}/o/${O}`, removeObject),
  route('POST', `/upload/storage/v1/b/${B}/o`, upload),
  route('PUT', `/upload/storage/v1/b/${B}/o`, resumableChunk),
  route('DELETE', `/upload/storage/v1/b/${B}/o`, cancelResumable),
  route('POST', `${JSON_PREFIX}/b/${B}/notificationConfigs`, createNotification),
  route('GET', `${JSON_PREFIX}/b/${B}/notificationConfigs`, listNotifications),
  route('GET', `${JSON_PREFIX}/b/${B}/notificationConfigs/(?<id>[^/]+)`, getNotification),
  route('DELETE', `${JSON_PREFIX}/b/${B}/notificationConfigs/(?<id>[^/]+)`, deleteNotification),
];

/** Finds the route for a JSON API request; 404/405 in the API's own error shape otherwise. */
export function matchJsonRoute(method: string, path: string): { handler: Handler; params: Call['params'] } {
  const candidates = routes.filter((r) => r.pattern.test(path));
  const found = candidates.find((r) => r.method === method || (method === 'HEAD' && r.method === 'GET'));
  if (!found) {
    if (candidates.length)
      throw new StorageError(405, 'methodNotAllowed', `Method ${method} not allowed here.`);
    throw new StorageError(404, 'notFound', `Not Found: ${path}`);
  }
  const groups = found.pattern.exec(path)?.groups ?? {};
  const params = Object.fromEntries(
    Object.entries(groups)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, decodePathPart(v)]),
  );
  return { handler: found.handler, params };
}

function decodePathPart(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw badRequest(`Invalid percent-encoding in path: ${value}`);
  }
}
