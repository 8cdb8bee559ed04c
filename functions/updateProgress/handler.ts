import type pg from 'pg';
import type { Bus } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import { PoisonMessage } from '../../shared/cloudevents.ts';
import { readInteraction } from '../../shared/events.ts';

const UNSTORABLE = new Set(['22P05', '22021', '22P02', '54000']);

import { retryTransient } from '../../shared/retry.ts';
import { applyInteraction, markSent, type OutboxRow, pruneSent, relayUnsent } from './ledger.ts';
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
  const mark = groupedMarkSent(deps.pool);
  return async (ev: LdrEvent) => {
    const i = readInteraction(ev);
    const { applied, row, pending } = await retry(() => applyInteraction(deps.pool, i, ev.id)).catch(
      (err: { code?: string; message?: string }) => {
        // data PostgreSQL can never store (e.g. U+0000 in jsonb): retrying cannot help
        if (err.code && UNSTORABLE.has(err.code))
          throw new PoisonMessage(`PostgreSQL refused the interaction: ${err.message}`);
        throw err;
      },
    );
    await deps.view.project(row);
    const sent: string[] = [];
    try {
      for (const o of pending) {
        await deps.bus.publish(o.topic, o.event, o.orderingKey);
        sent.push(o.event.id);
      }
    } finally {
      if (sent.length) await retry(() => mark(sent));
    }
    return { applied, row, published: sent };
  };
}

/**
 * markSent for concurrent deliveries, grouped: ids that arrive while an UPDATE runs go together in the
 * next one (one round trip for many deliveries under load, none added when idle). Each caller's promise
 * settles with the UPDATE that carried its ids.
 */
export function groupedMarkSent(pool: pg.Pool) {
  let running: Promise<void> = Promise.resolve();
  let next: { ids: string[]; done: Promise<void> } | undefined;
  return (ids: string[]): Promise<void> => {
    if (!next) {
      const batch: { ids: string[]; done: Promise<void> } = { ids: [], done: Promise.resolve() };
      batch.done = running
        .catch(() => {})
        .then(() => {
          if (next === batch) next = undefined;
          return markSent(pool, batch.ids);
        });
      running = batch.done;
      next = batch;
    }
    next.ids.push(...ids);
    return next.done;
  };
}

export interface RelayOptions {
  /** at most this many unsent rows per run (default 100) */
  limit?: number;
  /** only rows at least this old (default 5 s): younger ones are still being published by their delivery */
  olderThanMs?: number;
  /** sent rows older than this are deleted (default 7 days) */
  retentionMs?: number;
  /** at most this many rows deleted per run (default 1000) */
  pruneLimit?: number;
}

export interface RelayResult {
  /** unsent rows published by this run */
  published: number;
  /** unsent rows whose publish failed; they stay unsent for the next run */
  failed: number;
  /** sent rows deleted */
  pruned: number;
}

/**
 * The outbox relay, run on a schedule (Cloud Scheduler → `POST /outbox/relay`, every minute): publishes
 * rows that their own delivery left unsent (a crash, or the bus down after the commit) with their stable
 * ce-ids, marks them sent, and prunes sent rows past the retention. Idempotent and safe to run
 * concurrently: rows are claimed FOR UPDATE SKIP LOCKED, and a row also published by its delivery at the
 * same moment reaches consumers twice with the same ce-id, which they dedupe. Within one ordering key
 * rows go out in order and the first failure stops that key for this run.
 */
export function createOutboxRelay(deps: { pool: pg.Pool; bus: Bus }) {
  const publishInOrder = async (rows: OutboxRow[]) => {
    const byKey = new Map<string, OutboxRow[]>();
    for (const r of rows) byKey.set(r.orderingKey, [...(byKey.get(r.orderingKey) ?? []), r]);
    const sent: string[] = [];
    await Promise.all(
      [...byKey.values()].map(async (keyRows) => {
        for (const o of keyRows) {
          try {
            await deps.bus.publish(o.topic, o.event, o.orderingKey);
          } catch {
            return;
          }
          sent.push(o.event.id);
        }
      }),
    );
    return sent;
  };
  return async (opts: RelayOptions = {}): Promise<RelayResult> => {
    const { claimed, sent } = await relayUnsent(
      deps.pool,
      { limit: opts.limit ?? 100, olderThanMs: opts.olderThanMs ?? 5_000 },
      publishInOrder,
    );
    const pruned = await pruneSent(deps.pool, {
      retentionMs: opts.retentionMs ?? 7 * 86_400_000,
      limit: opts.pruneLimit ?? 1_000,
    });
    return { published: sent, failed: claimed - sent, pruned };
  };
}
