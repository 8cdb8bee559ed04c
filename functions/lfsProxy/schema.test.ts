import { describe, expect, it } from 'vitest';
import { parseUploadRequest, type UploadPolicy } from './schema.ts';
import { DEFAULT_CONTENT_TYPES, parseLfsSettings } from './settings.ts';

const policy: UploadPolicy = {
  contentTypes: new Set(DEFAULT_CONTENT_TYPES),
  maxBytes: 5 * 1024 ** 3,
  resumableFromBytes: 8 * 1024 ** 2,
};
const SHA = 'a'.repeat(64);
const valid = { filename: 'clip.mp4', contentType: 'video/mp4', size: 1024, sha256: SHA };

describe('POST /uploads body', () => {
  it('accepts a valid request and normalises it', () => {
    const r = parseUploadRequest(
      {
        filename: '../x/my video+final.MP4',
        contentType: ' Video/MP4 ',
        size: 1,
        sha256: SHA.toUpperCase(),
        studentId: 'stu-1',
      },
      policy,
    );
    expect(r).toEqual({
      ok: true,
      value: {
        filename: 'my_video_final.MP4',
        contentType: 'video/mp4',
        size: 1,
        sha256: SHA,
        studentId: 'stu-1',
      },
    });
  });

  it.each(['video/quicktime', 'image/heic', 'image/heif'])('allows %s (phone cameras) by default', (t) => {
    expect(parseUploadRequest({ ...valid, contentType: t }, policy).ok).toBe(true);
  });

  it('accepts the largest allowed size', () => {
    expect(parseUploadRequest({ ...valid, size: policy.maxBytes }, policy).ok).toBe(true);
  });

  it.each([
    [{ ...valid, contentType: 'application/x-msdownload' }, '/contentType', /must be one of video\/mp4/],
    [{ ...valid, contentType: 'text/plain; charset=utf-8' }, '/contentType', /must be one of/],
    [{ ...valid, size: 0 }, '/size', /at least 1/],
    [{ ...valid, size: -5 }, '/size', /at least 1/],
    [{ ...valid, size: policy.maxBytes + 1 }, '/size', /at most 5368709120/],
    [{ ...valid, size: 1.5 }, '/size', /integer/],
    [{ ...valid, size: '1024' }, '/size', /number/],
    [{ ...valid, sha256: 'abc' }, '/sha256', /64 hexadecimal/],
    [{ ...valid, sha256: 'g'.repeat(64) }, '/sha256', /64 hexadecimal/],
    [{ ...valid, filename: '' }, '/filename', /empty/],
    [{ ...valid, filename: 'a'.repeat(1025) }, '/filename', /1024/],
    [{ ...valid, studentId: 'has space' }, '/studentId', /A-Za-z0-9/],
    [{ ...valid, owner: 'x' }, '/owner', /unknown field/],
    [{ contentType: 'video/mp4', size: 1, sha256: SHA }, '/filename', /required/],
  ])('rejects %j at %s', (body, path, message) => {
    const r = parseUploadRequest(body, policy);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toEqual([{ path, message: expect.stringMatching(message) }]);
  });

  it('names every offending field at once', () => {
    const r = parseUploadRequest(
      { filename: 7, contentType: 'x/y', size: 0, sha256: '', extra: 1, more: 2 },
      policy,
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.path).sort()).toEqual([
      '/contentType',
      '/extra',
      '/filename',
      '/more',
      '/sha256',
      '/size',
    ]);
  });

  it.each([null, [], 'text', 42])('rejects a body that is not an object: %j', (body) => {
    expect(parseUploadRequest(body, policy)).toEqual({
      ok: false,
      errors: [{ path: '/', message: 'must be a JSON object' }],
    });
  });
});

describe('lfs settings', () => {
  const config = { LFS_BUCKET: 'b', LFS_MAX_BYTES: 100, LFS_SIGNER: 'key' as const };
  const keyEnv = { GOOGLE_APPLICATION_CREDENTIALS: '/keys/sa.json' };

  it('defaults: the built-in allow-list and 15 minutes', () => {
    const s = parseLfsSettings(config, keyEnv);
    expect([...s.policy.contentTypes]).toEqual([...DEFAULT_CONTENT_TYPES]);
    expect(s).toMatchObject({
      bucket: 'b',
      urlTtlSeconds: 900,
      policy: { maxBytes: 100, resumableFromBytes: 8 * 1024 * 1024 },
      signer: { kind: 'key', keyFile: '/keys/sa.json' },
    });
  });

  it('the allow-list is configurable', () => {
    const s = parseLfsSettings(config, {
      ...keyEnv,
      LFS_CONTENT_TYPES: 'video/mp4, Application/PDF',
      LFS_URL_TTL_SECONDS: '300',
    });
    expect([...s.policy.contentTypes]).toEqual(['video/mp4', 'application/pdf']);
    expect(s.urlTtlSeconds).toBe(300);
  });

  it('the resumable threshold is configurable and must be a positive integer', () => {
    expect(parseLfsSettings(config, { ...keyEnv, LFS_RESUMABLE_FROM_BYTES: '1048576' }).policy).toMatchObject(
      {
        resumableFromBytes: 1048576,
      },
    );
    for (const bad of ['0', '-1', '1.5', 'lots']) {
      expect(() => parseLfsSettings(config, { ...keyEnv, LFS_RESUMABLE_FROM_BYTES: bad }), bad).toThrow(
        /LFS_RESUMABLE_FROM_BYTES/,
      );
    }
  });

  it('one error names every bad variable', () => {
    expect(() => parseLfsSettings(config, { LFS_CONTENT_TYPES: 'video', LFS_URL_TTL_SECONDS: '5' })).toThrow(
      /LFS_CONTENT_TYPES.*LFS_URL_TTL_SECONDS.*GOOGLE_APPLICATION_CREDENTIALS/,
    );
  });
});
