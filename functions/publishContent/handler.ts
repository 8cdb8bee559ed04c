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

/** Port: the content catalogue (Firestore `content/{id}`), keeping the newest version. */
export interface ContentStore {
  /** false when a newer or equal version is already stored */
  putIfNewer(
    c: Content & { publishedAt: string; audience: string[] | 'all'; publishedBy: string },
  ): Promise<boolean>;
}

/** Port: where a learner belongs (their instance), for signals. */
export interface Learners {
  instanceOf(studentId: string): Promise<string | undefined>;
}

export function createPublishContent(deps: {
  verifier: Verifier;
  bus: Bus;
  store: ContentStore;
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
    if (c.kind === 'signal' && c.instances)
      errors.push({ path: '/instances', message: 'a signal goes to its learner’s instance' });
    for (const [j, uri] of (c.artifacts ?? []).entries()) {
      const rec = await deps.artifacts.get(uri.slice('lfs://'.length));
      if (!rec) errors.push({ path: `/artifacts/${j}`, message: 'no such artifact' });
      else if (rec.state !== 'stored')
        errors.push({ path: `/artifacts/${j}`, message: `artifact is ${rec.state}, not stored` });
    }
    let audience: string[] | 'all' = c.instances ?? 'all';
    if (c.kind === 'signal' && c.studentId) {
      const instance = await deps.learners.instanceOf(c.studentId);
      if (!instance) errors.push({ path: '/studentId', message: 'unknown learner' });
      else audience = [instance];
    }
    if (errors.length) throw badRequest('invalid content', errors);

    const publishedAt = now().toISOString();
    const fresh = await deps.store.putIfNewer({ ...c, publishedAt, audience, publishedBy: p.sub });
    const event: LdrEvent<Content & { audience: string[] | 'all' }> = {
      id: `${c.contentId}@${c.version}`,
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
        ...(c.studentId && audience !== 'all' ? { 'ldr-instance': audience[0] } : {}),
      },
    };
    try {
      // published on every accepted request, also when the version was stored before: a retry after a
      // failed publish must go out; the ce-id (contentId@version) lets consumers keep one copy
      await deps.bus.publish(TOPICS.content, event, c.contentId);
    } catch (err) {
      if (!(err instanceof BusUnavailable)) throw err;
      throw new HttpError(503, 'Service Unavailable', 'the event bus is unavailable; retry, which is safe', {
        headers: { 'Retry-After': '2' },
      });
    }
    return {
      status: 202,
      body: { id: event.id, contentId: c.contentId, version: c.version, audience, stored: fresh },
    };
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
