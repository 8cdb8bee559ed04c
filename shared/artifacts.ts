import type { Firestore } from '@google-cloud/firestore';
import type { Principal, Role } from './auth.ts';
import type { ArtifactRecord, Artifacts } from './ports.ts';

/** Artifact records in Firestore `artifacts/{id}` (written by lfsProxy and finalizeArtifact). */
export const ARTIFACTS = 'artifacts';

/** Every object of an artifact lives under `artifacts/<artifactId>/`; the notification filter uses it too. */
export const OBJECT_PREFIX = 'artifacts/';
// Firestore reserves document ids of the form __name__
export const ARTIFACT_ID_RE = /^(?!__.*__$)[A-Za-z0-9_-]{1,64}$/;
export const LFS_SCHEME = 'lfs://';

export const artifactUri = (id: string) => `${LFS_SCHEME}${id}`;
export const objectNameOf = (id: string, safeFilename: string) => `${OBJECT_PREFIX}${id}/${safeFilename}`;

/** `artifacts/<id>/<name>` → id; undefined for any other object name. */
export function artifactIdOf(objectName: string): string | undefined {
  const m = /^artifacts\/([^/]+)\/[^/]+$/.exec(objectName);
  return m && ARTIFACT_ID_RE.test(m[1]!) ? m[1] : undefined;
}

/**
 * The full record. `state`, `ownerId` and `instanceId` keep the meaning ingestInteraction relies on:
 * only `stored` artifacts may be referenced; `ownerId` is the learner (or, for content artifacts, the
 * platform principal); `instanceId` is the app-instance whose app and teacher tokens may read it.
 */
export interface ArtifactDoc extends ArtifactRecord {
  uploaderSub: string;
  uploaderRole: Role;
  bucket: string;
  objectName: string;
  contentType: string;
  size: number;
  /** declared SHA-256, lower-case hex */
  sha256: string;
  /** the sanitised file name (the last segment of objectName) */
  filename: string;
  createdAt: string;
  /** set when the bytes matched */
  storedAt?: string;
  /** generation of the object the state was decided on */
  generation?: string;
  /** set once `learnflow.artifact.stored.v1` was published */
  announcedAt?: string;
  rejectedAt?: string;
  reason?: string;
}

export type Settlement =
  | { state: 'stored'; storedAt: string; generation: string }
  | { state: 'rejected'; rejectedAt: string; reason: string; generation: string };

/** Port: artifact records as lfsProxy and finalizeArtifact use them. */
export interface ArtifactStore {
  get(id: string): Promise<ArtifactDoc | undefined>;
  /** Creates the pending record; fails if the id exists. */
  create(id: string, doc: ArtifactDoc): Promise<void>;
  /**
   * Moves a pending artifact to stored or rejected, atomically. Returns the record after the call and
   * whether this call made the change (false: it was no longer pending); undefined for an unknown id.
   */
  settle(id: string, settlement: Settlement): Promise<{ doc: ArtifactDoc; changed: boolean } | undefined>;
  markAnnounced(id: string, at: string): Promise<void>;
}

/**
 * The one read rule for artifacts, used by lfsProxy `GET /objects/<id>` and by ingestInteraction for
 * `artifacts` references: the owning student; app and teacher tokens whose `instance` is the artifact's
 * instance; platform tokens. Partners never.
 */
export function mayReadArtifact(
  p: Pick<Principal, 'role' | 'sub' | 'instance'>,
  record: Pick<ArtifactRecord, 'ownerId' | 'ownerKind' | 'instanceId'>,
): boolean {
  switch (p.role) {
    case 'student':
      return record.ownerKind === 'student' && record.ownerId === p.sub;
    case 'app':
    case 'teacher':
      return p.instance !== undefined && record.instanceId === p.instance;
    case 'platform':
      return true;
    default:
      return false;
  }
}

export function firestoreArtifacts(db: Firestore): Artifacts {
  return {
    async get(id) {
      const snap = await db.collection(ARTIFACTS).doc(id).get();
      return snap.exists ? (snap.data() as ArtifactRecord) : undefined;
    },
  };
}

export function firestoreArtifactStore(db: Firestore): ArtifactStore {
  const doc = (id: string) => db.collection(ARTIFACTS).doc(id);
  return {
    async get(id) {
      const snap = await doc(id).get();
      return snap.exists ? (snap.data() as ArtifactDoc) : undefined;
    },
    async create(id, record) {
      await doc(id).create(record);
    },
    settle(id, settlement) {
      return db.runTransaction(async (tx) => {
        const snap = await tx.get(doc(id));
        if (!snap.exists) return undefined;
        const current = snap.data() as ArtifactDoc;
        if (current.state !== 'pending') return { doc: current, changed: false };
        tx.update(doc(id), { ...settlement });
        return { doc: { ...current, ...settlement }, changed: true };
      });
    },
    async markAnnounced(id, at) {
      await doc(id).update({ announcedAt: at });
    },
  };
}
