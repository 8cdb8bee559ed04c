import { describe, expect, it } from 'vitest';
import { parseConfig, redacted } from './config.ts';

const base = {
  UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:8079',
  UPSTASH_REDIS_REST_TOKEN: 'tok',
  JWKS_URL: 'http://127.0.0.1:5001/.well-known/jwks.json',
  JWT_ISSUER: 'https://identity.ldr.local',
  JWT_AUDIENCE: 'lerning-data-room',
};

describe('parseConfig', () => {
  it('accepts a local configuration and fills the defaults', () => {
    const c = parseConfig({ ...base, DATABASE_URL: 'postgres://u:secret@127.0.0.1:5433/ldr' });
    expect(c).toMatchObject({
      GOOGLE_CLOUD_PROJECT: 'demo-ldr',
      RATE_STUDENT_PER_MIN: 100,
      RATE_STUDENT_EVENTS_PER_MIN: 1000,
      RATE_INSTANCE_EVENTS_PER_MIN: 6000,
      LFS_SIGNER: 'key',
    });
  });

  it('accepts Cloud SQL through the connector instead of a URL', () => {
    const c = parseConfig({ ...base, CLOUD_SQL_INSTANCE: 'p:europe-west3:ldr', PGUSER: 'fn-update@p.iam' });
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.PGDATABASE).toBe('ldr');
  });

  it.each([
    [{ ...base }, /DATABASE_URL: set DATABASE_URL, or CLOUD_SQL_INSTANCE and PGUSER/],
    [{ ...base, DATABASE_URL: 'nope' }, /DATABASE_URL/],
    [{ ...base, DATABASE_URL: 'postgres://h/db', RATE_STUDENT_PER_MIN: '-1' }, /RATE_STUDENT_PER_MIN/],
    [{ ...base, DATABASE_URL: 'postgres://h/db', LFS_SIGNER: 'hsm' }, /LFS_SIGNER/],
    [
      { DATABASE_URL: 'postgres://h/db' },
      /UPSTASH_REDIS_REST_URL.*UPSTASH_REDIS_REST_TOKEN.*JWKS_URL.*JWT_ISSUER.*JWT_AUDIENCE/,
    ],
  ])('names every bad variable (%#)', (env, message) => {
    expect(() => parseConfig(env)).toThrow(message);
  });

  it('redacts secrets for the cold-start log line', () => {
    const r = redacted(parseConfig({ ...base, DATABASE_URL: 'postgres://u:secret@127.0.0.1:5433/ldr' }));
    expect(JSON.stringify(r)).not.toContain(':secret@');
    expect(JSON.stringify(r)).not.toContain('"tok"');
  });
});
