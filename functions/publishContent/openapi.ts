import { publishResultSchema } from '../../shared/api-schemas.ts';
import { openApiDocument, type RouteDescriptor } from '../../shared/openapi.ts';
import { contentSchema } from './handler.ts';

export const routes: RouteDescriptor[] = [
  {
    method: 'post',
    path: '/',
    operationId: 'publishContent',
    summary: 'Publish a content update or a learning signal (platform tokens)',
    description:
      'A (contentId, version) is immutable: the same again with the same data is answered as already published; with different data it is a 409.',
    request: contentSchema,
    responses: {
      202: publishResultSchema,
      403: 'Only platform services publish content',
      409: 'This version was published with other data',
      413: 'body over 32 KiB: upload through lfsProxy',
      503: 'The event bus is unavailable; retrying is safe',
    },
    headers: { 503: ['Retry-After'] },
  },
];

export const openapi = (baseUrl: string) =>
  openApiDocument({ title: 'publishContent', description: 'SPEC §4: content and signals', baseUrl, routes });
