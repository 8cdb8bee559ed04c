import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Firestore } from '@google-cloud/firestore';
import { Storage } from '@google-cloud/storage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadUrl, uploadArtifact } from '../client/lfs.ts';
import { LOG as FINALIZE_LOG } from '../functions/finalizeArtifact/handler.ts';
import { ARTIFACTS, type ArtifactDoc } from '../shared/artifacts.ts';
import { TOPICS } from '../shared/events.ts';
import { eventually, fnUrl, iso, postJson, pubsubClient, suite, tap, token, workers } from './helpers.ts';

/**
 * Large files end to end against the running suite (SPEC §1, §4 lfsProxy): lfsProxy over HTTP, the
 * storage emulator verifying the V4 signatures, its finalize notifications driving finalizeArtifact
 * through the bridge, ingestInteraction refusing what is not stored. Fresh learners and instances per test.
 */

type Json = Record<string, any>;

const uid = () => randomUUID().replace(/-/g, '').slice(0, 16);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const lfsBase = () => fnUrl('lfsProxy');
const BUCKET = 'ldr-artifacts';

const pubsub = pubsubClient();
let fs: Firestore;
let storage: Storage;
let signingStorage: Storage;

beforeAll(() => {
  const env = suite().env;
  fs = new Firestore({ projectId: suite().projectId, host: env.FIRESTORE_EMULATOR_HOST, ssl: false });
  // the emulator's JSON API requires credentials: Application Default Credentials from the suite's
  // metadata server, as a function gets them
  process.env.GCE_METADATA_HOST = env.GCE_METADATA_HOST;
  process.env.METADATA_SERVER_DETECTION = 'assume-present';
  storage = new Storage({
    projectId: suite().projectId,
    apiEndpoint: env.STORAGE_EMULATOR_HOST,
    useAuthWithCustomEndpoint: true,
  });
  signingStorage = new Storage({
    projectId: suite().projectId,
    apiEndpoint: env.STORAGE_EMULATOR_HOST,
    keyFilename: env.LDR_SIGNER_KEY_FILE,
  });
});
afterAll(async () => {
  await fs.terminate();
  await pubsub.close();
});

const declare = (t: string, body: Json) => postJson(fnUrl('lfsProxy', '/uploads'), body, t);

async function getObject(t: string, artifactId: string) {
  const res = await fetch(fnUrl('lfsProxy', `/objects/${encodeURIComponent(artifactId)}`), {
    headers: { authorization: `Bearer ${t}` },
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

const put = (ticket: Json, body: Buffer, headers: Record<string, string> = ticket.headers) =>
  fetch(ticket.uploadUrl, { method: 'PUT', headers, body: new Uint8Array(body) });

const storageCode = async (res: Response) => /<Code>([^<]+)<\/Code>/.exec(await res.text())?.[1];

const record = async (id: string) =>
  (await fs.collection(ARTIFACTS).doc(id).get()).data() as ArtifactDoc | undefined;

const waitState = (id: string, state: ArtifactDoc['state'], timeoutMs = 20_000) =>
  eventually(
    async () => {
      const r = await record(id);
      return r?.state === state ? r : undefined;
    },
    timeoutMs,
    `artifact ${id} to be ${state}`,
  );

function interaction(studentId: string, instanceId: string, artifacts: string[]) {
  return {
    id: `e-${uid()}`,
    studentId,
    instanceId,
    kind: 'reflection',
    occurredAt: iso(new Date(Date.now() - 1000)),
    payload: { text: 'here is my recording' },
    artifacts,
  };
}

/** Learner, instance and the tokens around them. */
async function people() {
  const instance = `inst-${uid()}`;
  const student = `stu-${uid()}`;
  return {
    instance,
    student,
    studentToken: await token({ sub: student, role: 'student', instance }),
    appToken: await token({ sub: `app-${instance}`, role: 'app', instance }),
    teacherToken: await token({ sub: `t-${uid()}`, role: 'teacher', instance }),
    otherTeacherToken: await token({ sub: `t-${uid()}`, role: 'teacher', instance: `inst-${uid()}` }),
    otherStudentToken: await token({ sub: `stu-${uid()}`, role: 'student', instance }),
    platformToken: await token({ sub: 'content-engine', role: 'platform' }),
  };
}

describe('lfsProxy: upload, verify, download', () => {
  it('upload then download through signed URLs (fetch and the storage client), announced once', async () => {
    const p = await people();
    const stored = await tap(pubsub, TOPICS.artifact);
    try {
      const bytes = randomBytes(256 * 1024);
      const before = Date.now();
      const r = await declare(p.studentToken, {
        filename: 'clip.mp4',
        contentType: 'video/mp4',
        size: bytes.length,
        sha256: sha256(bytes),
      });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      const ticket = r.body;
      expect(ticket).toEqual({
        artifactId: expect.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
        uri: `lfs://${ticket.artifactId}`,
        uploadUrl: expect.stringContaining(`/${BUCKET}/artifacts/${ticket.artifactId}/clip.mp4?`),
        method: 'PUT',
        headers: {
          'content-type': 'video/mp4',
          'x-goog-content-length-range': `${bytes.length},${bytes.length}`,
          'x-goog-if-generation-match': '0',
        },
        expiresAt: expect.any(String),
      });
      // valid 15 minutes
      const expiresAt = Date.parse(ticket.expiresAt);
      expect(expiresAt - before).toBeGreaterThan(15 * 60_000 - 5_000);
      expect(expiresAt - Date.now()).toBeLessThanOrEqual(15 * 60_000);
      expect(new URL(ticket.uploadUrl).searchParams.get('X-Goog-Expires')).toBe('900');

      const pendingView = await getObject(p.studentToken, ticket.artifactId);
      expect(pendingView.body).toMatchObject({
        state: 'pending',
        size: bytes.length,
        contentType: 'video/mp4',
      });
      expect(pendingView.body).not.toHaveProperty('downloadUrl');

      const res = await put(ticket, bytes);
      expect(res.status, await res.clone().text()).toBe(200);
      const doc = await waitState(ticket.artifactId, 'stored');
      expect(doc).toMatchObject({
        ownerId: p.student,
        instanceId: p.instance,
        storedAt: expect.any(String),
        generation: expect.any(String),
      });

      const view = await getObject(p.studentToken, ticket.artifactId);
      expect(view.status).toBe(200);
      expect(view.body).toMatchObject({
        state: 'stored',
        sha256: sha256(bytes),
        downloadUrl: expect.any(String),
      });
      expect(view.body).not.toHaveProperty('objectName');
      expect(Date.parse(view.body.expiresAt) - Date.now()).toBeGreaterThan(14 * 60_000);
      const dl = await fetch(view.body.downloadUrl);
      expect(dl.status).toBe(200);
      expect(Buffer.from(await dl.arrayBuffer()).equals(bytes)).toBe(true);

      const [readBack] = await storage
        .bucket(BUCKET)
        .file(`artifacts/${ticket.artifactId}/clip.mp4`)
        .download();
      expect(readBack.equals(bytes)).toBe(true);
      const [meta] = await storage
        .bucket(BUCKET)
        .file(`artifacts/${ticket.artifactId}/clip.mp4`)
        .getMetadata();
      expect(meta.contentType).toBe('video/mp4');

      const ev = await eventually(
        async () => stored.received.find((m) => m.attributes['ce-id'] === `${ticket.artifactId}.stored`),
        15_000,
        'artifact.stored event',
      );
      expect(ev.orderingKey).toBe(p.student);
      expect(ev.attributes).toMatchObject({
        'ce-type': 'learnflow.artifact.stored.v1',
        'ce-subject': `students/${p.student}`,
        'ldr-instance': p.instance,
      });
      expect(JSON.parse(ev.data.toString())).toMatchObject({
        artifactId: ticket.artifactId,
        uri: ticket.uri,
        size: bytes.length,
        sha256: sha256(bytes),
      });
    } finally {
      await stored.close();
    }
  });

  it('who may download: owner, app and teacher of the instance, platform; not a teacher elsewhere nor another student', async () => {
    const p = await people();
    const bytes = randomBytes(1000);
    const r = await declare(p.appToken, {
      filename: 'notes.txt',
      contentType: 'text/plain',
      size: bytes.length,
      sha256: sha256(bytes),
      studentId: p.student,
    });
    expect(r.status).toBe(201);
    expect((await put(r.body, bytes)).status).toBe(200);
    await waitState(r.body.artifactId, 'stored');
    for (const t of [p.studentToken, p.appToken, p.teacherToken, p.platformToken]) {
      const v = await getObject(t, r.body.artifactId);
      expect(v.status).toBe(200);
      expect((await fetch(v.body.downloadUrl)).status).toBe(200);
    }
    const unknown = await getObject(p.otherTeacherToken, `nope${uid()}`);
    const foreign = await getObject(p.otherTeacherToken, r.body.artifactId);
    const otherStudent = await getObject(p.otherStudentToken, r.body.artifactId);
    for (const x of [unknown, foreign, otherStudent]) {
      expect(x.status).toBe(404);
      expect(x.headers.get('content-type')).toContain('application/problem+json');
    }
    expect(foreign.body).toEqual(unknown.body);
    const partner = await token({
      sub: 'p-acme',
      role: 'partner',
      partner: 'acme',
      permissions: ['artifact:read'],
    });
    expect((await getObject(partner, r.body.artifactId)).status).toBe(403);
  });

  it('the declaration is validated: type allow-list, size bounds, digest, unknown fields, who uploads for whom', async () => {
    const p = await people();
    const ok = { filename: 'a.pdf', contentType: 'application/pdf', size: 10, sha256: 'a'.repeat(64) };
    const cases: Array<[Json, string, number, string[]]> = [
      [{ ...ok, contentType: 'application/x-msdownload' }, p.studentToken, 400, ['/contentType']],
      [{ ...ok, size: 0 }, p.studentToken, 400, ['/size']],
      [{ ...ok, size: 6 * 1024 ** 3 }, p.studentToken, 400, ['/size']],
      [{ ...ok, sha256: 'xyz' }, p.studentToken, 400, ['/sha256']],
      [{ ...ok, public: true }, p.studentToken, 400, ['/public']],
      [
        { ...ok, size: -1, contentType: 'x/y', extra: 1 },
        p.studentToken,
        400,
        ['/contentType', '/extra', '/size'],
      ],
      [ok, p.appToken, 400, ['/studentId']],
      [{ ...ok, studentId: `stu-${uid()}` }, p.studentToken, 403, []],
      [ok, p.teacherToken, 403, []],
    ];
    for (const [body, t, status, paths] of cases) {
      const r = await declare(t, body);
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
      if (paths.length) expect(r.body.errors.map((e: { path: string }) => e.path).sort()).toEqual(paths);
    }
    expect((await declare('not-a-token', ok)).status).toBe(401);
  });

  it('the signed PUT is bound: other content type, other size, tampered URL → 403 and nothing stored', async () => {
    const p = await people();
    const bytes = randomBytes(4096);
    const r = await declare(p.studentToken, {
      filename: 'a.pdf',
      contentType: 'application/pdf',
      size: bytes.length,
      sha256: sha256(bytes),
    });
    const ticket = r.body;
    const url = new URL(ticket.uploadUrl);
    const tamperedSignature = new URL(url);
    const sig = tamperedSignature.searchParams.get('X-Goog-Signature')!;
    tamperedSignature.searchParams.set('X-Goog-Signature', (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1));
    const otherObject = new URL(url);
    otherObject.pathname = otherObject.pathname.replace(/a\.pdf$/, 'b.pdf');
    const longer = new URL(url);
    longer.searchParams.set('X-Goog-Expires', '86400');

    const attempts: Array<[string, () => Promise<Response>, string[]]> = [
      [
        'another content type',
        () => put(ticket, bytes, { ...ticket.headers, 'content-type': 'text/html' }),
        ['SignatureDoesNotMatch'],
      ],
      ['a larger body', () => put(ticket, randomBytes(bytes.length + 1)), ['EntityTooLarge']],
      ['a smaller body', () => put(ticket, bytes.subarray(1)), ['EntityTooSmall']],
      [
        'a widened size range',
        () => put(ticket, randomBytes(10), { ...ticket.headers, 'x-goog-content-length-range': '0,100000' }),
        ['SignatureDoesNotMatch'],
      ],
      [
        'without the signed headers',
        () => put(ticket, bytes, { 'content-type': 'application/pdf' }),
        ['SignatureDoesNotMatch'],
      ],
      [
        'a changed signature',
        () =>
          fetch(tamperedSignature, { method: 'PUT', headers: ticket.headers, body: new Uint8Array(bytes) }),
        ['SignatureDoesNotMatch'],
      ],
      [
        'another object',
        () => fetch(otherObject, { method: 'PUT', headers: ticket.headers, body: new Uint8Array(bytes) }),
        ['SignatureDoesNotMatch'],
      ],
      [
        'a longer lifetime',
        () => fetch(longer, { method: 'PUT', headers: ticket.headers, body: new Uint8Array(bytes) }),
        ['SignatureDoesNotMatch'],
      ],
    ];
    for (const [what, attempt, codes] of attempts) {
      const res = await attempt();
      expect(res.status, what).toBe(403);
      expect(codes, what).toContain(await storageCode(res));
    }
    const [files] = await storage.bucket(BUCKET).getFiles({ prefix: `artifacts/${ticket.artifactId}/` });
    expect(files).toHaveLength(0);
    expect((await record(ticket.artifactId))?.state).toBe('pending');

    // the genuine upload still works, once: the URL is create-only
    expect((await put(ticket, bytes)).status).toBe(200);
    await waitState(ticket.artifactId, 'stored');
    const again = await put(ticket, bytes);
    expect(again.status).toBe(412);
  });

  it('an expired signature is refused (a 1-second URL signed with the suite key)', async () => {
    const name = `artifacts/expiry-${uid()}/x.txt`;
    await storage.bucket(BUCKET).file(name).save('x', { contentType: 'text/plain', resumable: false });
    const [url] = await signingStorage
      .bucket(BUCKET)
      .file(name)
      .getSignedUrl({ version: 'v4', action: 'read', expires: Date.now() + 1000 });
    const code = await eventually(
      async () => {
        const res = await fetch(url);
        if (res.status === 200) return undefined;
        return `${res.status} ${await storageCode(res)}`;
      },
      10_000,
      'the URL to expire',
    );
    expect(code).toBe('403 ExpiredToken');
    await storage.bucket(BUCKET).file(name).delete();
  });

  it('a SHA-256 mismatch rejects the artifact and deletes the object', async () => {
    const p = await people();
    const declared = randomBytes(2048);
    const actual = randomBytes(2048);
    const r = await declare(p.studentToken, {
      filename: 'essay.pdf',
      contentType: 'application/pdf',
      size: declared.length,
      sha256: sha256(declared),
    });
    expect((await put(r.body, actual)).status).toBe(200);
    const doc = await waitState(r.body.artifactId, 'rejected');
    expect(doc.reason).toMatch(/sha256 mismatch/);
    await eventually(
      async () => {
        const [exists] = await storage
          .bucket(BUCKET)
          .file(`artifacts/${r.body.artifactId}/essay.pdf`)
          .exists();
        return exists ? undefined : true;
      },
      10_000,
      'the object to be deleted',
    );
    const view = await getObject(p.studentToken, r.body.artifactId);
    expect(view.body).toMatchObject({ state: 'rejected', reason: expect.stringMatching(/sha256 mismatch/) });
    expect(view.body).not.toHaveProperty('downloadUrl');
    const ingest = await postJson(
      fnUrl('ingestInteraction'),
      interaction(p.student, p.instance, [r.body.uri]),
      p.studentToken,
    );
    expect(ingest.status).toBe(400);
    expect(ingest.body.errors).toEqual([
      { path: '/artifacts/0', message: 'artifact is rejected, not stored' },
    ]);
  });

  it('a redelivered notification changes nothing and announces nothing again', async () => {
    const p = await people();
    const finalized = await tap(pubsub, TOPICS.storageFinalized);
    const stored = await tap(pubsub, TOPICS.artifact);
    try {
      const bytes = randomBytes(5000);
      const r = await declare(p.studentToken, {
        filename: 'a.zip',
        contentType: 'application/zip',
        size: bytes.length,
        sha256: sha256(bytes),
      });
      const id = r.body.artifactId as string;
      expect((await put(r.body, bytes)).status).toBe(200);
      await waitState(id, 'stored');
      const announced = await eventually(
        async () => {
          const doc = await record(id);
          return doc?.announcedAt ? doc : undefined;
        },
        15_000,
        'announcement',
      );
      const notice = await eventually(
        async () => finalized.received.find((m) => m.attributes.objectId === `artifacts/${id}/a.zip`),
        10_000,
        'the notification',
      );
      expect(notice.attributes.eventType).toBe('OBJECT_FINALIZE');

      // the same message again, as Pub/Sub would redeliver it
      await pubsub
        .topic(TOPICS.storageFinalized)
        .publishMessage({ data: notice.data, attributes: notice.attributes });
      const logFile = join(suite().dataDir, 'logs', 'fn-finalizeArtifact.log');
      await eventually(
        async () => {
          const lines = readFileSync(logFile, 'utf8')
            .split('\n')
            .filter((l) => l.includes(id));
          return lines.some((l) => JSON.parse(l).message === FINALIZE_LOG.duplicate) ? true : undefined;
        },
        20_000,
        'finalizeArtifact to see the redelivery',
      );
      expect(await record(id)).toEqual(announced);
      // The duplicate path publishes nothing (a publish would come before that log line); a bounded
      // look at the stored topic confirms no second copy is on its way. Absence cannot be polled for.
      await new Promise((r) => setTimeout(r, 1000));
      expect(stored.received.filter((m) => m.attributes['ce-id'] === `${id}.stored`)).toHaveLength(1);
    } finally {
      await Promise.all([finalized.close(), stored.close()]);
    }
  });

  it('unsafe names land as one safe object name under artifacts/<id>/ and round-trip', async () => {
    const p = await people();
    const names: Array<[string, string, string]> = [
      ['../../etc/passwd', 'text/plain', 'passwd'],
      ['my video+final.mp4', 'video/mp4', 'my_video_final.mp4'],
      ['Übung ü 🎓.pdf', 'application/pdf', 'Übung_ü.pdf'],
      ['U\u0308bung 2.pdf', 'application/pdf', 'Übung_2.pdf'],
    ];
    for (const [raw, contentType, safe] of names) {
      const bytes = randomBytes(777);
      const r = await declare(p.studentToken, {
        filename: raw,
        contentType,
        size: bytes.length,
        sha256: sha256(bytes),
      });
      expect(r.status).toBe(201);
      const id = r.body.artifactId as string;
      expect((await put(r.body, bytes)).status, raw).toBe(200);
      const doc = await waitState(id, 'stored');
      expect(doc.objectName).toBe(`artifacts/${id}/${safe}`);
      expect(doc.filename).toBe(safe);
      const [files] = await storage.bucket(BUCKET).getFiles({ prefix: `artifacts/${id}/` });
      expect(files.map((f) => f.name)).toEqual([`artifacts/${id}/${safe}`]);
      const view = await getObject(p.studentToken, id);
      expect(view.body.filename).toBe(safe);
      const dl = await fetch(view.body.downloadUrl);
      expect(Buffer.from(await dl.arrayBuffer()).equals(bytes), raw).toBe(true);
    }
    const [escaped] = await storage.bucket(BUCKET).getFiles({ prefix: 'etc/' });
    expect(escaped).toHaveLength(0);
  });

  it('an interaction may reference an artifact only once it is stored: pending → 400, stored → 202', async () => {
    const p = await people();
    const bytes = randomBytes(3000);
    const r = await declare(p.studentToken, {
      filename: 'voice.webm',
      contentType: 'audio/webm',
      size: bytes.length,
      sha256: sha256(bytes),
    });
    const pending = await postJson(
      fnUrl('ingestInteraction'),
      interaction(p.student, p.instance, [r.body.uri]),
      p.studentToken,
    );
    expect(pending.status).toBe(400);
    expect(pending.body.errors).toEqual([
      { path: '/artifacts/0', message: 'artifact is pending, not stored' },
    ]);
    expect((await put(r.body, bytes)).status).toBe(200);
    await waitState(r.body.artifactId, 'stored');
    const ok = await postJson(
      fnUrl('ingestInteraction'),
      interaction(p.student, p.instance, [r.body.uri]),
      p.studentToken,
    );
    expect(ok.status, JSON.stringify(ok.body)).toBe(202);
    // the app of the learner's instance may reference it too; another learner may not
    const viaApp = await postJson(
      fnUrl('ingestInteraction'),
      interaction(p.student, p.instance, [r.body.uri]),
      p.appToken,
    );
    expect(viaApp.status).toBe(202);
    const other = `stu-${uid()}`;
    const otherInstance = `inst-${uid()}`;
    const foreign = await postJson(
      fnUrl('ingestInteraction'),
      interaction(other, otherInstance, [r.body.uri]),
      await token({ sub: other, role: 'student', instance: otherInstance }),
    );
    expect(foreign.status).toBe(400);
    expect(foreign.body.errors).toEqual([{ path: '/artifacts/0', message: 'no such artifact' }]);
  });
});

describe('resumable uploads: signed sessions above the threshold', () => {
  const MiB = 1024 * 1024;

  it('a 9 MiB file gets a signed resumable start; one chunk breaks mid-way, the client resumes; stored and downloadable', async () => {
    const p = await people();
    const bytes = randomBytes(9 * MiB);
    const declared = await declare(p.studentToken, {
      filename: 'talk.mp4',
      contentType: 'video/mp4',
      size: bytes.length,
      sha256: sha256(bytes),
    });
    expect(declared.status).toBe(201);
    expect(declared.body).toMatchObject({
      method: 'POST',
      uploadUrl: expect.stringContaining(`/${BUCKET}/artifacts/${declared.body.artifactId}/talk.mp4?`),
      headers: {
        'content-type': 'video/mp4',
        'x-goog-resumable': 'start',
        'x-goog-if-generation-match': '0',
      },
    });
    expect(new URL(declared.body.uploadUrl).searchParams.get('X-Goog-SignedHeaders')).toBe(
      'content-type;host;x-goog-if-generation-match;x-goog-resumable',
    );

    // the client, through a fetch whose second chunk PUT loses its connection after half its bytes
    const seen: string[] = [];
    let chunkPuts = 0;
    const flaky: typeof fetch = async (input, init = {}) => {
      const headers = new Headers(init.headers);
      const range = headers.get('content-range');
      if (range) seen.push(range);
      if (init.method === 'PUT' && range && !range.startsWith('bytes */') && ++chunkPuts === 2) {
        const body = new Uint8Array(await new Response(init.body).arrayBuffer());
        headers.delete('content-length');
        const half = await fetch(input, {
          method: 'PUT',
          headers,
          body: body.subarray(0, body.length / 2),
        });
        await half.arrayBuffer();
        throw new TypeError('fetch failed: connection reset (injected)');
      }
      return fetch(input, init);
    };
    const progress: number[] = [];
    const { artifactId, uri } = await uploadArtifact({
      baseUrl: lfsBase(),
      token: p.studentToken,
      file: bytes,
      filename: 'talk.mp4',
      contentType: 'video/mp4',
      chunkSize: 4 * MiB,
      retryDelayMs: 50,
      fetch: flaky,
      onProgress: (x) => progress.push(x.loaded),
    });
    const total = bytes.length;
    expect(seen).toEqual([
      `bytes 0-${4 * MiB - 1}/${total}`,
      `bytes ${4 * MiB}-${8 * MiB - 1}/${total}`, // cut after 2 MiB
      `bytes */${total}`, // how far did it get?
      `bytes ${6 * MiB}-${total - 1}/${total}`, // from the 6 MiB the session holds
    ]);
    expect(progress).toContain(6 * MiB);
    expect(progress.at(-1)).toBe(total);

    const doc = await waitState(artifactId, 'stored');
    expect(doc).toMatchObject({ size: total, sha256: sha256(bytes), filename: 'talk.mp4' });
    const { url } = await downloadUrl({ baseUrl: lfsBase(), token: p.studentToken, uri, timeoutMs: 30_000 });
    const back = Buffer.from(await (await fetch(url)).arrayBuffer());
    expect(back.length).toBe(total);
    expect(sha256(back)).toBe(sha256(bytes));
  });

  it('resumable: true for a small file, false for a large one; a session start is create-only', async () => {
    const p = await people();
    const small = randomBytes(1000);
    const asked = await declare(p.studentToken, {
      filename: 'n.txt',
      contentType: 'text/plain',
      size: small.length,
      sha256: sha256(small),
      resumable: true,
    });
    expect(asked.body.method).toBe('POST');
    const single = await declare(p.studentToken, {
      filename: 'big.zip',
      contentType: 'application/zip',
      size: 20 * MiB,
      sha256: 'a'.repeat(64),
      resumable: false,
    });
    expect(single.body).toMatchObject({
      method: 'PUT',
      headers: { 'x-goog-content-length-range': `${20 * MiB},${20 * MiB}` },
    });

    // the small ticket's own session: its bytes, then the start again is refused (the object exists)
    const start = () => fetch(asked.body.uploadUrl, { method: 'POST', headers: asked.body.headers });
    const first = await start();
    expect(first.status).toBe(201);
    const session = first.headers.get('location')!;
    const put = await fetch(session, {
      method: 'PUT',
      headers: { 'content-range': `bytes 0-${small.length - 1}/${small.length}` },
      body: new Uint8Array(small),
    });
    expect(put.status).toBe(200);
    await waitState(asked.body.artifactId, 'stored');
    const again = await start();
    expect(again.status).toBe(412);
    expect(await storageCode(again)).toBe('PreconditionFailed');
  });

  it('a session is not bound to the size: finalizeArtifact rejects a wrong size and deletes the object', async () => {
    const p = await people();
    const declaredBytes = randomBytes(4096);
    const r = await declare(p.studentToken, {
      filename: 'short.pdf',
      contentType: 'application/pdf',
      size: declaredBytes.length,
      sha256: sha256(declaredBytes),
      resumable: true,
    });
    const started = await fetch(r.body.uploadUrl, { method: 'POST', headers: r.body.headers });
    const longer = randomBytes(declaredBytes.length + 1000);
    const res = await fetch(started.headers.get('location')!, {
      method: 'PUT',
      headers: { 'content-range': `bytes 0-${longer.length - 1}/${longer.length}` },
      body: new Uint8Array(longer),
    });
    expect(res.status).toBe(200); // storage takes it: the signature does not bind a session's size
    const doc = await waitState(r.body.artifactId, 'rejected');
    expect(doc.reason).toMatch(/size mismatch/);
    await eventually(
      async () => {
        const [exists] = await storage
          .bucket(BUCKET)
          .file(`artifacts/${r.body.artifactId}/short.pdf`)
          .exists();
        return exists ? undefined : true;
      },
      10_000,
      'the object to be deleted',
    );
  });
});

describe('a 200 MiB artifact through the client', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lfs-200mib-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const kb = (field: string, pid: number) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(m?.[1]) * 1024;
  };

  it('is streamed up, verified without buffering (finalizeArtifact grows < 100 MB), referenced and downloadable', async () => {
    const size = 200 * 1024 * 1024;
    const path = join(dir, 'lecture.mp4');
    const out = createWriteStream(path);
    const chunk = randomBytes(1024 * 1024);
    for (let i = 0; i < 200; i++) {
      chunk[0] = i; // not 200 identical MiB
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );

    const p = await people();
    const pid = (await workers()).finalizeArtifact!.pid;
    const rssBefore = kb('VmRSS', pid);

    const { artifactId, uri } = await uploadArtifact({
      baseUrl: lfsBase(),
      token: p.studentToken,
      path,
      contentType: 'video/mp4',
    });
    expect(uri).toBe(`lfs://${artifactId}`);
    const teacherUrl = await downloadUrl({
      baseUrl: lfsBase(),
      token: p.teacherToken,
      uri,
      timeoutMs: 120_000,
    });
    expect(Date.parse(teacherUrl.expiresAt)).toBeGreaterThan(Date.now() + 14 * 60_000);

    expect((await workers()).finalizeArtifact!.pid).toBe(pid); // the same process did the work
    const peak = kb('VmHWM', pid);
    const rssAfter = kb('VmRSS', pid);
    const growth = peak - rssBefore;
    console.log(
      `finalizeArtifact RSS: before ${(rssBefore / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB, after ${(rssAfter / 2 ** 20).toFixed(1)} MiB, peak growth ${(growth / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(growth).toBeLessThan(100 * 1024 * 1024);

    const doc = await record(artifactId);
    expect(doc).toMatchObject({
      state: 'stored',
      size,
      filename: 'lecture.mp4',
      ownerId: p.student,
      instanceId: p.instance,
    });

    const ingest = await postJson(
      fnUrl('ingestInteraction'),
      interaction(p.student, p.instance, [uri]),
      p.studentToken,
    );
    expect(ingest.status, JSON.stringify(ingest.body)).toBe(202);

    // the teacher's URL serves the bytes: check length and digest while streaming
    const res = await fetch(teacherUrl.url);
    expect(res.status).toBe(200);
    const hash = createHash('sha256');
    let received = 0;
    for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(part);
      received += part.length;
    }
    expect(received).toBe(size);
    expect(hash.digest('hex')).toBe(doc!.sha256);
  }, 240_000);
});

describe('the storage emulator requires credentials (issue 11 #16)', () => {
  it('lists and downloads nothing without a token, or with a forged one', async () => {
    const base = `${suite().env.STORAGE_EMULATOR_HOST}/storage/v1/b/${BUCKET}/o`;
    expect((await fetch(base)).status).toBe(401);
    expect((await fetch(base, { headers: { authorization: 'Bearer forged' } })).status).toBe(401);
    const ok = await fetch(base, { headers: { authorization: `Bearer ${suite().env.LDR_ADMIN_TOKEN}` } });
    expect(ok.status).toBe(200);
  });
});
