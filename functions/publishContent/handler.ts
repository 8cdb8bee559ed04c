import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { requirePermission, type Verifier } from '../../shared/auth.ts';
import { type Bus, BusUnavailable } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import { contentSchema } from '../../shared/content.ts';
import { badRequest, type FieldError, forbidden, HttpError } from '../../shared/errors.ts';
import { subjectOf, TOPICS, TYPES } from '../../shared/events.ts';
import { jsonBody, type Reply, type RouteContext } from '../../shared/http.ts';
import type { Artifacts } from '../../shared/ports.ts';

export { contentSchema };
export type Content = z.infer<typeof contentSchema>;

export type StoredContent = Content & {
  publishedAt: string;
  audience: string[] | 'all';
  publishedBy: string;
};

/**
 * Port: the content catalogue (Firestore `content/{id}`, newest version) and its immutable versions
 * (`content/{id}/versions/{version}`: fingerprint of the data, when it was first published, when sent).
 */
export interface ContentStore {
  /**
   * Records the version unless it exists. `new`: recorded now; `unsent`: recorded with the same data
   * by an earlier request whose publish failed; `sent`: recorded and published; `conflict`: the version
   * exists with other data. `publishedAt` is the first request's, so a retry publishes the same event.
   */
  record(
    c: StoredContent,
    fingerprint: string,
  ): Promise<{ state: 'new' | 'unsent' | 'sent' | 'conflict'; publishedAt: string }>;
  markSent(contentId: string, version: number): Promise<void>;
}

/** Port: the registered app-instances (Firestore `instances/{id}`). */
export interface InstanceDirectory {
  /** the ids among `ids` that are registered */
  known(ids: string[]): Promise<Set<string>>;
}

/** Port: the app-instances a learner's interactions came through (the ledger), for signals. */
export interface Learners {
  instancesOf(studentId: string): Promise<string[]>;
}

/** SHA-256 of the content as JSON with sorted keys: equal data, equal fingerprint. */
export function fingerprint(c: Content): string {
  const canonical = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canonical);
    if (v && typeof v === 'object')
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
      );
    return v;
  };
  return createHash('sha256')
    .update(JSON.stringify(canonical(c)))
    .digest('hex');
}

export function createPublishContent(deps: {
  verifier: Verifier;
  bus: Bus;
  store: ContentStore;
  instances: InstanceDirectory;
  learners: Learners;
  artifacts: Artifacts;
  now?: () => Date;
}) {
  const now = deps.now ?? (() => new Date());
  return async ({ req }: RouteContext): Promise<Reply> => {
    const p = await deps.verifier.verify(req.headers.authorization);
    if (p.role !== 'platform') throw forbidden('only platform services publish content');
    requirePermission(p, 'content:publish');
    const body = jsonBody(req, 64 * 1024);
    const parsed = contentSchema.safeParse(body);
    if (!parsed.success) {
      throw badRequest(
        'invalid content',
        parsed.error.issues.flatMap((i) =>
          i.code === 'unrecognized_keys'
            ? i.keys.map((k) => ({ path: `/${[...i.path, k].join('/')}`, message: 'unknown field' }))
            : [{ path: `/${i.path.join('/')}`, message: i.message }],
        ),
      );
    }
    const c = parsed.data;
    const errors: FieldError[] = [];
    if (c.body !== undefined && Buffer.byteLength(JSON.stringify(c.body)) > 32 * 1024) {
      throw new HttpError(
        413,
        'Content Too Large',
        'body exceeds 32 KiB: upload it through lfsProxy and reference it in artifacts',
        {
          errors: [{ path: '/body', message: 'must be at most 32 KiB' }],
        },
      );
    }
    const unfit = firestoreUnfit(c.body, '/body');
    if (unfit) errors.push(unfit);
    if (c.kind === 'signal' && !c.studentId)
      errors.push({ path: '/studentId', message: 'a signal needs the learner it is for' });
    if (c.kind !== 'signal' && c.studentId)
      errors.push({ path: '/studentId', message: 'only signals address one learner' });
    if (c.kind === 'signal' && !c.instances)
      errors.push({
        path: '/instances',
        message: 'a signal names the app-instance(s) it is for; the room does not guess a learner’s instance',
      });
    for (const [j, uri] of (c.artifacts ?? []).entries()) {
      const rec = await deps.artifacts.get(uri.slice('lfs://'.length));
      if (!rec) errors.push({ path: `/artifacts/${j}`, message: 'no such artifact' });
      else if (rec.state !== 'stored')
        errors.push({ path: `/artifacts/${j}`, message: `artifact is ${rec.state}, not stored` });
    }
    if (c.instances) {
      const known = await deps.instances.known([...new Set(c.instances)]);
      const through = c.kind === 'signal' && c.studentId ? await deps.learners.instancesOf(c.studentId) : [];
      if (c.kind === 'signal' && !through.length)
        errors.push({ path: '/studentId', message: 'unknown learner' });
      for (const [j, id] of c.instances.entries()) {
        if (c.instances.indexOf(id) !== j)
          errors.push({ path: `/instances/${j}`, message: 'listed more than once' });
        else if (!known.has(id)) errors.push({ path: `/instances/${j}`, message: 'no such app-instance' });
        else if (through.length && !through.includes(id))
          errors.push({
            path: `/instances/${j}`,
            message: 'the learner has no interactions through this instance',
          });
      }
    }
    if (errors.length) throw badRequest('invalid content', errors);

    const audience: string[] | 'all' = c.instances ?? 'all';
    const recorded = await deps.store.record(
      { ...c, publishedAt: now().toISOString(), audience, publishedBy: p.sub },
      fingerprint(c),
    );
    const answer = {
      id: `${c.contentId}@${c.version}`,
      contentId: c.contentId,
      version: c.version,
      audience,
    };
    if (recorded.state === 'conflict') {
      throw new HttpError(
        409,
        'Conflict',
        `version ${c.version} of ${c.contentId} was published with other data; versions are immutable, publish a new version`,
        { errors: [{ path: '/version', message: 'already published with other data' }] },
      );
    }
    if (recorded.state === 'sent') return { status: 200, body: { ...answer, status: 'already_published' } };
    const publishedAt = recorded.publishedAt;
    const event: LdrEvent<Content & { audience: string[] | 'all' }> = {
      id: answer.id,
      source: '/ldr/functions/publishContent',
      type: TYPES.content,
      time: publishedAt,
      subject: c.studentId ? subjectOf(c.studentId) : `content/${c.contentId}`,
      data: { ...c, audience },
      extensions: {
        'ldr-kind': c.kind,
        'ldr-sponsor': c.sponsor,
        'ldr-audience': audience === 'all' ? 'all' : 'list',
        ...(audience === 'all' ? {} : Object.fromEntries(audience.map((i) => [`ldr-to-${i}`, '1']))),
        ...(c.studentId && audience !== 'all' && audience.length === 1
          ? { 'ldr-instance': audience[0] }
          : {}),
      },
    };
    try {
      // a version recorded by an earlier request whose publish failed goes out now, as the same event
      await deps.bus.publish(TOPICS.content, event, c.contentId);
    } catch (err) {
      if (!(err instanceof BusUnavailable)) throw err;
      throw new HttpError(503, 'Service Unavailable', 'the event bus is unavailable; retry, which is safe', {
        headers: { 'Retry-After': '2' },
      });
    }
    // not marked: a retry publishes the same ce-id again, which consumers de-duplicate
    await deps.store.markSent(c.contentId, c.version).catch(() => {});
    return { status: 202, body: { ...answer, status: 'published' } };
  };
}

/**
 * What Firestore cannot store in the content document: maps and arrays nested deeper than it allows
 * (20 levels for the whole document; the body gets 16), an array directly inside an array, and map keys
 * that are empty or of the reserved form __name__.
 */
const MAX_BODY_DEPTH = 16;
function firestoreUnfit(v: unknown, path: string, depth = 0): { path: string; message: string } | undefined {
  if (v && typeof v === 'object' && depth >= MAX_BODY_DEPTH) {
    return { path, message: `nests deeper than ${MAX_BODY_DEPTH} levels` };
  }
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) {
      if (Array.isArray(x))
        return { path: `${path}/${i}`, message: 'an array directly inside an array cannot be stored' };
      const inner = firestoreUnfit(x, `${path}/${i}`, depth + 1);
      if (inner) return inner;
    }
  } else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === '' || /^__.*__$/.test(k))
        return { path: `${path}/${k}`, message: 'empty and __name__ keys cannot be stored' };
      const inner = firestoreUnfit(x, `${path}/${k}`, depth + 1);
      if (inner) return inner;
    }
  }
  return undefined;
}
