import { describe, expect, it } from 'vitest';
import { parseConfig, redacted } from './config.ts';
import { loadTopology } from './topology.ts';

const jwt = {
  JWKS_URL: 'http://127.0.0.1:5001/.well-known/jwks.json',
  JWT_ISSUER: 'https://identity.ldr.local',
  JWT_AUDIENCE: 'lerning-data-room',
};
const redis = { UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:8079', UPSTASH_REDIS_REST_TOKEN: 'tok' };
const project = { GOOGLE_CLOUD_PROJECT: 'p' };

describe('parseConfig (per function, from its topology env list)', () => {
  it('accepts a direct database URL and fills only product defaults', () => {
    const c = parseConfig('progressApi', {
      ...project,
      ...jwt,
      ...redis,
      DATABASE_URL: 'postgres://u:secret@127.0.0.1:5433/ldr',
    });
    expect(c).toMatchObject({
      GOOGLE_CLOUD_PROJECT: 'p',
      PGDATABASE: 'ldr',
      PG_STATEMENT_TIMEOUT_MS: 10_000,
    });
    expect(c.CORS_ORIGINS).toEqual([]);
  });

  it('accepts Cloud SQL through the connector instead of a URL', () => {
    const c = parseConfig('updateProgress', {
      ...project,
      CLOUD_SQL_INSTANCE: 'p:europe-west3:ldr',
      PGUSER: 'fn-update@p.iam',
    });
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.PGDATABASE).toBe('ldr');
  });

  it('reads only the variables the function declares', () => {
    const c = parseConfig('routeTriage', { ...project, DATABASE_URL: 'postgres://h/db', LFS_BUCKET: 'b' });
    expect(Object.keys(c).sort()).toEqual(['GOOGLE_CLOUD_PROJECT', 'LOG_LEVEL']);
  });

  it('has no local default: the project, bucket, signer and secrets dir must be given', () => {
    expect(() => parseConfig('routeTriage', {})).toThrow(/GOOGLE_CLOUD_PROJECT: required/);
    expect(() => parseConfig('finalizeArtifact', project)).toThrow(/LFS_BUCKET: required/);
    expect(() => parseConfig('mirrorToPartners', { ...project, ...redis })).toThrow(
      /PARTNER_SECRETS_DIR: required/,
    );
    expect(() => parseConfig('lfsProxy', { ...project, ...jwt, ...redis, LFS_BUCKET: 'bkt' })).toThrow(
      /LFS_SIGNER: required/,
    );
  });

  it.each([
    ['updateProgress', { ...project }, /DATABASE_URL: set DATABASE_URL, or CLOUD_SQL_INSTANCE and PGUSER/],
    ['updateProgress', { ...project, DATABASE_URL: 'nope' }, /DATABASE_URL/],
    [
      'ingestInteraction',
      { ...project, ...jwt, ...redis, RATE_STUDENT_PER_MIN: '-1' },
      /RATE_STUDENT_PER_MIN/,
    ],
    ['ingestInteraction', { ...project, ...jwt, ...redis, CORS_ORIGINS: 'localhost' }, /CORS_ORIGINS/],
    [
      'progressApi',
      { ...project, DATABASE_URL: 'postgres://h/db' },
      /UPSTASH_REDIS_REST_URL.*UPSTASH_REDIS_REST_TOKEN|JWKS_URL.*JWT_ISSUER.*JWT_AUDIENCE/,
    ],
  ])('%s names every bad variable (%#)', (fn, env, message) => {
    expect(() => parseConfig(fn, env)).toThrow(message);
  });

  it('parses CORS origins into a list', () => {
    const c = parseConfig('ingestInteraction', {
      ...project,
      ...jwt,
      ...redis,
      CORS_ORIGINS: 'https://app.skillr.example, http://localhost:*',
    });
    expect(c.CORS_ORIGINS).toEqual(['https://app.skillr.example', 'http://localhost:*']);
  });

  it('every variable any function declares is known', () => {
    for (const f of loadTopology().functions) expect(() => parseConfig(f.name, {})).not.toThrow(/unknown/);
  });

  it('redacts secrets for the cold-start log line', () => {
    const r = redacted(
      parseConfig('publishContent', {
        ...project,
        ...jwt,
        ...redis,
        DATABASE_URL: 'postgres://u:secret@h:5433/ldr',
      }),
    );
    expect(JSON.stringify(r)).not.toContain('secret');
    expect(r.UPSTASH_REDIS_REST_TOKEN).toBe('[redacted]');
  });
});
