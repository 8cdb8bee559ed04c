import { firestoreArtifacts } from '../../shared/artifacts.ts';
import { httpFunction, route } from '../../shared/http.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { serveHttp } from '../../shared/serve.ts';
import { createPublishContent } from './handler.ts';
import { openapi } from './openapi.ts';
import { firestoreContent, firestoreInstances, pgLearners } from './stores.ts';

const rt = createRuntime('publishContent');

const publish = createPublishContent({
  verifier: rt.verifier(),
  bus: rt.bus(),
  store: firestoreContent(rt.firestore()),
  instances: firestoreInstances(rt.firestore()),
  learners: pgLearners(() => rt.pg()),
  artifacts: firestoreArtifacts(rt.firestore()),
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
