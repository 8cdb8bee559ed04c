import { firestoreArtifacts } from '../../shared/artifacts.ts';
import { httpFunction, route } from '../../shared/http.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { serveHttp } from '../../shared/serve.ts';
import { type Content, type ContentStore, createPublishContent } from './handler.ts';
import { openapi } from './openapi.ts';

const rt = createRuntime('publishContent');

export const CONTENT = 'content';
const store: ContentStore = {
  async putIfNewer(c) {
    const db = rt.firestore();
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
  artifacts: firestoreArtifacts(rt.firestore()),
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

serveHttp(
  'publishContent',
  httpFunction({
    log: rt.log,
    cors: rt.config.CORS_ORIGINS,
    openapi,
    health: rt.health(['pubsub', 'firestore', 'postgres']),
    routes: [route('POST', '/', publish)],
  }),
);
