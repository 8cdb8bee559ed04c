import type { Firestore } from '@google-cloud/firestore';
import type { ArtifactRecord, Artifacts } from '../functions/ingestInteraction/handler.ts';

/** Artifact records in Firestore `artifacts/{id}` (written by lfsProxy and finalizeArtifact). */
export const ARTIFACTS = 'artifacts';

export function firestoreArtifacts(db: Firestore): Artifacts {
  return {
    async get(id) {
      const snap = await db.collection(ARTIFACTS).doc(id).get();
      return snap.exists ? (snap.data() as ArtifactRecord) : undefined;
    },
  };
}
