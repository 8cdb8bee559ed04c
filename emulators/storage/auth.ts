import { type KeyObject, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { decodeJwt, jwtVerify } from 'jose';
import { StorageError } from './errors.ts';

/**
 * Who may use the emulator's JSON API when `auth` is on (as production requires credentials):
 * - a bearer token given to the emulator (the suite's own token, for tools and tests), or
 * - what the official `@google-cloud/storage` client sends with a service-account key when it is told to
 *   authenticate against a custom endpoint (`useAuthWithCustomEndpoint: true`, and
 *   `clientOptions.useJWTAccessWithScope: true` so that no OAuth token server is needed): a self-signed
 *   RS256 JWT, `iss` = the account's email, verified with the public key of one of the emulator's signers,
 *   unexpired and valid for at most an hour.
 * V4 signed URLs (XML API) carry their own signature and stay usable without a header, as in production.
 */
export async function authorizeJson(
  req: IncomingMessage,
  opts: { tokens: readonly string[]; signers: ReadonlyMap<string, KeyObject>; now: () => number },
): Promise<void> {
  const m = /^bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!m) throw anonymous();
  const presented = Buffer.from(m[1]!);
  for (const t of opts.tokens) {
    const want = Buffer.from(t);
    if (want.length === presented.length && timingSafeEqual(want, presented)) return;
  }
  let iss: string | undefined;
  try {
    iss = decodeJwt(m[1]!).iss;
  } catch {
    throw invalid();
  }
  const key = iss ? opts.signers.get(iss) : undefined;
  if (!key) throw invalid();
  try {
    const { payload } = await jwtVerify(m[1]!, key, {
      algorithms: ['RS256'],
      issuer: iss,
      currentDate: new Date(opts.now()),
      clockTolerance: 30,
      maxTokenAge: '1h',
      requiredClaims: ['exp', 'iat'],
    });
    if ((payload.exp ?? 0) - (payload.iat ?? 0) > 3600) throw invalid();
  } catch {
    throw invalid();
  }
}

const anonymous = () =>
  new StorageError(
    401,
    'required',
    'Anonymous caller does not have storage access: send Authorization: Bearer.',
    'AccessDenied',
  );
const invalid = () => new StorageError(401, 'authError', 'Invalid Credentials', 'AccessDenied');
