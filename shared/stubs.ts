import * as ff from '@google-cloud/functions-framework';
import { notImplemented } from './errors.ts';
import { httpFunction, route } from './http.ts';
import type { Runtime } from './runtime.ts';

/** Registers an HTTPS function whose behaviour has not been built yet: health works, all else 501. */
export function registerPendingHttp(rt: Runtime, deps: Parameters<Runtime['health']>[0]) {
  const pending = async () => {
    throw notImplemented(`${rt.name} is not implemented yet`);
  };
  ff.http(
    rt.name,
    httpFunction({
      log: rt.log,
      health: rt.health(deps),
      routes: ['GET', 'POST', 'PUT', 'DELETE'].map((m) => route(m, '/.*', pending)),
    }),
  );
}

/** Registers a Pub/Sub function not built yet: every delivery fails, so nothing is acked as done. */
export function registerPendingEvent(rt: Runtime) {
  ff.cloudEvent(rt.name, async () => {
    throw new Error(`${rt.name} is not implemented yet`);
  });
}
