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
 * One decision per interaction. Its event id is derived from the interaction's ce-id, so a redelivery
 * republishes the same decision under the same ce-id and consumers keep exactly one.
 */
export function createRouteTriage(deps: { bus: Bus; rules: TriageRules }) {
  return async (ev: LdrEvent): Promise<TriageRouted> => {
    const i = readInteraction(ev);
    const decision = triage(i, deps.rules);
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
    const targets =
      decision.agent === 'none' ? [TOPICS.triageAudit] : [TOPICS.agent(decision.agent), TOPICS.triageAudit];
    await Promise.all(targets.map((t) => deps.bus.publish(t, routed, i.studentId)));
    return data;
  };
}
