import { createHash, type KeyObject, verify } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { accessDenied } from './errors.ts';

/**
 * V4 signed-URL verification (GOOG4-RSA-SHA256), rebuilt from the request the way Cloud Storage does:
 * https://cloud.google.com/storage/docs/authentication/canonical-requests
 */

export const ALGORITHM = 'GOOG4-RSA-SHA256';
const SIGNATURE_PARAM = 'X-Goog-Signature';
const MAX_EXPIRES_SECONDS = 7 * 24 * 60 * 60;

export interface SignedRequest {
  method: string;
  bucket: string;
  object?: string;
  /** The query string as sent, without the leading `?`. */
  rawQuery: string;
  headers: IncomingHttpHeaders;
}

export interface VerifiedSignature {
  clientEmail: string;
  signedHeaders: string[];
  expiresAt: Date;
}

/** True when the query carries a V4 signature (or any part of one). */
export const isSignedQuery = (rawQuery: string) =>
  /(^|&)X-Goog-(Signature|Algorithm|Credential)=/i.test(rawQuery);

/** Throws a 403 `StorageError` unless the request carries a valid, current signature by a known signer. */
export function verifySignedRequest(
  req: SignedRequest,
  signers: ReadonlyMap<string, KeyObject>,
  now: number,
): VerifiedSignature {
  const params = signatureParams(req.rawQuery);
  const credential = parseCredential(params.credential);
  const signedAt = parseGoogDate(params.date);
  if (credential.date !== params.date.slice(0, 8)) {
    throw accessDenied(
      'X-Goog-Credential date does not match X-Goog-Date.',
      'AuthorizationQueryParametersError',
    );
  }
  const expiresAt = checkTimeWindow(signedAt, params.expires, now);
  const publicKey = signers.get(credential.clientEmail);
  if (!publicKey) throw accessDenied(`Unknown signer ${credential.clientEmail}.`, 'AccessDenied');

  const signedHeaders = params.signedHeaders.split(';');
  requireSignedHeaders(signedHeaders, req.headers);
  const candidates = hostCandidates(req.headers.host).map((host) =>
    stringToSign(canonicalRequest(req, signedHeaders, host), params.date, credential.scope),
  );
  const signature = Buffer.from(params.signature, 'hex');
  const valid = candidates.some((s) => verifiesWith(publicKey, s, signature));
  if (!valid) {
    throw accessDenied('Access denied.', 'SignatureDoesNotMatch', {
      Details:
        'The request signature we calculated does not match the signature you provided. ' +
        'Check your Google secret key and signing method.',
      StringToSign: candidates[0]!,
      CanonicalRequest: canonicalRequest(req, signedHeaders, hostCandidates(req.headers.host)[0]!),
    });
  }
  return { clientEmail: credential.clientEmail, signedHeaders, expiresAt };
}

function verifiesWith(publicKey: KeyObject, data: string, signature: Buffer): boolean {
  try {
    return verify('RSA-SHA256', Buffer.from(data), publicKey, signature);
  } catch {
    return false;
  }
}

interface SignatureParams {
  algorithm: string;
  credential: string;
  date: string;
  expires: string;
  signedHeaders: string;
  signature: string;
}

function signatureParams(rawQuery: string): SignatureParams {
  const q = new URLSearchParams(rawQuery);
  const need = (name: string) => {
    const v = q.get(name);
    if (!v) throw accessDenied(`Missing query parameter ${name}.`, 'AuthorizationQueryParametersError');
    return v;
  };
  const algorithm = need('X-Goog-Algorithm');
  if (algorithm !== ALGORITHM) {
    throw accessDenied(`Unsupported X-Goog-Algorithm ${algorithm}; this emulator verifies ${ALGORITHM}.`);
  }
  return {
    algorithm,
    credential: need('X-Goog-Credential'),
    date: need('X-Goog-Date'),
    expires: need('X-Goog-Expires'),
    signedHeaders: need('X-Goog-SignedHeaders'),
    signature: need(SIGNATURE_PARAM),
  };
}

/** `<email>/<YYYYMMDD>/<location>/storage/goog4_request` */
export function parseCredential(credential: string) {
  const parts = credential.split('/');
  const scopeParts = parts.slice(-4);
  const clientEmail = parts.slice(0, -4).join('/');
  if (parts.length < 5 || scopeParts[2] !== 'storage' || scopeParts[3] !== 'goog4_request' || !clientEmail) {
    throw accessDenied('Malformed X-Goog-Credential.', 'AuthorizationQueryParametersError');
  }
  return { clientEmail, date: scopeParts[0]!, scope: scopeParts.join('/') };
}

/** `YYYYMMDDTHHMMSSZ` → epoch ms. */
export function parseGoogDate(value: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) throw accessDenied('Malformed X-Goog-Date.', 'AuthorizationQueryParametersError');
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  return Date.UTC(y!, mo! - 1, d!, h!, mi!, s!);
}

function checkTimeWindow(signedAt: number, expiresParam: string, now: number): Date {
  const seconds = Number(expiresParam);
  if (!/^\d+$/.test(expiresParam) || seconds < 1 || seconds > MAX_EXPIRES_SECONDS) {
    throw accessDenied(
      'X-Goog-Expires must be between 1 and 604800 seconds.',
      'AuthorizationQueryParametersError',
    );
  }
  const expiresAt = signedAt + seconds * 1000;
  if (now < signedAt) throw accessDenied('Request is not valid yet (X-Goog-Date is in the future).');
  if (now >= expiresAt) {
    throw accessDenied(`Request signature expired at: ${new Date(expiresAt).toISOString()}`, 'ExpiredToken');
  }
  return new Date(expiresAt);
}

function requireSignedHeaders(signedHeaders: string[], headers: IncomingHttpHeaders) {
  if (!signedHeaders.includes('host')) {
    throw accessDenied('X-Goog-SignedHeaders must include host.', 'AuthorizationQueryParametersError');
  }
  const missing = signedHeaders.filter((h) => headers[h] === undefined);
  if (missing.length) {
    throw accessDenied(
      `Signed header(s) missing from the request: ${missing.join(', ')}.`,
      'SignatureDoesNotMatch',
    );
  }
}

/**
 * The Node client signs `host` as the endpoint's hostname without a port (`url.hostname`); other signers
 * use the Host header as sent. Both are tried, so either kind of signature verifies.
 */
function hostCandidates(host: string | undefined): string[] {
  const sent = host ?? '';
  const bare = sent.replace(/:\d+$/, '');
  return bare === sent ? [sent] : [bare, sent];
}

export function canonicalRequest(req: SignedRequest, signedHeaders: string[], host: string): string {
  const payload = signedHeaders.includes('x-goog-content-sha256')
    ? headerValue(req.headers['x-goog-content-sha256'])
    : 'UNSIGNED-PAYLOAD';
  return [
    req.method.toUpperCase(),
    canonicalUri(req.bucket, req.object),
    canonicalQuery(req.rawQuery),
    canonicalHeaders(signedHeaders, { ...req.headers, host }),
    signedHeaders.join(';'),
    payload,
  ].join('\n');
}

export function stringToSign(canonical: string, date: string, scope: string): string {
  return [ALGORITHM, date, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
}

/** RFC 3986 percent-encoding: everything but `A-Za-z0-9-._~` (the client's `fixedEncodeURIComponent`). */
export const encodeRfc3986 = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** Path-style resource path; slashes inside the object name stay literal. */
export function canonicalUri(bucket: string, object?: string): string {
  const encodedBucket = encodeRfc3986(bucket);
  if (object === undefined) return `/${encodedBucket}`;
  return `/${encodedBucket}/${object.split('/').map(encodeRfc3986).join('/')}`;
}

/** Every query parameter except the signature, encoded, sorted by name. */
export function canonicalQuery(rawQuery: string): string {
  return [...new URLSearchParams(rawQuery)]
    .filter(([key]) => key !== SIGNATURE_PARAM)
    .map(([key, value]) => [encodeRfc3986(key), encodeRfc3986(value)] as const)
    .sort(([a, av], [b, bv]) => (a === b ? compare(av, bv) : compare(a, b)))
    .map(([key, value]) => `${key}=${value}`)
    .join('&');
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function canonicalHeaders(signedHeaders: string[], headers: IncomingHttpHeaders): string {
  return signedHeaders.map((name) => `${name}:${headerValue(headers[name])}\n`).join('');
}

function headerValue(value: string | string[] | undefined): string {
  const joined = Array.isArray(value) ? value.join(',') : (value ?? '');
  return joined.trim().replace(/\s{2,}/g, ' ');
}
