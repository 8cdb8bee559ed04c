import type { BucketRecord, ObjectRecord } from './store.ts';

/** JSON API resource shapes (https://cloud.google.com/storage/docs/json_api/v1/objects#resource). */

const etag = (...parts: Array<string | number>) => Buffer.from(parts.join('/')).toString('base64');

export function objectResource(o: ObjectRecord, baseUrl: string) {
  const encoded = encodeURIComponent(o.name);
  return {
    kind: 'storage#object',
    id: `${o.bucket}/${o.name}/${o.generation}`,
    selfLink: `${baseUrl}/storage/v1/b/${o.bucket}/o/${encoded}`,
    mediaLink: `${baseUrl}/download/storage/v1/b/${o.bucket}/o/${encoded}?generation=${o.generation}&alt=media`,
    name: o.name,
    bucket: o.bucket,
    generation: o.generation,
    metageneration: String(o.metageneration),
    contentType: o.contentType,
    storageClass: 'STANDARD',
    size: String(o.size),
    md5Hash: o.md5Hash,
    crc32c: o.crc32c,
    etag: etag(o.generation, o.metageneration),
    timeCreated: o.timeCreated,
    updated: o.updated,
    timeStorageClassUpdated: o.timeCreated,
    timeFinalized: o.timeCreated,
    ...(o.metadata ? { metadata: o.metadata } : {}),
    ...(o.cacheControl ? { cacheControl: o.cacheControl } : {}),
    ...(o.contentDisposition ? { contentDisposition: o.contentDisposition } : {}),
    ...(o.contentEncoding ? { contentEncoding: o.contentEncoding } : {}),
    ...(o.contentLanguage ? { contentLanguage: o.contentLanguage } : {}),
  };
}

export type ObjectResource = ReturnType<typeof objectResource>;

export function bucketResource(b: BucketRecord, baseUrl: string) {
  return {
    kind: 'storage#bucket',
    id: b.name,
    selfLink: `${baseUrl}/storage/v1/b/${b.name}`,
    projectNumber: '0',
    name: b.name,
    timeCreated: b.timeCreated,
    updated: b.updated,
    metageneration: String(b.metageneration),
    location: b.location,
    locationType: 'multi-region',
    storageClass: b.storageClass,
    etag: etag(b.name, b.metageneration),
    iamConfiguration: {
      uniformBucketLevelAccess: { enabled: true },
      publicAccessPrevention: 'enforced',
    },
  };
}

/** Response headers both APIs send with object bytes. */
export function objectHeaders(o: ObjectRecord): Record<string, string> {
  return {
    'Content-Type': o.contentType,
    ETag: `"${Buffer.from(o.md5Hash, 'base64').toString('hex')}"`,
    'Last-Modified': new Date(o.updated).toUTCString(),
    'x-goog-generation': o.generation,
    'x-goog-metageneration': String(o.metageneration),
    'x-goog-hash': `crc32c=${o.crc32c},md5=${o.md5Hash}`,
    'x-goog-stored-content-length': String(o.size),
    'x-goog-stored-content-encoding': o.contentEncoding || 'identity',
    'x-goog-storage-class': 'STANDARD',
    ...(o.contentEncoding ? { 'Content-Encoding': o.contentEncoding } : {}),
    ...(o.contentDisposition ? { 'Content-Disposition': o.contentDisposition } : {}),
    ...(o.contentLanguage ? { 'Content-Language': o.contentLanguage } : {}),
    ...(o.cacheControl ? { 'Cache-Control': o.cacheControl } : {}),
    ...metadataHeaders(o.metadata),
  };
}

/** Custom metadata as `x-goog-meta-*` headers; entries that cannot travel in a header are left out. */
function metadataHeaders(metadata: Record<string, string> = {}): Record<string, string> {
  const headerSafe = ([k, v]: [string, string]) =>
    /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) && /^[\t\x20-\x7e]*$/.test(v);
  return Object.fromEntries(
    Object.entries(metadata)
      .filter(headerSafe)
      .map(([k, v]) => [`x-goog-meta-${k}`, v]),
  );
}
