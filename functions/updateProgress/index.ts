import { registerEventFunction } from '../../shared/event-function.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { createUpdateProgress } from './handler.ts';
import { firestoreProgressView } from './projection.ts';

const rt = createRuntime('updateProgress');
const update = createUpdateProgress({
  pool: rt.pg(),
  view: firestoreProgressView(rt.firestore()),
  bus: rt.bus(),
  onRetry: (err, attempt) =>
    rt.log.warn({ err: String(err), attempt }, 'PostgreSQL unavailable; waiting it out'),
});

registerEventFunction(rt, async (ev, delivery) => {
  const r = await update(ev);
  rt.log.info(
    { interactionId: ev.id, applied: r.applied, mastery: r.row.mastery, attempt: delivery.deliveryAttempt },
    r.applied ? 'progress updated' : 'duplicate interaction; progress unchanged',
  );
});
