import { registerEventFunction } from '../../shared/event-function.ts';
import { route } from '../../shared/http.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createOutboxRelay, createUpdateProgress } from './handler.ts';
import { firestoreProgressView } from './projection.ts';

const rt = createRuntime('updateProgress');
const update = createUpdateProgress({
  pool: rt.pg(),
  view: firestoreProgressView(rt.firestore()),
  bus: rt.bus(),
  onRetry: (err, attempt) =>
    rt.log.warn({ err: String(err), attempt }, 'PostgreSQL unavailable; waiting it out'),
});

const relay = createOutboxRelay({ pool: rt.pg(), bus: rt.bus() });

registerEventFunction(
  rt,
  async (ev, delivery) => {
    const r = await update(ev);
    // per event at debug only (the ledger and the progress event record it); a duplicate at info
    const fields = {
      interactionId: ev.id,
      applied: r.applied,
      mastery: r.row.mastery,
      attempt: delivery.deliveryAttempt,
    };
    if (r.applied) rt.log.debug(fields, 'progress updated');
    else rt.log.info(fields, 'duplicate interaction; progress unchanged');
  },
  {
    health: rt.health(['pubsub', 'firestore', 'postgres']),
    routes: [
      // Cloud Scheduler (OIDC) in production, a timer in the local suite: idempotent, safe concurrently
      route('POST', '/outbox/relay', async () => {
        const r = await relay({});
        if (r.published || r.failed || r.pruned) rt.log.info(r, 'outbox relayed');
        return { status: r.failed ? 503 : 200, body: r };
      }),
    ],
  },
);
