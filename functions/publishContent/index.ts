import * as ff from '@google-cloud/functions-framework';
import { firestoreArtifacts } from '../../shared/artifacts.ts';
import { httpFunction, route } from '../../shared/http.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { type Content, type ContentStore, createPublishContent } from './handler.ts';

const rt = createRuntime('publishContent');
await rt.ready;
const db = rt.firestore();

export const CONTENT = 'content';
const store: ContentStore = {
  async putIfNewer(c) {
    const ref = db.collection(CONTENT).doc(c.contentId);
    return db.runTransaction(async (tx) => {
      const snap = await tx.get(ref);
      if (snap.exists && Number((snap.data() as Content).version) >= c.version) return false;
      tx.set(ref, c);
      return true;
    });
  },
};

const publish = createPublishContent({
  verifier: rt.verifier(),
  bus: rt.bus(),
  store,
  artifacts: firestoreArtifacts(db),
  learners: {
    async instanceOf(studentId) {
      const { rows } = await rt
        .pg()
        .query('SELECT instance_id FROM topic_state WHERE student_id = $1 ORDER BY updated_at DESC LIMIT 1', [
          studentId,
        ]);
      return rows[0]?.instance_id;
    },
  },
});

ff.http(
  'publishContent',
  httpFunction({
    log: rt.log,
    health: rt.health(['pubsub', 'firestore', 'postgres']),
    routes: [route('POST', '/', publish)],
  }),
);
