import { v7 as uuidv7 } from 'uuid';
import { firestoreArtifacts } from '../../shared/artifacts.ts';
import { httpFunction, route } from '../../shared/http.ts';
import { redisAdmission, redisDedupWindow } from '../../shared/redis-ports.ts';
import { firestoreInstanceSponsors } from '../../shared/registry.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { serveHttp } from '../../shared/serve.ts';
import { createIngest } from './handler.ts';
import { openapi } from './openapi.ts';

const rt = createRuntime('ingestInteraction');
const ingest = createIngest({
  verifier: rt.verifier(),
  bus: rt.bus(),
  admission: redisAdmission(rt.redis(), {
    onGiveBackFailed: (err, kept) =>
      rt.log.warn(
        { err: String(err), ...kept },
        'a refused request could not give back its counts and claims; they expire on their own',
      ),
  }),
  dedup: redisDedupWindow(rt.redis(), rt.config.DEDUP_TTL_SECONDS),
  artifacts: firestoreArtifacts(rt.firestore()),
  sponsors: firestoreInstanceSponsors(rt.firestore()),
  log: rt.log,
  limits: {
    studentRequestsPerMin: rt.config.RATE_STUDENT_PER_MIN,
    studentEventsPerMin: rt.config.RATE_STUDENT_EVENTS_PER_MIN,
    instanceEventsPerMin: rt.config.RATE_INSTANCE_EVENTS_PER_MIN,
  },
  newId: uuidv7,
});

serveHttp(
  'ingestInteraction',
  httpFunction({
    log: rt.log,
    cors: rt.config.CORS_ORIGINS,
    openapi,
    health: rt.health(['pubsub', 'firestore', 'redis']),
    routes: [route('POST', '/', ingest)],
  }),
);
