/**
 * What each function of the bus ceiling (bench/ceiling.ts) publishes: the same events the real function
 * would publish for the same input (topics, CloudEvent ids, types, attributes, data, ordering keys), built
 * with no store, Redis, authentication or validation beyond what the events need. Pure, so tested alone.
 */

import { triageRouting } from '../functions/routeTriage/handler.ts';
import { derivedEvents } from '../functions/updateProgress/ledger.ts';
import type { LdrEvent } from '../shared/cloudevents.ts';
import type { Interaction } from '../shared/domain/interaction.ts';
import { apply, emptyState, mastery, type TopicState } from '../shared/domain/mastery.ts';
import type { TriageRules } from '../shared/domain/triage.ts';
import { interactionEvent, TOPICS } from '../shared/events.ts';
import { entitled, scopedCopy } from '../shared/partner-scope.ts';
import { mirroredTypes, type Partner } from '../shared/registry.ts';

export interface Publication {
  topic: string;
  event: LdrEvent;
  orderingKey?: string;
}

/** ingestInteraction: one interaction event per posted event (a single event or `{events: [...]}`). */
export function ingestPublications(body: unknown, receivedAt: Date): Publication[] {
  const b = body as { events?: unknown[] } | undefined;
  const raw = (Array.isArray(b?.events) ? b.events : [body]) as Interaction[];
  return raw.map((i) => ({
    topic: TOPICS.interaction,
    event: interactionEvent(i, receivedAt),
    orderingKey: i.studentId,
  }));
}

/** routeTriage: the decision, to the agent's topic (unless `none`) and the audit topic (its own routing). */
export function triagePublications(ev: LdrEvent, rules: TriageRules): Publication[] {
  const { routed, topics, orderingKey } = triageRouting(ev, rules);
  return topics.map((topic) => ({ topic, event: routed, orderingKey }));
}

/**
 * updateProgress without PostgreSQL or Firestore: each learner's topic state in memory, advanced by the
 * same pure domain, so the same progress events (when mastery or level change, or on the first
 * interaction) and struggle events (once per learner, topic, reason and day) are published, with the
 * same ids. A redelivered interaction (same ce-id) publishes nothing, as the ledger's duplicate does.
 */
export function createProgressState() {
  const states = new Map<string, { state: TopicState; mastery: number; level: string; version: number }>();
  const applied = new Set<string>();
  const alerts = new Set<string>();
  return (ev: LdrEvent): Publication[] => {
    if (applied.has(ev.id)) return [];
    applied.add(ev.id);
    const i = ev.data as Interaction;
    const key = `${i.studentId}\u0000${i.topic}`;
    const before = states.get(key) ?? { state: emptyState(), mastery: 0, level: 'beginner', version: 0 };
    const { state, struggles } = apply(before.state, i);
    const m = mastery(state);
    const version = before.version + 1;
    states.set(key, { state, mastery: m.mastery, level: m.level, version });
    const day = new Date(i.occurredAt).toISOString().slice(0, 10);
    // the ledger's events; a struggle only when its alert is new for the learner, topic, reason and day
    return derivedEvents(ev.id, i, before, m, version, struggles, day)
      .filter(({ reason }) => {
        if (reason === undefined) return true;
        const alert = `${key}\u0000${reason}\u0000${day}`;
        if (alerts.has(alert)) return false;
        alerts.add(alert);
        return true;
      })
      .map(({ reason: _, ...p }) => p);
  };
}

/** mirrorToPartners: a scoped copy on each entitled partner's topic, for the mirrored types. */
export function mirrorPublications(
  ev: LdrEvent,
  partners: ReadonlyArray<{ partner: Partner; secret: Buffer; topic: string }>,
): Publication[] {
  if (!mirroredTypes.includes(ev.type as never)) return [];
  return partners
    .filter(({ partner }) => entitled(partner, ev))
    .map(({ partner, secret, topic }) => ({ topic, ...scopedCopy(partner, secret, ev) }));
}
