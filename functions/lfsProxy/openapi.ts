import { z } from 'zod';
import { artifactInfoSchema, uploadTicketSchema } from '../../shared/api-schemas.ts';
import { openApiDocument, type RouteDescriptor } from '../../shared/openapi.ts';
import { type UploadPolicy, uploadRequestSchema } from './schema.ts';
import { DEFAULT_CONTENT_TYPES, DEFAULT_RESUMABLE_FROM_BYTES } from './settings.ts';

export const defaultPolicy: UploadPolicy = {
  contentTypes: new Set(DEFAULT_CONTENT_TYPES),
  maxBytes: 5 * 1024 ** 3,
  resumableFromBytes: DEFAULT_RESUMABLE_FROM_BYTES,
};

/** The routes for the configured policy: the allow-list and size limit are part of the request schema. */
export const routes = (policy: UploadPolicy = defaultPolicy): RouteDescriptor[] => [
  {
    method: 'post',
    path: '/uploads',
    summary:
      'Declare a file and get a V4 signed URL for it (valid 15 min): a PUT, or for large files (or `resumable: true`) the POST that starts a resumable session',
    request: uploadRequestSchema(policy),
    responses: { 201: uploadTicketSchema, 403: 'The token may not upload for this learner' },
    headers: { 201: ['Location'] },
  },
  {
    method: 'get',
    path: '/objects/{artifactId}',
    summary: 'An artifact’s state and, once stored, a signed GET URL',
    params: z.object({ artifactId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/) }),
    responses: { 200: artifactInfoSchema, 404: 'Unknown, or not readable by the caller' },
  },
];

export const openapi = (baseUrl: string, policy?: UploadPolicy) =>
  openApiDocument({
    title: 'lfsProxy',
    description: 'SPEC §4: large files',
    baseUrl,
    routes: routes(policy),
  });
