import type { Request } from '@google-cloud/functions-framework';
import { beforeEach, describe, expect, it } from 'vitest';
import type { ArtifactDoc, ArtifactStore } from '../../shared/artifacts.ts';
import type { Principal, Verifier } from '../../shared/auth.ts';
import { HttpError, unauthorized } from '../../shared/errors.ts';
import type { Reply } from '../../shared/http.ts';
import { createLogger } from '../../shared/log.ts';
import { createLfsProxy } from './handler.ts';
import { DEFAULT_CONTENT_TYPES } from './settings.ts';
import type { SignedUpload, UrlSigner } from './storage.ts';

const NOW = new Date('2025-03-10T12:00:00Z');
const SHA = 'b'.repeat(64);

const principals: Record<string, Omit<Principal, 'exp'>> = {
  student: {
    sub: 'stu-1',
    role: 'student',
    permissions: ['artifact:write', 'artifact:read'],
    instance: 'inst-a',
  },
  studentNoInstance: { sub: 'stu-2', role: 'student', permissions: ['artifact:write', 'artifact:read'] },
  studentReadOnly: { sub: 'stu-1', role: 'student', permissions: ['artifact:read'] },
  app: { sub: 'app-a', role: 'app', permissions: ['artifact:write', 'artifact:read'], instance: 'inst-a' },
  appNoInstance: { sub: 'app-x', role: 'app', permissions: ['artifact:write'] },
  teacherA: {
    sub: 't-a',
    role: 'teacher',
    permissions: ['artifact:read', 'artifact:write'],
    instance: 'inst-a',
  },
  teacherB: { sub: 't-b', role: 'teacher', permissions: ['artifact:read'], instance: 'inst-b' },
  platform: { sub: 'content-engine', role: 'platform', permissions: ['artifact:write', 'artifact:read'] },
  partner: { sub: 'p-acme', role: 'partner', permissions: ['artifact:read'], partner: 'acme' },
};

const verifier: Verifier = {
  async verify(authorization) {
    const p = principals[/^Bearer (.+)$/.exec(authorization ?? '')?.[1] ?? ''];
    if (!p) throw unauthorized('invalid token');
    return { ...p, exp: Math.floor(NOW.getTime() / 1000) + 3600 };
  },
};

class MemoryStore implements ArtifactStore {
  docs = new Map<string, ArtifactDoc>();
  async get(id: string) {
    return this.docs.get(id);
  }
  async create(id: string, doc: ArtifactDoc) {
    if (this.docs.has(id)) throw new Error('exists');
    this.docs.set(id, doc);
  }
  async settle(): Promise<never> {
    throw new Error('lfsProxy never settles');
  }
  async markAnnounced(): Promise<never> {
    throw new Error('lfsProxy never announces');
  }
}

const signer: UrlSigner = {
  async upload({ objectName, contentType, size, expiresAt, resumable }): Promise<SignedUpload> {
    const url = `https://storage.example/ldr-artifacts/${encodeURI(objectName)}?X-Goog-Expires=${(expiresAt.getTime() - NOW.getTime()) / 1000}`;
    if (resumable) {
      return {
        url,
        method: 'POST',
        headers: {
          'content-type': contentType,
          'x-goog-resumable': 'start',
          'x-goog-if-generation-match': '0',
        },
      };
    }
    return {
      url,
      method: 'PUT',
      headers: {
        'content-type': contentType,
        'x-goog-content-length-range': `${size},${size}`,
        'x-goog-if-generation-match': '0',
      },
    };
  },
  async download({ objectName }) {
    return `https://storage.example/ldr-artifacts/${encodeURI(objectName)}?signed-get`;
  },
};

let store: MemoryStore;
let ids = 0;
const lfs = () =>
  createLfsProxy({
    verifier,
    store,
    signer,
    bucket: 'ldr-artifacts',
    policy: { contentTypes: new Set(DEFAULT_CONTENT_TYPES), maxBytes: 1000, resumableFromBytes: 500 },
    urlTtlSeconds: 900,
    log: createLogger('test', 'silent'),
    newId: () => `art${++ids}`,
    now: () => NOW,
  });

const req = (token: string | undefined, body?: unknown) =>
  ({
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body,
  }) as unknown as Request;

async function call(fn: () => Promise<Reply>): Promise<Reply> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof HttpError) return { status: err.status, body: err.toProblem() };
    throw err;
  }
}

const upload = (token: string | undefined, body: Record<string, unknown> = {}) =>
  call(() =>
    lfs().upload({
      req: req(token, { filename: 'clip.mp4', contentType: 'video/mp4', size: 10, sha256: SHA, ...body }),
      params: {},
      query: new URLSearchParams(),
    }),
  );
const get = (token: string, artifactId: string) =>
  call(() => lfs().object({ req: req(token), params: { artifactId }, query: new URLSearchParams() }));

beforeEach(() => {
  store = new MemoryStore();
});

describe('POST /uploads', () => {
  it('201 with the signed PUT, its headers and a 15-minute expiry; the record is pending', async () => {
    const r = await upload('student', { filename: '../../etc/passwd', contentType: 'text/plain' });
    expect(r.status).toBe(201);
    const body = r.body as Record<string, unknown>;
    const id = body.artifactId as string;
    expect(body).toEqual({
      artifactId: id,
      uri: `lfs://${id}`,
      uploadUrl: expect.stringContaining(`/ldr-artifacts/artifacts/${id}/passwd?`),
      method: 'PUT',
      headers: {
        'content-type': 'text/plain',
        'x-goog-content-length-range': '10,10',
        'x-goog-if-generation-match': '0',
      },
      expiresAt: '2025-03-10T12:15:00.000Z',
    });
    expect(store.docs.get(id)).toEqual({
      state: 'pending',
      ownerId: 'stu-1',
      ownerKind: 'student',
      instanceId: 'inst-a',
      uploaderSub: 'stu-1',
      uploaderRole: 'student',
      bucket: 'ldr-artifacts',
      objectName: `artifacts/${id}/passwd`,
      contentType: 'text/plain',
      size: 10,
      sha256: SHA,
      filename: 'passwd',
      createdAt: NOW.toISOString(),
    });
  });

  it.each([
    ['below the threshold', { size: 499 }, 'PUT'],
    ['at the threshold', { size: 500 }, 'POST'],
    ['above the threshold', { size: 1000 }, 'POST'],
    ['small, asked for', { size: 10, resumable: true }, 'POST'],
    ['large, one PUT asked for', { size: 1000, resumable: false }, 'PUT'],
  ])('%s → a signed %s', async (_what, body, method) => {
    const r = await upload('student', body);
    expect(r.status).toBe(201);
    const ticket = r.body as { method: string; headers: Record<string, string>; artifactId: string };
    expect(ticket.method).toBe(method);
    if (method === 'POST') {
      expect(ticket.headers).toEqual({
        'content-type': 'video/mp4',
        'x-goog-resumable': 'start',
        'x-goog-if-generation-match': '0',
      });
    }
    // either way the declared size and digest are recorded for finalizeArtifact to check
    expect(store.docs.get(ticket.artifactId)).toMatchObject({
      size: body.size,
      sha256: SHA,
      state: 'pending',
    });
  });

  it('resumable must be a boolean', async () => {
    const r = await upload('student', { resumable: 'yes' });
    expect(r.status).toBe(400);
    expect((r.body as { errors: Array<{ path: string }> }).errors.map((e) => e.path)).toEqual(['/resumable']);
  });

  it('a student without an instance claim owns an artifact no instance can read', async () => {
    const r = await upload('studentNoInstance', { studentId: 'stu-2' });
    expect(r.status).toBe(201);
    expect(store.docs.get((r.body as { artifactId: string }).artifactId)).not.toHaveProperty('instanceId');
  });

  it('an app token uploads for a learner of its instance', async () => {
    const r = await upload('app', { studentId: 'stu-9' });
    expect(r.status).toBe(201);
    expect(store.docs.get((r.body as { artifactId: string }).artifactId)).toMatchObject({
      ownerId: 'stu-9',
      ownerKind: 'student',
      instanceId: 'inst-a',
      uploaderSub: 'app-a',
      uploaderRole: 'app',
    });
  });

  it('a platform token uploads content owned by itself', async () => {
    const r = await upload('platform', { contentType: 'application/pdf' });
    expect(r.status).toBe(201);
    const doc = store.docs.get((r.body as { artifactId: string }).artifactId);
    expect(doc).toMatchObject({ ownerId: 'content-engine', ownerKind: 'platform' });
    expect(doc).not.toHaveProperty('instanceId');
  });

  it.each([
    ['no token', undefined, {}, 401],
    ['another student', 'student', { studentId: 'stu-other' }, 403],
    ['without artifact:write', 'studentReadOnly', {}, 403],
    ['a teacher', 'teacherA', {}, 403],
    ['a partner', 'partner', {}, 403],
    ['an app without an instance claim', 'appNoInstance', { studentId: 's' }, 403],
    ['a platform token for a learner', 'platform', { studentId: 'stu-1' }, 403],
  ])('%s → %i', async (_what, token, body, status) => {
    const r = await upload(token, body);
    expect(r.status).toBe(status);
    expect(store.docs.size).toBe(0);
  });

  it('an app token must name the learner', async () => {
    const r = await upload('app');
    expect(r.status).toBe(400);
    expect((r.body as { errors: unknown }).errors).toEqual([
      { path: '/studentId', message: 'is required for app tokens' },
    ]);
  });

  it('400 names every bad field; nothing is recorded', async () => {
    const r = await upload('student', {
      contentType: 'application/x-sh',
      size: 1001,
      sha256: 'xyz',
      note: 'hi',
    });
    expect(r.status).toBe(400);
    expect((r.body as { errors: Array<{ path: string }> }).errors.map((e) => e.path).sort()).toEqual([
      '/contentType',
      '/note',
      '/sha256',
      '/size',
    ]);
    expect(store.docs.size).toBe(0);
  });

  it('415 for a body that is not JSON', async () => {
    const r = await call(() =>
      lfs().upload({
        req: {
          headers: { authorization: 'Bearer student', 'content-type': 'text/plain' },
          body: 'x',
        } as unknown as Request,
        params: {},
        query: new URLSearchParams(),
      }),
    );
    expect(r.status).toBe(415);
  });
});

describe('GET /objects/:artifactId', () => {
  const seed = (id: string, patch: Partial<ArtifactDoc> = {}) =>
    store.docs.set(id, {
      state: 'stored',
      ownerId: 'stu-1',
      ownerKind: 'student',
      instanceId: 'inst-a',
      uploaderSub: 'stu-1',
      uploaderRole: 'student',
      bucket: 'ldr-artifacts',
      objectName: `artifacts/${id}/clip.mp4`,
      contentType: 'video/mp4',
      size: 10,
      sha256: SHA,
      filename: 'clip.mp4',
      createdAt: NOW.toISOString(),
      storedAt: NOW.toISOString(),
      generation: '1',
      ...patch,
    });

  it('stored: metadata and a signed GET valid 15 minutes, without the object name', async () => {
    seed('a1');
    const r = await get('student', 'a1');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      artifactId: 'a1',
      uri: 'lfs://a1',
      state: 'stored',
      filename: 'clip.mp4',
      contentType: 'video/mp4',
      size: 10,
      sha256: SHA,
      ownerId: 'stu-1',
      instanceId: 'inst-a',
      createdAt: NOW.toISOString(),
      storedAt: NOW.toISOString(),
      downloadUrl: 'https://storage.example/ldr-artifacts/artifacts/a1/clip.mp4?signed-get',
      expiresAt: '2025-03-10T12:15:00.000Z',
    });
  });

  it('pending: metadata only; rejected: with the reason', async () => {
    seed('p1', { state: 'pending', storedAt: undefined });
    seed('r1', {
      state: 'rejected',
      storedAt: undefined,
      rejectedAt: NOW.toISOString(),
      reason: 'sha256 mismatch',
    });
    const pending = (await get('student', 'p1')).body as Record<string, unknown>;
    expect(pending.state).toBe('pending');
    expect(pending).not.toHaveProperty('downloadUrl');
    const rejected = (await get('student', 'r1')).body as Record<string, unknown>;
    expect(rejected).toMatchObject({ state: 'rejected', reason: 'sha256 mismatch' });
    expect(rejected).not.toHaveProperty('downloadUrl');
  });

  it.each([
    ['the owner', 'student', 200],
    ['an app of the instance', 'app', 200],
    ['a teacher of the instance', 'teacherA', 200],
    ['the platform', 'platform', 200],
    ['a teacher of another instance', 'teacherB', 404],
    ['another student', 'studentNoInstance', 404],
    ['a partner', 'partner', 403],
  ])('%s → %i', async (_who, token, status) => {
    seed('a1');
    expect((await get(token, 'a1')).status).toBe(status);
  });

  it('unknown and foreign ids are the same 404', async () => {
    seed('a1');
    const unknown = await get('teacherB', 'nope');
    const foreign = await get('teacherB', 'a1');
    const malformed = await get('teacherB', 'a/../b');
    expect(unknown).toEqual(foreign);
    expect(malformed).toEqual(foreign);
    expect(foreign.status).toBe(404);
  });

  it('a platform-owned artifact is not readable by a student with the same sub', async () => {
    seed('c1', { ownerId: 'stu-1', ownerKind: 'platform', instanceId: undefined });
    expect((await get('student', 'c1')).status).toBe(404);
  });
});
