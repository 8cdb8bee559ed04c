import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StorageError } from './errors.ts';
import { parseContentRange } from './resumable.ts';
import {
  canonicalQuery,
  canonicalRequest,
  canonicalUri,
  parseCredential,
  parseGoogDate,
  stringToSign,
  verifySignedRequest,
} from './signed-url.ts';

describe('canonical request parts', () => {
  it('encodes the path like the client (RFC 3986, slashes kept)', () => {
    expect(canonicalUri('bkt', "a/b c/(x)!*'~.txt")).toBe('/bkt/a/b%20c/%28x%29%21%2A%27~.txt');
    expect(canonicalUri('bkt', 'ü+&=.bin')).toBe('/bkt/%C3%BC%2B%26%3D.bin');
    expect(canonicalUri('bkt')).toBe('/bkt');
  });

  it('sorts the query, re-encodes it and leaves out the signature', () => {
    const raw =
      'X-Goog-SignedHeaders=host%3Bcontent-type&X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=abcd&a=b%20c&X-Goog-Credential=x%40y.z%2F20240101%2Fauto%2Fstorage%2Fgoog4_request';
    expect(canonicalQuery(raw)).toBe(
      'X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=x%40y.z%2F20240101%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-SignedHeaders=host%3Bcontent-type&a=b%20c',
    );
  });

  it('parses credentials and dates', () => {
    expect(parseCredential('sa@p.iam.gserviceaccount.com/20240102/auto/storage/goog4_request')).toEqual({
      clientEmail: 'sa@p.iam.gserviceaccount.com',
      date: '20240102',
      scope: '20240102/auto/storage/goog4_request',
    });
    expect(() => parseCredential('sa@p/20240102/auto/s3/aws4_request')).toThrow(StorageError);
    expect(parseGoogDate('20240102T030405Z')).toBe(Date.UTC(2024, 0, 2, 3, 4, 5));
    expect(() => parseGoogDate('2024-01-02T03:04:05Z')).toThrow(StorageError);
  });
});

describe('verifySignedRequest', () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const email = 'signer@demo.iam.gserviceaccount.com';
  const signers = new Map([[email, publicKey]]);
  const signedAt = Date.UTC(2024, 0, 2, 3, 4, 5);

  /** Signs a PUT the way the V4 spec says, independently of the client library. */
  function signedPut(expires = 900, headers: Record<string, string> = { 'content-type': 'text/plain' }) {
    const date = '20240102T030405Z';
    const scope = '20240102/auto/storage/goog4_request';
    const signedHeaders = [...Object.keys(headers), 'host'].sort().join(';');
    const query = new URLSearchParams({
      'X-Goog-Algorithm': 'GOOG4-RSA-SHA256',
      'X-Goog-Credential': `${email}/${scope}`,
      'X-Goog-Date': date,
      'X-Goog-Expires': String(expires),
      'X-Goog-SignedHeaders': signedHeaders,
    }).toString();
    const req = {
      method: 'PUT',
      bucket: 'bkt',
      object: 'o.txt',
      rawQuery: query,
      headers: { ...headers, host: 'localhost' } as Record<string, string>,
    };
    const toSign = stringToSign(canonicalRequest(req, signedHeaders.split(';'), 'localhost'), date, scope);
    const signature = sign('RSA-SHA256', Buffer.from(toSign), privateKey).toString('hex');
    return { ...req, rawQuery: `${query}&X-Goog-Signature=${signature}` };
  }

  const codeOf = (fn: () => unknown) => {
    try {
      fn();
      return 'ok';
    } catch (err) {
      return (err as StorageError).xmlCode;
    }
  };

  it('accepts a valid request inside its window, also with the port in Host', () => {
    const req = signedPut();
    expect(verifySignedRequest(req, signers, signedAt + 1000).clientEmail).toBe(email);
    const withPort = { ...req, headers: { ...req.headers, host: 'localhost:4443' } };
    expect(codeOf(() => verifySignedRequest(withPort, signers, signedAt))).toBe('ok');
  });

  it('names what is wrong', () => {
    const req = signedPut();
    expect(codeOf(() => verifySignedRequest(req, signers, signedAt + 900_000))).toBe('ExpiredToken');
    expect(codeOf(() => verifySignedRequest(req, signers, signedAt - 1000))).toBe('AccessDenied');
    expect(codeOf(() => verifySignedRequest(req, new Map(), signedAt))).toBe('AccessDenied');
    const otherType = { ...req, headers: { ...req.headers, 'content-type': 'text/html' } };
    expect(codeOf(() => verifySignedRequest(otherType, signers, signedAt))).toBe('SignatureDoesNotMatch');
    const otherMethod = { ...req, method: 'GET' };
    expect(codeOf(() => verifySignedRequest(otherMethod, signers, signedAt))).toBe('SignatureDoesNotMatch');
    const { 'content-type': _dropped, ...withoutType } = req.headers;
    expect(codeOf(() => verifySignedRequest({ ...req, headers: withoutType }, signers, signedAt))).toBe(
      'SignatureDoesNotMatch',
    );
    expect(codeOf(() => verifySignedRequest(signedPut(604_801), signers, signedAt))).toBe(
      'AuthorizationQueryParametersError',
    );
  });
});

describe('parseContentRange', () => {
  it.each([
    ['bytes */*', { kind: 'status' }],
    ['bytes */10', { kind: 'finish', total: 10 }],
    ['bytes 0-9/10', { kind: 'bytes', first: 0, last: 9, total: 10 }],
    ['bytes 10-19/*', { kind: 'bytes', first: 10, last: 19 }],
    ['bytes 0-*/*', { kind: 'bytes', first: 0 }],
    ['bytes 5-*/10', { kind: 'bytes', first: 5, total: 10 }],
  ])('%s', (header, expected) => {
    expect(parseContentRange(header)).toEqual(expected);
  });

  it('treats a missing header as the whole object and refuses garbage', () => {
    expect(parseContentRange(undefined)).toEqual({ kind: 'bytes', first: 0 });
    expect(() => parseContentRange('items 0-1/2')).toThrow(StorageError);
  });
});
