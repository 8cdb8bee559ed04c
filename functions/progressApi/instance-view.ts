import type { Interaction } from '../../shared/domain/interaction.ts';
import { apply, emptyState, mastery, type TopicState } from '../../shared/domain/mastery.ts';
import type { Alert, TopicProgress } from './handler.ts';

/** One applied interaction as the ledger holds it. */
export interface LedgerEntry {
  id: string;
  kind: Interaction['kind'];
  topic: string;
  occurredAt: string;
  payload: Record<string, unknown>;
  /** when updateProgress applied it (RFC 3339) */
  appliedAt: string;
}

/**
 * What an app-instance may see of a learner (SPEC §4: only what was posted through it): mastery and
 * struggle alerts computed by the same pure reducer as updateProgress, but over the interactions that
 * came through that instance alone, in the order they were applied. The room-wide mastery and alerts
 * mix every instance's data (a quiz score posted through inst-b moves the mean that inst-a would see),
 * so a scoped reader never gets them, not even in aggregate.
 */
export function instanceView(entries: readonly LedgerEntry[]): { topics: TopicProgress[]; alerts: Alert[] } {
  const states = new Map<string, { state: TopicState; updatedAt: string }>();
  const alerts = new Map<string, Alert>();
  for (const e of entries) {
    const cur = states.get(e.topic) ?? { state: emptyState(), updatedAt: e.appliedAt };
    const { state, struggles } = apply(cur.state, e as unknown as Interaction);
    states.set(e.topic, { state, updatedAt: e.appliedAt });
    const day = new Date(e.occurredAt).toISOString().slice(0, 10);
    for (const s of struggles) {
      // at most one alert per learner, topic, reason and day, as updateProgress records them
      const key = JSON.stringify([e.topic, s.reason, day]);
      if (alerts.has(key)) continue;
      alerts.set(key, {
        topic: e.topic,
        reason: s.reason,
        day,
        detail: s.detail,
        detectedAt: e.appliedAt,
        interactionId: e.id,
      });
    }
  }
  const topics = [...states].map(([topic, { state, updatedAt }]): TopicProgress => {
    const m = mastery(state);
    return { topic, ...m, interactions: state.interactions, updatedAt };
  });
  topics.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
  const list = [...alerts.values()].sort(
    (a, b) =>
      cmp(b.day, a.day) ||
      cmp(b.detectedAt, a.detectedAt) ||
      cmp(a.topic, b.topic) ||
      cmp(a.reason, b.reason),
  );
  return { topics, alerts: list };
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
