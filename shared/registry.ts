import type { Firestore } from '@google-cloud/firestore';
import { z } from 'zod';

/** SPEC §8: partners and app-instances. Records live in Firestore `partners/{slug}` and `instances/{id}`. */
export const SLUG_RE = /^[a-z0-9][a-z0-9-]{1,40}[a-z0-9]$/;
export const INSTANCE_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export const mirroredTypes = [
  'learnflow.interaction.v1',
  'learnflow.progress.updated.v1',
  'learnflow.content.published.v1',
  'learnflow.artifact.stored.v1',
] as const;

export const partnerSchema = z.strictObject({
  slug: z.string().regex(SLUG_RE, 'must be 3–42 characters of a–z, 0–9 and -'),
  displayName: z.string().min(1).max(200),
  instances: z.array(z.string().regex(INSTANCE_RE)).default([]),
  sponsors: z.array(z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/)).default([]),
  eventTypes: z
    .array(z.enum(mirroredTypes))
    .min(1)
    .default([...mirroredTypes]),
  shareContent: z.boolean().default(false),
  /** the principal allowed to pull `partner.<slug>.pull` (production IAM member) */
  principal: z.string().max(300).optional(),
  /** the custom domain that production maps onto /p/<slug> */
  domain: z.string().max(253).optional(),
});
export type Partner = z.infer<typeof partnerSchema>;

export const instanceSchema = z.strictObject({
  id: z.string().regex(INSTANCE_RE),
  displayName: z.string().min(1).max(200).optional(),
});
export type Instance = z.infer<typeof instanceSchema>;

export const PARTNERS = 'partners';
export const INSTANCES = 'instances';

/** Port: the sponsors present at an app-instance (owned by a partner that runs it). */
export interface InstanceSponsors {
  at(instance: string): Promise<ReadonlySet<string>>;
}

/** Sponsors at an instance from Firestore `partners`, re-read at most once a second per instance. */
export function firestoreInstanceSponsors(db: Firestore, maxAgeMs = 1000): InstanceSponsors {
  const cache = new Map<string, { at: number; sponsors: Promise<ReadonlySet<string>> }>();
  return {
    at(instance) {
      const hit = cache.get(instance);
      if (hit && Date.now() - hit.at <= maxAgeMs) return hit.sponsors;
      const sponsors = db
        .collection(PARTNERS)
        .where('instances', 'array-contains', instance)
        .get()
        .then((s) => new Set(s.docs.flatMap((d) => (d.data() as Partner).sponsors ?? [])));
      sponsors.catch(() => cache.delete(instance));
      if (cache.size > 10_000) cache.clear();
      cache.set(instance, { at: Date.now(), sponsors });
      return sponsors;
    },
  };
}
