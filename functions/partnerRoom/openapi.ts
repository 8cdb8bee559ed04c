import { z } from 'zod';
import { manifestSchema, pulledSchema } from '../../shared/api-schemas.ts';
import { openApiDocument, type RouteDescriptor } from '../../shared/openapi.ts';
import { ackBody } from './handler.ts';

const slug = z.object({ slug: z.string().regex(/^[a-z0-9][a-z0-9-]{1,40}[a-z0-9]$/) });
const notYours = 'No such partner room (also for another partner’s slug)';

export const routes: RouteDescriptor[] = [
  {
    method: 'get',
    path: '/p/{slug}',
    summary: 'The partner’s manifest: subscription, event types, schema links',
    params: slug,
    responses: { 200: manifestSchema, 404: notYours },
  },
  {
    method: 'post',
    path: '/p/{slug}/pull',
    summary: 'Pull up to max scoped CloudEvents (structured JSON) with ack ids',
    params: slug,
    query: z.object({ max: z.coerce.number().int().min(1).max(500).optional().describe('default 100') }),
    responses: { 200: pulledSchema, 400: 'max is not 1–500', 404: notYours },
  },
  {
    method: 'post',
    path: '/p/{slug}/ack',
    summary: 'Acknowledge pulled messages',
    params: slug,
    request: ackBody,
    responses: {
      200: z.object({ acknowledged: z.number().int() }),
      404: notYours,
      409: 'Some ack ids are expired or already acknowledged; pull again',
    },
  },
  {
    method: 'post',
    path: '/p/{slug}/nack',
    summary: 'Release pulled messages for redelivery',
    params: slug,
    request: ackBody,
    responses: { 200: z.object({ released: z.number().int() }), 404: notYours },
  },
  {
    method: 'get',
    path: '/p/{slug}/content',
    summary: 'Content sponsored by this partner',
    params: slug,
    responses: { 200: z.object({ content: z.array(z.record(z.string(), z.unknown())) }), 404: notYours },
  },
  {
    method: 'get',
    path: '/p/{slug}/schemas/{type}',
    summary: 'JSON Schema of an event type’s data as this partner receives it',
    params: slug.extend({ type: z.string() }),
    responses: { 200: 'A JSON Schema (draft 2020-12)', 404: notYours },
  },
];

export const openapi = (baseUrl: string) =>
  openApiDocument({
    title: 'partnerRoom',
    description: 'SPEC §4: the custom URL of each partner',
    baseUrl,
    routes,
  });
