import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { openapi as ingest } from '../functions/ingestInteraction/openapi.ts';
import { openapi as lfs } from '../functions/lfsProxy/openapi.ts';
import { openapi as partner } from '../functions/partnerRoom/openapi.ts';
import { type Alert, parseHistoryQuery, type TopicProgress } from '../functions/progressApi/handler.ts';
import { openapi as progress } from '../functions/progressApi/openapi.ts';
import { openapi as publish } from '../functions/publishContent/openapi.ts';
import { type alertSchema, historyQuerySchema, type topicProgressSchema } from './api-schemas.ts';

// the response schemas describe what the handlers build (checked by tsc): each way assignable
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameTopic: Same<z.infer<typeof topicProgressSchema>, TopicProgress> = true;
const sameAlert: Same<z.infer<typeof alertSchema>, Alert> = true;

const base = 'http://127.0.0.1:5001/demo-ldr/europe-west3';
const docs = {
  ingestInteraction: ingest(`${base}/ingestInteraction`),
  lfsProxy: lfs(`${base}/lfsProxy`),
  publishContent: publish(`${base}/publishContent`),
  partnerRoom: partner(`${base}/partnerRoom`),
  progressApi: progress(`${base}/progressApi`),
};

describe('OpenAPI 3.1 documents', () => {
  it('type checks tie the response schemas to the handlers', () => {
    expect([sameTopic, sameAlert]).toEqual([true, true]);
  });

  it.each(Object.entries(docs))('%s is a valid OpenAPI 3.1 document', async (name, doc) => {
    const v = new Validator();
    const res = await v.validate(structuredClone(doc));
    expect(res.errors ?? []).toEqual([]);
    expect(res.valid).toBe(true);
    expect(v.version).toBe('3.1');
    expect(doc).toMatchObject({
      openapi: '3.1.0',
      info: { title: name },
      servers: [{ url: `${base}/${name}` }],
      security: [{ bearer: [] }],
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    });
  });

  it('a document that breaks the rules is refused by the validator (the check can fail)', async () => {
    const broken = structuredClone(docs.progressApi) as any;
    broken.paths['/students/{id}'].get.responses = 'none';
    expect((await new Validator().validate(broken)).valid).toBe(false);
  });

  it('errors are problem+json with the shared Problem schema; secured routes document 401', () => {
    const op = (docs.ingestInteraction as any).paths['/'].post;
    for (const code of ['400', '401', '403', '413', '415', '429', '503']) {
      expect(op.responses[code].content['application/problem+json'].schema).toEqual({
        $ref: '#/components/schemas/Problem',
      });
    }
    expect(op.responses['429'].headers['Retry-After']).toBeDefined();
    expect((docs.ingestInteraction as any).paths['/healthz'].get.security).toEqual([]);
  });

  it('request bodies are the validating zod schemas: strict objects, every kind, the allow-list', () => {
    const body = (docs.ingestInteraction as any).paths['/'].post.requestBody.content['application/json']
      .schema;
    const single = body.anyOf[0];
    const variants = single.oneOf ?? single.anyOf;
    expect(variants).toHaveLength(10);
    expect(variants[0].additionalProperties).toBe(false);
    expect(body.anyOf[1].properties.events.maxItems).toBe(500);
    const upload = (docs.lfsProxy as any).paths['/uploads'].post.requestBody.content['application/json']
      .schema;
    expect(upload.additionalProperties).toBe(false);
    expect(upload.required).toEqual(['filename', 'contentType', 'size', 'sha256']);
    const history = (docs.progressApi as any).paths['/students/{id}/history'].get.parameters;
    expect(history.map((p: { name: string; in: string }) => `${p.in}:${p.name}`)).toEqual([
      'path:id',
      'query:from',
      'query:to',
      'query:limit',
      'query:cursor',
    ]);
  });
});

describe('progressApi history query: the documented schema and the hand-written parser agree', () => {
  it.each([
    '',
    'limit=5',
    'limit=0',
    'limit=501',
    'limit=abc',
    'from=2024-01-01T00:00:00Z&to=2024-02-01T00:00:00%2B01:00',
    'from=yesterday',
    'to=2024-01-01',
    'bogus=1',
  ])('?%s', (qs) => {
    const q = new URLSearchParams(qs);
    let parserOk = true;
    try {
      parseHistoryQuery(q);
    } catch {
      parserOk = false;
    }
    expect(historyQuerySchema.safeParse(Object.fromEntries(q)).success).toBe(parserOk);
  });
});
