import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { createVerifier, type RevocationList, type Role } from './auth.ts';
import { HttpError } from './errors.ts';

const ISSUER = 'https://identity.test';
const AUDIENCE = 'ldr-test';
let sign: (claims: Record<string, unknown>) => Promise<string>;
let jwks: ReturnType<typeof createLocalJWKSet>;

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  jwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] });
  sign = (claims) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey);
});

/** A deny-list in memory that can be taken down, as Redis can. */
class FakeDenyList implements RevocationList {
  revoked = new Set<string>();
  down = false;
  async isRevoked(jti: string) {
    if (this.down) throw new Error('ECONNREFUSED');
    return this.revoked.has(jti);
  }
}

function setup() {
  const list = new FakeDenyList();
  const outages: unknown[] = [];
  const verifier = createVerifier({
    jwks,
    issuer: ISSUER,
    audience: AUDIENCE,
    revocations: list,
    onRevocationUnavailable: (err) => outages.push(err),
  });
  const verify = async (role: Role, jti: string) =>
    verifier.verify(
      `Bearer ${await sign({ sub: `${role}-1`, role, jti, instance: 'inst-a', partner: 'acme' })}`,
    );
  return { list, verify, outages };
}

const statusOf = (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (err: unknown) => {
      if (!(err instanceof HttpError)) throw err;
      return err;
    },
  );

describe('createVerifier: the jti deny-list', () => {
  it('refuses a revoked jti with 401 for every role', async () => {
    const { list, verify } = setup();
    list.revoked.add('gone');
    for (const role of ['student', 'teacher', 'app', 'platform', 'partner'] as const) {
      const r = await statusOf(verify(role, 'gone'));
      expect(r, role).toBeInstanceOf(HttpError);
      expect((r as HttpError).status, role).toBe(401);
    }
  });

  it.each(['platform', 'partner', 'teacher'] as const)(
    'fails closed for %s tokens while the deny-list is unreachable: 503 with Retry-After, problem+json',
    async (role) => {
      const { list, verify, outages } = setup();
      list.down = true;
      const err = (await statusOf(verify(role, 'fresh'))) as HttpError;
      expect(err.status).toBe(503);
      expect(err.extra.headers?.['Retry-After']).toMatch(/^[1-9]\d*$/);
      expect(err.toProblem()).toMatchObject({
        status: 503,
        detail: expect.stringMatching(/revocation list/),
      });
      expect(outages).toHaveLength(1);
    },
  );

  it.each(['student', 'app'] as const)(
    'fails open for %s tokens while the deny-list is unreachable (logged)',
    async (role) => {
      const { list, verify, outages } = setup();
      list.down = true;
      expect((await verify(role, 'fresh')).role).toBe(role);
      expect(outages).toHaveLength(1);
    },
  );

  it('keeps refusing a jti it has seen revoked while the deny-list is down', async () => {
    const { list, verify } = setup();
    list.revoked.add('stolen');
    expect(((await statusOf(verify('student', 'stolen'))) as HttpError).status).toBe(401);
    list.down = true;
    expect(((await statusOf(verify('student', 'stolen'))) as HttpError).status).toBe(401);
  });
});

describe('createVerifier: verified tokens cached until they expire', () => {
  it('verifies a token once, still checks the deny-list every time, and re-verifies past exp', async () => {
    let lookups = 0;
    const list = new FakeDenyList();
    const verifier = createVerifier({
      jwks: (...a: Parameters<typeof jwks>) => {
        lookups++;
        return jwks(...a);
      },
      issuer: ISSUER,
      audience: AUDIENCE,
      revocations: list,
    });
    const token = `Bearer ${await sign({ sub: 's-1', role: 'student', jti: 'c-1', instance: 'inst-a' })}`;
    await verifier.verify(token);
    await verifier.verify(token);
    await verifier.authenticate!(token);
    expect(lookups).toBe(1);
    list.revoked.add('c-1');
    expect(await statusOf(verifier.verify(token))).toMatchObject({ status: 401 });
    // past its exp the token is verified afresh (and refused), not served from the cache
    const other = `Bearer ${await sign({ sub: 's-2', role: 'student' })}`;
    await verifier.authenticate!(other);
    const before = lookups;
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + 2 * 3600_000);
      expect(await statusOf(verifier.authenticate!(other))).toMatchObject({ status: 401 });
    } finally {
      vi.useRealTimers();
    }
    expect(lookups).toBe(before + 1);
  });

  it('settleRevocation: revoked → 401, unavailable → 503 for platform, accepted for student', async () => {
    const { list } = setup();
    const verifier = createVerifier({ jwks, issuer: ISSUER, audience: AUDIENCE, revocations: list });
    const p = (role: Role, jti = `j-${role}`) => ({ sub: 'x', role, permissions: [], jti, exp: 0 });
    expect(() => verifier.settleRevocation!(p('student'), 'revoked')).toThrow(HttpError);
    expect(() => verifier.settleRevocation!(p('student', 'other'), 'unavailable')).not.toThrow();
    expect(() => verifier.settleRevocation!(p('platform'), 'unavailable')).toThrow(/unreachable/);
    // a jti seen revoked stays refused while the list is unavailable
    try {
      verifier.settleRevocation!(p('app'), 'revoked');
    } catch {}
    expect(() => verifier.settleRevocation!(p('app'), 'unavailable')).toThrow(/revoked/);
  });
});
