import { firestoreArtifactStore } from '../../shared/artifacts.ts';
import { registerMessageFunction } from '../../shared/event-function.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createStorage, gcsArtifactObjects } from '../lfsProxy/storage.ts';
import { createFinalizeArtifact } from './handler.ts';

const rt = createRuntime('finalizeArtifact');
// Reads and deletes only; it signs nothing, so it needs no signer (Application Default Credentials).
const storage = createStorage(rt.config.GOOGLE_CLOUD_PROJECT);
const finalize = createFinalizeArtifact({
  store: firestoreArtifactStore(rt.firestore()),
  objects: gcsArtifactObjects(storage),
  bus: rt.bus(),
  bucket: rt.config.LFS_BUCKET,
  log: rt.log,
});

registerMessageFunction(rt, async (msg) => {
  await finalize(msg);
});
