import * as ff from '@google-cloud/functions-framework';
import { firestoreArtifacts } from '../../shared/artifacts.ts';
import { httpFunction, route } from '../../shared/http.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createPublishContent } from './handler.ts';
import { firestoreContent, firestoreInstances, pgLearners } from './stores.ts';

const rt = createRuntime('publishContent');
await rt.ready;
const db = rt.firestore();

const publish = createPublishContent({
  verifier: rt.verifier(),
  bus: rt.bus(),
  store: firestoreContent(db),
  instances: firestoreInstances(db),
  learners: pgLearners(() => rt.pg()),
  artifacts: firestoreArtifacts(db),
});

ff.http(
  'publishContent',
  httpFunction({
    log: rt.log,
    health: rt.health(['pubsub', 'firestore', 'postgres']),
    routes: [route('POST', '/', publish)],
  }),
);
