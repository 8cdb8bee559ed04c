import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { badRequest, conflict, noSuchBucket, noSuchObject, preconditionFailed } from './errors.ts';

/**
 * Buckets and objects on disk, with an in-memory index loaded at start.
 *
 *   <dataDir>/buckets/<bucket>/bucket.json
 *   <dataDir>/buckets/<bucket>/objects/<sha256(name)>.json              metadata sidecar (the commit point)
 *   <dataDir>/buckets/<bucket>/objects/<sha256(name)>.<generation>.data object bytes
 *   <dataDir>/tmp/                                                      bodies being received
 *
 * Only the live generation of each object is kept. Metadata changes go through one queue, so the index and
 * the sidecars never disagree; object bytes are streamed to `tmp/` outside it and renamed in on commit.
 */

export interface ObjectFields {
  contentType?: string;
  metadata?: Record<string, string>;
  cacheControl?: string;
  contentDisposition?: string;
  contentEncoding?: string;
  contentLanguage?: string;
}

/** A metadata patch: custom keys set to null are removed. */
export type ObjectPatch = Omit<ObjectFields, 'metadata'> & { metadata?: Record<string, string | null> };

export interface ObjectRecord extends ObjectFields {
  bucket: string;
  name: string;
  generation: string;
  metageneration: number;
  contentType: string;
  size: number;
  md5Hash: string;
  crc32c: string;
  timeCreated: string;
  updated: string;
}

export interface BucketRecord {
  name: string;
  projectId: string;
  location: string;
  storageClass: string;
  metageneration: number;
  timeCreated: string;
  updated: string;
}

export interface Preconditions {
  ifGenerationMatch?: string;
  ifGenerationNotMatch?: string;
  ifMetagenerationMatch?: string;
  ifMetagenerationNotMatch?: string;
}

export interface ReceivedBytes {
  tempFile: string;
  size: number;
  md5Hash: string;
  crc32c: string;
}

export interface ListOptions {
  prefix?: string;
  delimiter?: string;
  pageToken?: string;
  maxResults?: number;
  startOffset?: string;
  endOffset?: string;
  includeTrailingDelimiter?: boolean;
}

export interface ListPage {
  items: ObjectRecord[];
  prefixes: string[];
  nextPageToken?: string;
}

interface BucketEntry {
  record: BucketRecord;
  objects: Map<string, ObjectRecord>;
}

const BUCKET_NAME = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
const DEFAULT_PAGE_SIZE = 1000;

export class DiskStore {
  readonly #buckets = new Map<string, BucketEntry>();
  #queue: Promise<unknown> = Promise.resolve();
  #lastGeneration = 0;

  private constructor(
    readonly dataDir: string,
    private readonly now: () => number,
  ) {}

  /** Opens (creating if needed) a store and indexes what an earlier run left on disk. */
  static async open(dataDir: string, now: () => number): Promise<DiskStore> {
    const store = new DiskStore(dataDir, now);
    await rm(store.#tmpDir, { recursive: true, force: true });
    await mkdir(store.#tmpDir, { recursive: true });
    await mkdir(store.#bucketsDir, { recursive: true });
    for (const name of await readdir(store.#bucketsDir)) await store.#loadBucket(name);
    return store;
  }

  get #bucketsDir() {
    return join(this.dataDir, 'buckets');
  }

  get #tmpDir() {
    return join(this.dataDir, 'tmp');
  }

  /** A fresh path under `tmp/` for a body being received. */
  tempFile(): string {
    return join(this.#tmpDir, randomUUID());
  }

  // ---- buckets ----

  getBucket(name: string): BucketRecord {
    return this.#entry(name).record;
  }

  hasBucket(name: string): boolean {
    return this.#buckets.has(name);
  }

  listBuckets(prefix = ''): BucketRecord[] {
    return [...this.#buckets.values()]
      .map((b) => b.record)
      .filter((b) => b.name.startsWith(prefix))
      .sort((a, b) => compareNames(a.name, b.name));
  }

  createBucket(name: string, projectId: string, fields: Partial<BucketRecord> = {}): Promise<BucketRecord> {
    return this.#serially(async () => {
      if (!BUCKET_NAME.test(name)) throw badRequest(`Invalid bucket name: '${name}'`);
      if (this.#buckets.has(name)) {
        throw conflict('Your previous request to create the named bucket succeeded and you already own it.');
      }
      const at = new Date(this.now()).toISOString();
      const record: BucketRecord = {
        name,
        projectId,
        location: fields.location?.toUpperCase() ?? 'US',
        storageClass: fields.storageClass ?? 'STANDARD',
        metageneration: 1,
        timeCreated: at,
        updated: at,
      };
      await mkdir(this.#objectsDir(name), { recursive: true });
      await writeJsonAtomic(join(this.#bucketsDir, name, 'bucket.json'), record);
      this.#buckets.set(name, { record, objects: new Map() });
      return record;
    });
  }

  deleteBucket(name: string): Promise<void> {
    return this.#serially(async () => {
      const entry = this.#entry(name);
      if (entry.objects.size > 0) throw conflict('The bucket you tried to delete is not empty.');
      this.#buckets.delete(name);
      await rm(join(this.#bucketsDir, name), { recursive: true, force: true });
    });
  }

  // ---- objects ----

  getObject(bucket: string, name: string): ObjectRecord {
    const record = this.#entry(bucket).objects.get(name);
    if (!record) throw noSuchObject(bucket, name);
    return record;
  }

  dataPath(record: Pick<ObjectRecord, 'bucket' | 'name' | 'generation'>): string {
    return join(this.#objectsDir(record.bucket), `${objectKey(record.name)}.${record.generation}.data`);
  }

  /**
   * Makes received bytes the live generation of `bucket/name` (new generation, metageneration 1).
   * Owns `received.tempFile`: it is moved in, or deleted when the commit is refused.
   */
  commitObject(
    bucket: string,
    name: string,
    received: ReceivedBytes,
    fields: ObjectFields,
    preconditions: Preconditions = {},
  ): Promise<{ record: ObjectRecord; replaced?: ObjectRecord }> {
    return this.#serially(async () => {
      try {
        validateObjectName(name);
        const objects = this.#entry(bucket).objects;
        const replaced = objects.get(name);
        checkPreconditions(replaced, preconditions);
        const at = new Date(this.now()).toISOString();
        const record: ObjectRecord = {
          ...fields,
          bucket,
          name,
          generation: this.#nextGeneration(),
          metageneration: 1,
          contentType: fields.contentType || 'application/octet-stream',
          size: received.size,
          md5Hash: received.md5Hash,
          crc32c: received.crc32c,
          timeCreated: at,
          updated: at,
        };
        await rename(received.tempFile, this.dataPath(record));
        await this.#writeSidecar(record);
        objects.set(name, record);
        if (replaced) await unlinkQuietly(this.dataPath(replaced));
        return { record, replaced };
      } finally {
        await rm(received.tempFile, { force: true });
      }
    });
  }

  /** Merges writable fields (`metadata` keys set to null are removed) and bumps the metageneration. */
  patchObject(
    bucket: string,
    name: string,
    patch: ObjectPatch,
    preconditions: Preconditions = {},
  ): Promise<ObjectRecord> {
    return this.#serially(async () => {
      const current = this.getObject(bucket, name);
      checkPreconditions(current, preconditions);
      const { metadata: metadataPatch, ...rest } = patch;
      const record: ObjectRecord = {
        ...current,
        ...rest,
        contentType: rest.contentType || current.contentType,
        metageneration: current.metageneration + 1,
        updated: new Date(this.now()).toISOString(),
      };
      const metadata = mergeMetadata(current.metadata, metadataPatch);
      if (metadata) record.metadata = metadata;
      else delete record.metadata;
      await this.#writeSidecar(record);
      this.#entry(bucket).objects.set(name, record);
      return record;
    });
  }

  deleteObject(bucket: string, name: string, preconditions: Preconditions = {}): Promise<ObjectRecord> {
    return this.#serially(async () => {
      const record = this.getObject(bucket, name);
      checkPreconditions(record, preconditions);
      await unlinkQuietly(this.#sidecarPath(bucket, name));
      this.#entry(bucket).objects.delete(name);
      await unlinkQuietly(this.dataPath(record));
      return record;
    });
  }

  listObjects(bucket: string, options: ListOptions = {}): ListPage {
    const { prefix = '', delimiter, startOffset, endOffset } = options;
    const maxResults = Math.max(1, Math.min(options.maxResults ?? DEFAULT_PAGE_SIZE, DEFAULT_PAGE_SIZE));
    const after = options.pageToken ? decodePageToken(options.pageToken) : undefined;
    const names = [...this.#entry(bucket).objects.keys()]
      .filter((n) => n.startsWith(prefix))
      .filter((n) => after === undefined || compareNames(n, after) > 0)
      .filter((n) => !startOffset || compareNames(n, startOffset) >= 0)
      .filter((n) => !endOffset || compareNames(n, endOffset) < 0)
      .sort(compareNames);

    const page: ListPage = { items: [], prefixes: [] };
    let last: string | undefined;
    for (const name of names) {
      const group = delimiter ? groupOf(name, prefix, delimiter) : undefined;
      if (group !== undefined && page.prefixes.at(-1) === group) {
        last = name; // still inside a prefix already reported
        continue;
      }
      if (page.items.length + page.prefixes.length >= maxResults) {
        page.nextPageToken = encodePageToken(last!);
        break;
      }
      if (group === undefined || (options.includeTrailingDelimiter && name === group)) {
        page.items.push(this.getObject(bucket, name));
      }
      if (group !== undefined) page.prefixes.push(group);
      last = name;
    }
    return page;
  }

  // ---- internals ----

  #entry(bucket: string): BucketEntry {
    const entry = this.#buckets.get(bucket);
    if (!entry) throw noSuchBucket(bucket);
    return entry;
  }

  #objectsDir(bucket: string) {
    return join(this.#bucketsDir, bucket, 'objects');
  }

  #sidecarPath(bucket: string, name: string) {
    return join(this.#objectsDir(bucket), `${objectKey(name)}.json`);
  }

  #writeSidecar(record: ObjectRecord) {
    return writeJsonAtomic(this.#sidecarPath(record.bucket, record.name), record);
  }

  /** Generations are microsecond timestamps, like production's, kept strictly increasing. */
  #nextGeneration(): string {
    this.#lastGeneration = Math.max(this.now() * 1000, this.#lastGeneration + 1);
    return String(this.#lastGeneration);
  }

  #serially<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(work);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  async #loadBucket(name: string) {
    const record = JSON.parse(
      await readFile(join(this.#bucketsDir, name, 'bucket.json'), 'utf8'),
    ) as BucketRecord;
    const objects = new Map<string, ObjectRecord>();
    const dir = this.#objectsDir(name);
    const files = await readdir(dir);
    const live = new Set<string>();
    for (const file of files.filter((f) => f.endsWith('.json'))) {
      const object = JSON.parse(await readFile(join(dir, file), 'utf8')) as ObjectRecord;
      objects.set(object.name, object);
      live.add(`${objectKey(object.name)}.${object.generation}.data`);
      this.#lastGeneration = Math.max(this.#lastGeneration, Number(object.generation));
    }
    // Leftovers of a crash: bytes whose commit never reached the sidecar, half-written sidecars.
    const orphans = files.filter((f) => (f.endsWith('.data') && !live.has(f)) || f.endsWith('.tmp'));
    for (const orphan of orphans) {
      await unlinkQuietly(join(dir, orphan));
    }
    this.#buckets.set(name, { record, objects });
  }
}

const objectKey = (name: string) => createHash('sha256').update(name).digest('hex');

function validateObjectName(name: string) {
  const bytes = Buffer.byteLength(name);
  if (bytes === 0 || bytes > 1024) throw badRequest('Object name must be 1–1024 bytes of UTF-8.');
  if (name === '.' || name === '..' || /[\r\n]/.test(name))
    throw badRequest(`Invalid object name: '${name}'`);
}

export function checkPreconditions(current: ObjectRecord | undefined, p: Preconditions) {
  const generation = current?.generation ?? '0';
  const metageneration = current ? String(current.metageneration) : undefined;
  const fail = (what: string) => {
    throw preconditionFailed(`At least one of the pre-conditions you specified did not hold (${what}).`);
  };
  if (p.ifGenerationMatch !== undefined && p.ifGenerationMatch !== generation) fail('ifGenerationMatch');
  if (p.ifGenerationNotMatch !== undefined && p.ifGenerationNotMatch === generation)
    fail('ifGenerationNotMatch');
  if (p.ifMetagenerationMatch !== undefined && p.ifMetagenerationMatch !== metageneration) {
    fail('ifMetagenerationMatch');
  }
  if (p.ifMetagenerationNotMatch !== undefined && p.ifMetagenerationNotMatch === metageneration) {
    fail('ifMetagenerationNotMatch');
  }
}

function mergeMetadata(
  current: Record<string, string> | undefined,
  patch: Record<string, string | null> | undefined,
): Record<string, string> | undefined {
  if (patch === undefined) return current;
  const merged: Record<string, string> = { ...current };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  return Object.keys(merged).length ? merged : undefined;
}

/** The prefix (up to and including the first delimiter after `prefix`) a name rolls up into, if any. */
function groupOf(name: string, prefix: string, delimiter: string): string | undefined {
  const at = name.indexOf(delimiter, prefix.length);
  return at === -1 ? undefined : name.slice(0, at + delimiter.length);
}

/** Cloud Storage orders names by their UTF-8 bytes. */
const compareNames = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

const encodePageToken = (name: string) => Buffer.from(name).toString('base64url');

function decodePageToken(token: string): string {
  const name = Buffer.from(token, 'base64url').toString('utf8');
  if (!name) throw badRequest('Invalid pageToken.');
  return name;
}

async function writeJsonAtomic(path: string, value: unknown) {
  const tmp = `${path}.${randomUUID()}.tmp`;
  await writeFile(tmp, JSON.stringify(value, null, 2));
  await rename(tmp, path);
}

async function unlinkQuietly(path: string) {
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}
