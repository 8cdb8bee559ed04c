/**
 * OpenAPI 3.1 documents for the HTTPS functions (SPEC §4), built from route descriptors that carry the same
 * zod schemas the handlers validate with (`z.toJSONSchema`, JSON Schema 2020-12, which OpenAPI 3.1 uses as
 * is). Every error is problem+json (one shared `Problem` schema); every route but the public ones needs a
 * bearer JWT. Each function serves its document at `GET /openapi.json`.
 */
import { z } from 'zod';
import { healthSchema, problemSchema } from './api-schemas.ts';

export interface RouteDescriptor {
  method: 'get' | 'post' | 'put' | 'delete' | 'patch';
  /** OpenAPI path template, e.g. `/students/{id}` */
  path: string;
  summary: string;
  description?: string;
  operationId?: string;
  /** the JSON request body */
  request?: z.ZodType;
  /** query parameters, one per property */
  query?: z.ZodObject;
  /** path parameters, one per property (a parameter without a schema is a string) */
  params?: z.ZodObject;
  /** status → the JSON body's schema, or a description; 4xx/5xx are problem+json whatever is given */
  responses: Record<number, z.ZodType | string>;
  /** response headers by status, e.g. `{429: ['Retry-After']}` */
  headers?: Record<number, string[]>;
  /** no token needed */
  public?: boolean;
}

export interface OpenApiOptions {
  /** the function's name: the document's title */
  title: string;
  description?: string;
  version?: string;
  /** the function's public base URL, e.g. `https://europe-west3-proj.cloudfunctions.net/progressApi` */
  baseUrl: string;
  routes: RouteDescriptor[];
}

const HEADER_DOCS: Record<string, { description: string; schema: object }> = {
  'Retry-After': { description: 'seconds to wait before retrying', schema: { type: 'integer', minimum: 0 } },
  'RateLimit-Limit': { description: 'requests or events allowed per window', schema: { type: 'integer' } },
  'RateLimit-Remaining': { description: 'left in the current window', schema: { type: 'integer' } },
  'RateLimit-Reset': { description: 'seconds until the window resets', schema: { type: 'integer' } },
  'RateLimit-Policy': { description: 'e.g. `100;w=60`', schema: { type: 'string' } },
  Location: { description: 'the created resource', schema: { type: 'string' } },
  'WWW-Authenticate': { description: 'Bearer error="invalid_token"', schema: { type: 'string' } },
  Allow: { description: 'the methods the path supports', schema: { type: 'string' } },
};

const REASONS: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  400: 'Invalid request; `errors` names every offending field',
  401: 'Missing or invalid token',
  403: 'The token may not do this',
  404: 'Not found',
  405: 'Method not allowed (`Allow` lists the methods)',
  409: 'Conflict',
  413: 'Body or payload too large',
  415: 'Not JSON',
  429: 'Rate limited',
  503: 'A dependency is unavailable; retrying is safe',
};

/** JSON Schema of a zod schema, without the `$schema` key (OpenAPI 3.1 sets the dialect). */
export function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, {
    io,
    unrepresentable: 'any',
    reused: 'inline',
    target: 'draft-2020-12',
  }) as Record<string, unknown>;
  // a $ref into $defs would resolve against the OpenAPI document's root, not this schema
  if (rest.$defs) throw new Error('schemas for OpenAPI must not carry meta ids or recursion ($defs)');
  return rest;
}

const problemRef = { $ref: '#/components/schemas/Problem' };

export function openApiDocument(o: OpenApiOptions): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const routes: RouteDescriptor[] = [
    ...o.routes,
    {
      method: 'get',
      path: '/healthz',
      summary: 'Health of the function and its dependencies',
      public: true,
      responses: { 200: healthSchema, 503: 'A dependency is down' },
    },
    {
      method: 'get',
      path: '/openapi.json',
      summary: 'This document',
      public: true,
      responses: { 200: 'The OpenAPI 3.1 document' },
    },
  ];
  for (const r of routes) {
    const parameters: unknown[] = [];
    const pathNames = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
    const paramShapes = (r.params?.shape ?? {}) as Record<string, z.ZodType>;
    for (const name of pathNames) {
      const s = paramShapes[name];
      parameters.push({
        name,
        in: 'path',
        required: true,
        schema: s ? jsonSchema(s, 'input') : { type: 'string' },
      });
    }
    if (r.query) {
      const q = jsonSchema(r.query, 'input') as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, schema] of Object.entries(q.properties ?? {})) {
        const { description, ...rest } = schema as { description?: string };
        parameters.push({
          name,
          in: 'query',
          required: (q.required ?? []).includes(name),
          ...(description ? { description } : {}),
          schema: rest,
        });
      }
    }
    const statuses = { ...r.responses };
    if (!r.public) {
      statuses[401] ??= REASONS[401]!;
    }
    if (r.request) {
      statuses[400] ??= REASONS[400]!;
      statuses[415] ??= REASONS[415]!;
    }
    const responses: Record<string, unknown> = {};
    for (const [code, spec] of Object.entries(statuses)) {
      const status = Number(code);
      const error = status >= 400;
      const description = typeof spec === 'string' ? spec : (REASONS[status] ?? 'Response');
      const headerNames = [...(r.headers?.[status] ?? []), ...(status === 401 ? ['WWW-Authenticate'] : [])];
      const headers = Object.fromEntries(
        headerNames.map((h) => [h, HEADER_DOCS[h] ?? { schema: { type: 'string' } }]),
      );
      responses[code] = {
        description,
        ...(headerNames.length ? { headers } : {}),
        ...(error
          ? { content: { 'application/problem+json': { schema: problemRef } } }
          : typeof spec === 'string'
            ? {}
            : { content: { 'application/json': { schema: jsonSchema(spec, 'output') } } }),
      };
    }
    const op = {
      summary: r.summary,
      ...(r.description ? { description: r.description } : {}),
      operationId:
        r.operationId ??
        `${r.method}${r.path.replace(/\{(\w+)\}/g, 'By-$1').replace(/[^A-Za-z0-9]+(.)?/g, (_, c?: string) => (c ?? '').toUpperCase())}`,
      ...(parameters.length ? { parameters } : {}),
      ...(r.request
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: jsonSchema(r.request, 'input') } },
            },
          }
        : {}),
      responses,
      ...(r.public ? { security: [] } : {}),
    };
    paths[r.path] ??= {};
    paths[r.path]![r.method] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: o.title,
      version: o.version ?? '1.0.0',
      ...(o.description ? { description: o.description } : {}),
    },
    servers: [{ url: o.baseUrl }],
    security: [{ bearer: [] }],
    paths,
    components: {
      schemas: { Problem: jsonSchema(problemSchema, 'output') },
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description:
            'A JWT of the room’s identity provider (roles student, teacher, app, platform, partner)',
        },
      },
    },
  };
}
