/** SPEC §4: every HTTPS function serves its own OpenAPI 3.1 document at GET /openapi.json, without a token. */
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { fnUrl } from './helpers.ts';

const HTTPS = ['ingestInteraction', 'lfsProxy', 'publishContent', 'partnerRoom', 'progressApi'];

describe('GET /openapi.json', () => {
  it.each(HTTPS)('%s serves a valid OpenAPI 3.1 document for its own URL', async (name) => {
    const res = await fetch(fnUrl(name, '/openapi.json'));
    expect(res.status).toBe(200);
    const doc = await res.json();
    expect(doc.openapi).toMatch(/^3\.1\./);
    expect(doc.servers[0].url).toBe(fnUrl(name));
    const result = await new Validator().validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.components.securitySchemes).toBeTruthy();
  });
});
