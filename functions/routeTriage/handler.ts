import type { Bus } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import type { Interaction } from '../../shared/domain/interaction.ts';
import { type TriageDecision, type TriageRules, triage } from '../../shared/domain/triage.ts';
import { readInteraction, subjectOf, TOPICS, TYPES } from '../../shared/events.ts';

export interface TriageRouted extends TriageDecision {
  interactionId: string;
  studentId: string;
  instanceId: string;
  topic: string;
  kind: Interaction['kind'];
  occurredAt: string;
}

/**
 * The decision for one interaction and where it goes: the agent's topic (unless `none`) and the audit
 * topic, keyed by the learner. Pure: the bus ceiling (bench/ceiling.ts) publishes exactly this too.
 */
export function triageRouting(ev: LdrEvent, rules: TriageRules) {
  const i = readInteraction(ev);
  const decision = triage(i, rules);
  const data: TriageRouted = {
    ...decision,
    interactionId: i.id,
    studentId: i.studentId,
    instanceId: i.instanceId,
    topic: i.topic,
    kind: i.kind,
    occurredAt: i.occurredAt,
  };
  const routed: LdrEvent<TriageRouted> = {
    id: `${ev.id}.triage`,
    source: '/ldr/functions/routeTriage',
    type: TYPES.triage,
    time: ev.time,
    subject: subjectOf(i.studentId),
    data,
    extensions: {
      'ldr-instance': i.instanceId,
      'ldr-sponsor': i.sponsor,
      'ldr-kind': i.kind,
      'ldr-agent': decision.agent,
    },
  };
  const topics =
    decision.agent === 'none' ? [TOPICS.triageAudit] : [TOPICS.agent(decision.agent), TOPICS.triageAudit];
  return { data, routed, topics, orderingKey: i.studentId };
}

/**
 * One decision per interaction. Its event id is derived from the interaction's ce-id, so a redelivery
 * republishes the same decision under the same ce-id and consumers keep exactly one.
 */
export function createRouteTriage(deps: { bus: Bus; rules: TriageRules }) {
  return async (ev: LdrEvent): Promise<TriageRouted> => {
    const { data, routed, topics, orderingKey } = triageRouting(ev, deps.rules);
    await Promise.all(topics.map((t) => deps.bus.publish(t, routed, orderingKey)));
    return data;
  };
}
