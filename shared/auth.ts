import { createHash } from 'node:crypto';
import { createRemoteJWKSet, type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import { forbidden, HttpError, unauthorized } from './errors.ts';

export const roles = ['student', 'teacher', 'app', 'platform', 'partner'] as const;
export type Role = (typeof roles)[number];

const claimsSchema = z.object({
  sub: z.string().min(1).max(128),
  role: z.enum(roles),
  permissions: z.array(z.string()).default([]),
  instance: z.string().min(1).max(128).optional(),
  partner: z.string().min(1).max(63).optional(),
  jti: z.string().max(128).optional(),
  iat: z.number().optional(),
  exp: z.number(),
});

export type Principal = z.infer<typeof claimsSchema>;

/** Port: the jti deny-list. `isRevoked` may throw when its store is down; callers decide. */
export interface RevocationList {
  isRevoked(jti: string): Promise<boolean>;
}

export interface Verifier {
  /** signature, claims and the deny-list */
  verify(authorization: string | undefined): Promise<Principal>;
  /**
   * Signature and claims only, cached per token until it expires; the caller must then check the deny-list
   * itself (e.g. inside a round trip it makes anyway) and pass what it found to `settleRevocation`.
   */
  authenticate?(authorization: string | undefined): Promise<Principal>;
  /** Applies the revocation policy to a deny-list answer: throws 401 if revoked, 503 if unknown and fail-closed. */
  settleRevocation?(p: Principal, state: RevocationState): void;
}

export type RevocationState = 'ok' | 'revoked' | 'unavailable';

/**
 * What a token is worth while the deny-list cannot be read (Redis unreachable).
 * - platform, partner, teacher: refused with 503 + Retry-After (fail closed). A platform token publishes to
 *   every instance and reads every learner; a partner token pulls the stream of many learners; a teacher
 *   reads a whole instance. Accepting a revoked one of these exposes many learners, and their callers are
 *   services or staff who can retry.
 * - student, app: accepted (fail open), logged. They carry the learning traffic itself, which a Redis outage
 *   must not stop (ingest's rate limits and de-duplication degrade the same way); a student token reaches
 *   one learner's own data; an app token one instance, under its rate limit, with every event attributed
 *   to it. A jti this process has already seen revoked stays refused during the outage.
 */
export const FAIL_OPEN_ON_REVOCATION_OUTAGE: ReadonlySet<Role> = new Set<Role>(['student', 'app']);
export const REVOCATION_RETRY_AFTER_SECONDS = 5;
/** jtis seen revoked, remembered per process so an outage cannot revive them here (bounded; oldest first out) */
const KNOWN_REVOKED_MAX = 10_000;
/** verified tokens remembered per process (by SHA-256 of the token) until they expire; oldest first out */
const VERIFIED_CACHE_MAX = 10_000;

export const MAX_LIFETIME_SECONDS = 24 * 3600;
export const CLOCK_SKEW_SECONDS = 30;

export function createVerifier(opts: {
  jwks: JWTVerifyGetKey | URL;
  issuer: string;
  audience: string;
  revocations: RevocationList;
  onRevocationUnavailable?: (err: unknown) => void;
}): Verifier {
  const keys =
    opts.jwks instanceof URL ? createRemoteJWKSet(opts.jwks, { cooldownDuration: 30_000 }) : opts.jwks;
  const knownRevoked = new Set<string>();
  const remember = (jti: string) => {
    knownRevoked.add(jti);
    if (knownRevoked.size > KNOWN_REVOKED_MAX) knownRevoked.delete(knownRevoked.values().next().value!);
  };
  const verified = new Map<string, Principal>();

  async function authenticate(authorization: string | undefined): Promise<Principal> {
    const m = /^bearer +([A-Za-z0-9_.-]+) *$/i.exec(authorization ?? '');
    if (!m) throw unauthorized('missing bearer token');
    const token = m[1]!;
    const cacheKey = createHash('sha256').update(token).digest('base64url');
    const nowSeconds = Math.floor(Date.now() / 1000);
    const hit = verified.get(cacheKey);
    // cached until `exp` (jose would accept it for CLOCK_SKEW_SECONDS more; past exp it is verified afresh)
    if (hit && hit.exp > nowSeconds) return hit;
    if (hit) verified.delete(cacheKey);
    let payload: unknown;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        algorithms: ['RS256', 'ES256'],
        issuer: opts.issuer,
        audience: opts.audience,
        requiredClaims: ['iss', 'aud', 'exp', 'sub'],
        clockTolerance: CLOCK_SKEW_SECONDS,
      }));
    } catch (err) {
      throw unauthorized(describe(err));
    }
    const parsed = claimsSchema.safeParse(payload);
    if (!parsed.success) {
      throw unauthorized(`invalid claims: ${parsed.error.issues.map((i) => i.path.join('.')).join(', ')}`);
    }
    const p = parsed.data;
    // jose does not check iat; a token "issued" in the future would stretch its lifetime past 24 h.
    if (p.iat !== undefined && p.iat > nowSeconds + CLOCK_SKEW_SECONDS) {
      throw unauthorized('token issued in the future');
    }
    const start = p.iat ?? nowSeconds;
    if (p.exp - start > MAX_LIFETIME_SECONDS) throw unauthorized('token lifetime exceeds 24 h');
    if (p.exp > nowSeconds) {
      verified.set(cacheKey, p);
      if (verified.size > VERIFIED_CACHE_MAX) verified.delete(verified.keys().next().value!);
    }
    return p;
  }

  function settleRevocation(p: Principal, state: RevocationState) {
    if (!p.jti) return;
    if (knownRevoked.has(p.jti)) throw unauthorized('token has been revoked');
    if (state === 'revoked') {
      remember(p.jti);
      throw unauthorized('token has been revoked');
    }
    if (state === 'unavailable' && !FAIL_OPEN_ON_REVOCATION_OUTAGE.has(p.role)) {
      throw new HttpError(
        503,
        'Service Unavailable',
        `the token revocation list is unreachable; ${p.role} tokens are not accepted until it is back: retry later`,
        { headers: { 'Retry-After': String(REVOCATION_RETRY_AFTER_SECONDS) } },
      );
    }
  }

  return {
    authenticate,
    settleRevocation,
    async verify(authorization) {
      const p = await authenticate(authorization);
      if (!p.jti) return p;
      if (knownRevoked.has(p.jti)) throw unauthorized('token has been revoked');
      let state: RevocationState = 'ok';
      try {
        state = (await opts.revocations.isRevoked(p.jti)) ? 'revoked' : 'ok';
      } catch (err) {
        opts.onRevocationUnavailable?.(err);
        state = 'unavailable';
      }
      settleRevocation(p, state);
      return p;
    },
  };
}

function describe(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim} is invalid`;
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'unknown signing key';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature verification failed';
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JOSENotSupported)
    return 'token not verifiable';
  return 'invalid token';
}

export function requirePermission(p: Principal, permission: string) {
  if (!p.permissions.includes(permission)) {
    throw forbidden(`the token lacks the permission ${permission}`);
  }
}
