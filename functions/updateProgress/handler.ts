import type pg from 'pg';
import type { Bus } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import { PoisonMessage } from '../../shared/cloudevents.ts';
import { readInteraction } from '../../shared/events.ts';

const UNSTORABLE = new Set(['22P05', '22021', '22P02', '54000']);

import { retryTransient } from '../../shared/retry.ts';
import { applyInteraction, markSent, pendingOutbox } from './ledger.ts';
import type { ProgressView } from './projection.ts';

/**
 * Applies one interaction exactly once: ledger (PostgreSQL) first, then the Firestore view, then the
 * outbox events. Every step after the ledger is repeatable, so a crash anywhere is healed by the
 * redelivery that follows it.
 */
export function createUpdateProgress(deps: {
  pool: pg.Pool;
  view: ProgressView;
  bus: Bus;
  /** how long a PostgreSQL outage is waited out inside one delivery before it fails */
  outageBudgetMs?: number;
  onRetry?: (err: unknown, attempt: number) => void;
}) {
  const retry = <T>(op: () => Promise<T>) =>
    retryTransient(op, { budgetMs: deps.outageBudgetMs ?? 45_000, onRetry: deps.onRetry });
  return async (ev: LdrEvent) => {
    const i = readInteraction(ev);
    const { applied, row } = await retry(() => applyInteraction(deps.pool, i, ev.id)).catch(
      (err: { code?: string; message?: string }) => {
        // data PostgreSQL can never store (e.g. U+0000 in jsonb): retrying cannot help
        if (err.code && UNSTORABLE.has(err.code))
          throw new PoisonMessage(`PostgreSQL refused the interaction: ${err.message}`);
        throw err;
      },
    );
    await deps.view.project(row);
    const pending = await retry(() => pendingOutbox(deps.pool, i.studentId));
    const sent: string[] = [];
    try {
      for (const o of pending) {
        await deps.bus.publish(o.topic, o.event, o.orderingKey);
        sent.push(o.event.id);
      }
    } finally {
      await retry(() => markSent(deps.pool, sent));
    }
    return { applied, row, published: sent };
  };
}
