import * as ff from '@google-cloud/functions-framework';
import { httpFunction, route } from '../../shared/http.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createProgressApi } from './handler.ts';
import { progressReader } from './stores.ts';

const rt = createRuntime('progressApi');
await rt.ready;
const api = createProgressApi({
  verifier: rt.verifier(),
  reader: progressReader(rt.firestore(), rt.pg()),
  log: rt.log,
});

ff.http(
  'progressApi',
  httpFunction({
    log: rt.log,
    health: rt.health(['firestore', 'postgres']),
    routes: [
      route('GET', '/students/:id', api.progress),
      route('GET', '/students/:id/history', api.history),
      route('GET', '/students/:id/alerts', api.alerts),
    ],
  }),
);
