import {
  ARTIFACT_ID_RE,
  type ArtifactDoc,
  type ArtifactStore,
  artifactUri,
  mayReadArtifact,
  objectNameOf,
} from '../../shared/artifacts.ts';
import type { Principal, Verifier } from '../../shared/auth.ts';
import { requirePermission } from '../../shared/auth.ts';
import { badRequest, forbidden, notFound } from '../../shared/errors.ts';
import { jsonBody, type Reply, type RouteContext } from '../../shared/http.ts';
import type { Logger } from '../../shared/log.ts';
import { parseUploadRequest, type UploadPolicy, type UploadRequest } from './schema.ts';
import type { UrlSigner } from './storage.ts';

/**
 * SPEC §4 lfsProxy. `POST /uploads` records a pending artifact and hands out a V4 signed PUT bound to
 * the declared content type and exact size or, for files of at least `policy.resumableFromBytes` (or
 * when the request says `resumable: true`), a V4 signed resumable session start (POST,
 * `x-goog-resumable: start`) bound to the content type and create-only; a session's size is guarded by
 * finalizeArtifact's size + SHA-256 check. `GET /objects/<id>` describes an artifact and, once it is
 * stored, hands out a signed GET. Who may do what:
 *
 * - upload (`artifact:write`): a student for themself (studentId defaults to sub); an app token for a
 *   learner of its instance (studentId required); a platform token for content owned by itself.
 * - read (`artifact:read`): the owning student; app and teacher tokens whose `instance` is the
 *   artifact's instance; platform tokens. Partners never. Unknown ids and ids the caller may not see are
 *   the same 404. The read rule is `mayReadArtifact` (shared/artifacts.ts); ingest applies it to `artifacts`.
 */

export const MAX_BODY_BYTES = 16 * 1024;

/** The log catalogue of lfsProxy: tests assert on these entries, not on strings. */
export const LOG = {
  uploadIssued: 'upload URL issued',
  downloadIssued: 'download URL issued',
} as const;

export interface LfsProxyDeps {
  verifier: Verifier;
  store: ArtifactStore;
  signer: UrlSigner;
  bucket: string;
  policy: UploadPolicy;
  urlTtlSeconds: number;
  log: Logger;
  newId: () => string;
  now?: () => Date;
}

interface Owner {
  ownerId: string;
  ownerKind: ArtifactDoc['ownerKind'];
  instanceId?: string;
}

export function createLfsProxy(deps: LfsProxyDeps) {
  const now = deps.now ?? (() => new Date());
  const expiry = () => new Date(now().getTime() + deps.urlTtlSeconds * 1000);

  async function upload({ req }: RouteContext): Promise<Reply> {
    const principal = await deps.verifier.verify(req.headers.authorization);
    requirePermission(principal, 'artifact:write');
    if (principal.role !== 'student' && principal.role !== 'app' && principal.role !== 'platform') {
      throw forbidden(`a ${principal.role} token cannot upload artifacts`);
    }
    const parsed = parseUploadRequest(jsonBody(req, MAX_BODY_BYTES), deps.policy);
    if (!parsed.ok) throw badRequest(`${parsed.errors.length} invalid field(s)`, parsed.errors);
    const request = parsed.value;
    const owner = ownerOf(principal, request);

    const artifactId = deps.newId();
    const objectName = objectNameOf(artifactId, request.filename);
    const createdAt = now();
    const expiresAt = expiry();
    // Sign before recording: a failed signature leaves nothing behind; a failed record leaves an unused URL
    // whose upload finalizeArtifact ignores as unknown.
    const signed = await deps.signer.upload({
      objectName,
      contentType: request.contentType,
      size: request.size,
      expiresAt,
      resumable: request.resumable ?? request.size >= deps.policy.resumableFromBytes,
    });
    await deps.store.create(artifactId, {
      state: 'pending',
      ownerId: owner.ownerId,
      ownerKind: owner.ownerKind,
      ...(owner.instanceId !== undefined ? { instanceId: owner.instanceId } : {}),
      uploaderSub: principal.sub,
      uploaderRole: principal.role,
      bucket: deps.bucket,
      objectName,
      contentType: request.contentType,
      size: request.size,
      sha256: request.sha256,
      filename: request.filename,
      createdAt: createdAt.toISOString(),
    });
    deps.log.info(
      {
        artifactId,
        role: principal.role,
        contentType: request.contentType,
        size: request.size,
        method: signed.method,
      },
      LOG.uploadIssued,
    );
    const prefix = String(req.headers['x-forwarded-prefix'] ?? '');
    return {
      status: 201,
      headers: { Location: `${prefix}/objects/${artifactId}`, 'Cache-Control': 'no-store' },
      body: {
        artifactId,
        uri: artifactUri(artifactId),
        uploadUrl: signed.url,
        method: signed.method,
        headers: signed.headers,
        expiresAt: expiresAt.toISOString(),
      },
    };
  }

  async function object({ req, params }: RouteContext): Promise<Reply> {
    const principal = await deps.verifier.verify(req.headers.authorization);
    requirePermission(principal, 'artifact:read');
    if (principal.role === 'partner') throw forbidden('partner tokens cannot read artifacts');
    const artifactId = params.artifactId ?? '';
    const record = ARTIFACT_ID_RE.test(artifactId) ? await deps.store.get(artifactId) : undefined;
    if (!record || !mayReadArtifact(principal, record)) throw notFound('no such artifact');

    const body: Record<string, unknown> = {
      artifactId,
      uri: artifactUri(artifactId),
      state: record.state,
      filename: record.filename,
      contentType: record.contentType,
      size: record.size,
      sha256: record.sha256,
      ownerId: record.ownerId,
      ...(record.instanceId !== undefined ? { instanceId: record.instanceId } : {}),
      createdAt: record.createdAt,
      ...(record.storedAt ? { storedAt: record.storedAt } : {}),
      ...(record.state === 'rejected' ? { rejectedAt: record.rejectedAt, reason: record.reason } : {}),
    };
    if (record.state === 'stored') {
      const expiresAt = expiry();
      body.downloadUrl = await deps.signer.download({ objectName: record.objectName, expiresAt });
      body.expiresAt = expiresAt.toISOString();
      deps.log.info({ artifactId, role: principal.role }, LOG.downloadIssued);
    }
    return { status: 200, headers: { 'Cache-Control': 'no-store' }, body };
  }

  return { upload, object };
}

/** Who owns what a principal uploads; 403 for uploads on someone else's behalf it may not make. */
export function ownerOf(p: Principal, request: Pick<UploadRequest, 'studentId'>): Owner {
  switch (p.role) {
    case 'student':
      if (request.studentId !== undefined && request.studentId !== p.sub) {
        throw forbidden('/studentId: a student token may only upload its own artifacts');
      }
      return { ownerId: p.sub, ownerKind: 'student', ...(p.instance ? { instanceId: p.instance } : {}) };
    case 'app':
      if (!p.instance) throw forbidden('an app token without an instance claim cannot upload artifacts');
      if (request.studentId === undefined) {
        throw badRequest('an app token uploads for a learner of its instance: name the learner', [
          { path: '/studentId', message: 'is required for app tokens' },
        ]);
      }
      return { ownerId: request.studentId, ownerKind: 'student', instanceId: p.instance };
    case 'platform':
      if (request.studentId !== undefined) {
        throw forbidden(
          '/studentId: a platform token uploads content artifacts owned by itself, not for a learner',
        );
      }
      return { ownerId: p.sub, ownerKind: 'platform' };
    default:
      throw forbidden(`a ${p.role} token cannot upload artifacts`);
  }
}
