import { z } from 'zod';
import { ingestResultSchema } from '../../shared/api-schemas.ts';
import { interactionSchema, LIMITS } from '../../shared/domain/interaction.ts';
import { openApiDocument, type RouteDescriptor } from '../../shared/openapi.ts';

/** The body `validateBatch` accepts: one interaction, or a batch of up to 500. */
export const ingestBodySchema = z.union([
  interactionSchema,
  z.strictObject({ events: z.array(interactionSchema).min(1).max(LIMITS.batch) }),
]);

const rate = ['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'RateLimit-Policy'];

export const routes: RouteDescriptor[] = [
  {
    method: 'post',
    path: '/',
    operationId: 'postInteractions',
    summary: 'Post one interaction or a batch of up to 500 (body ≤ 1 MiB, also gzip-inflated)',
    description:
      'A batch is validated as a whole. An id seen for that learner in the last 24 h is a duplicate and is not published again, so retrying with the same ids is safe.',
    request: ingestBodySchema,
    responses: {
      202: ingestResultSchema,
      403: 'The token may not post for this student or instance',
      413: 'Body over 1 MiB or a payload over 32 KiB: upload through lfsProxy',
      429: 'Rate limited',
      503: 'The event bus is unavailable; retrying the same ids is safe',
    },
    headers: { 202: rate, 429: [...rate, 'Retry-After'], 503: ['Retry-After'] },
  },
];

export const openapi = (baseUrl: string) =>
  openApiDocument({
    title: 'ingestInteraction',
    description: 'SPEC §4: posting interactions',
    baseUrl,
    routes,
  });
