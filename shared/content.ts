/**
 * What publishContent accepts (SPEC §4), shared so that the event schemas (shared/event-schemas.ts) and the
 * partnerRoom schema links describe content without importing another function's code.
 */
import { z } from 'zod';
import { INSTANCE_RE } from './registry.ts';

// Firestore reserves document ids of the form __name__
const ID = /^(?!__.*__$)[A-Za-z0-9_-]{1,64}$/;
export const contentSchema = z.strictObject({
  contentId: z.string().regex(ID, 'must be 1–64 characters of A–Z, a–z, 0–9, _ or -'),
  version: z.number().int().min(1),
  kind: z.enum(['lesson', 'exercise', 'quiz', 'signal']),
  title: z.string().min(1).max(300),
  topic: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,127}$/),
  sponsor: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,62}$/)
    .optional(),
  instances: z.array(z.string().regex(INSTANCE_RE)).min(1).max(1000).optional(),
  studentId: z
    .string()
    .regex(/^[A-Za-z0-9._:@-]{1,128}$/)
    .optional(),
  body: z.unknown().optional(),
  artifacts: z
    .array(z.string().regex(/^lfs:\/\/(?!__.*__$)[A-Za-z0-9_-]{1,64}$/, 'must be an lfs:// URI'))
    .max(20)
    .optional(),
});
