import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import type { Role } from '../shared/auth.ts';

/** The dev identity provider: an ES256 key pair under <dataDir>/identity and its JWKS. */
export const LOCAL_ISSUER = 'https://identity.ldr.local';
export const LOCAL_AUDIENCE = 'lerning-data-room';

export interface DevIdentity {
  privateJwk: JWK;
  jwks: { keys: JWK[] };
}

export async function ensureIdentity(dataDir: string): Promise<DevIdentity> {
  const dir = join(dataDir, 'identity');
  const file = join(dir, 'private.jwk.json');
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = {
      ...(await exportJWK(privateKey)),
      kid: `dev-${randomUUID().slice(0, 8)}`,
      alg: 'ES256',
      use: 'sig',
    };
    writeFileSync(file, JSON.stringify(jwk), { mode: 0o600 });
  }
  const privateJwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
  const { d: _d, ...publicJwk } = privateJwk;
  return { privateJwk, jwks: { keys: [publicJwk] } };
}

export const defaultPermissions: Record<Role, string[]> = {
  student: ['interaction:write', 'artifact:write', 'artifact:read', 'progress:read'],
  teacher: ['artifact:read', 'progress:read'],
  app: ['interaction:write', 'artifact:write', 'artifact:read', 'progress:read'],
  platform: ['content:publish', 'artifact:write', 'artifact:read', 'progress:read'],
  partner: ['partner:pull'],
};

export interface TokenRequest {
  sub: string;
  role: Role;
  instance?: string;
  partner?: string;
  permissions?: string[];
  ttlSeconds?: number;
  jti?: string;
}

export async function mintToken(identity: DevIdentity, req: TokenRequest): Promise<string> {
  const key = await importJWK(identity.privateJwk, 'ES256');
  const claims: Record<string, unknown> = {
    role: req.role,
    permissions: req.permissions?.length ? req.permissions : defaultPermissions[req.role],
  };
  if (req.instance) claims.instance = req.instance;
  if (req.partner) claims.partner = req.partner;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: identity.privateJwk.kid!, typ: 'JWT' })
    .setSubject(req.sub)
    .setIssuer(LOCAL_ISSUER)
    .setAudience(LOCAL_AUDIENCE)
    .setIssuedAt()
    .setJti(req.jti ?? randomUUID())
    .setExpirationTime(`${req.ttlSeconds ?? 3600}s`)
    .sign(key);
}
