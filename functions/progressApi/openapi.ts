import { z } from 'zod';
import {
  alertsSchema,
  historyPageSchema,
  historyQuerySchema,
  progressSchema,
} from '../../shared/api-schemas.ts';
import { openApiDocument, type RouteDescriptor } from '../../shared/openapi.ts';

const id = z.object({
  id: z
    .string()
    .regex(/^[A-Za-z0-9._:@-]{1,128}$/)
    .describe('the student id'),
});
const common = {
  params: id,
  headers: { 503: ['Retry-After'] },
};
const errors = {
  400: 'Invalid student id or query parameter (each named)',
  403: 'The token may not read this learner',
  404: 'No such learner (also for learners the caller’s instance does not hold)',
  503: 'A progress store is unavailable; retry later',
};

export const routes: RouteDescriptor[] = [
  {
    method: 'get',
    path: '/students/{id}',
    summary: 'Mastery per topic',
    ...common,
    responses: { 200: progressSchema, ...errors },
  },
  {
    method: 'get',
    path: '/students/{id}/history',
    summary: 'Interactions in (occurredAt, id) order, paged',
    ...common,
    query: historyQuerySchema,
    responses: { 200: historyPageSchema, ...errors },
  },
  {
    method: 'get',
    path: '/students/{id}/alerts',
    summary: 'Struggle alerts, newest first',
    ...common,
    responses: { 200: alertsSchema, ...errors },
  },
];

export const openapi = (baseUrl: string) =>
  openApiDocument({ title: 'progressApi', description: 'SPEC §4: the read side', baseUrl, routes });
