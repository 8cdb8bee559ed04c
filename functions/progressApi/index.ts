import { httpFunction, route } from '../../shared/http.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { serveHttp } from '../../shared/serve.ts';
import { createProgressApi } from './handler.ts';
import { openapi } from './openapi.ts';
import { progressReader } from './stores.ts';

const rt = createRuntime('progressApi');
const api = createProgressApi({
  verifier: rt.verifier(),
  reader: progressReader(rt.firestore(), rt.pg()),
  log: rt.log,
});

serveHttp(
  'progressApi',
  httpFunction({
    log: rt.log,
    cors: rt.config.CORS_ORIGINS,
    openapi,
    health: rt.health(['firestore', 'postgres']),
    routes: [
      route('GET', '/students/:id', api.progress),
      route('GET', '/students/:id/history', api.history),
      route('GET', '/students/:id/alerts', api.alerts),
    ],
  }),
);
