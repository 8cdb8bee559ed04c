import type { LdrEvent } from './cloudevents.ts';
import { PoisonMessage } from './cloudevents.ts';
import { type Interaction, interactionSchema } from './domain/interaction.ts';

/** Event types and topic names of SPEC §2–§3. */
export const TYPES = {
  interaction: 'learnflow.interaction.v1',
  triage: 'learnflow.triage.routed.v1',
  progress: 'learnflow.progress.updated.v1',
  struggle: 'learnflow.struggle.detected.v1',
  content: 'learnflow.content.published.v1',
  artifact: 'learnflow.artifact.stored.v1',
} as const;

export const TOPICS = {
  interaction: 'learnflow.interaction.received',
  triageAudit: 'learnflow.triage.routed',
  agent: (agent: string) => `learnflow.agent.${agent}`,
  progress: 'learnflow.progress.updated',
  struggle: 'learnflow.struggle.detected',
  content: 'learnflow.content.published',
  artifact: 'learnflow.artifact.stored',
  storageFinalized: 'learnflow.storage.finalized',
  deadLetter: 'learnflow.deadletter',
  /** retry tasks of mirrorToPartners: one event for one partner whose copy failed */
  mirrorRetry: 'learnflow.mirror.retry',
} as const;

export const subjectOf = (studentId: string) => `students/${studentId}`;

export function interactionEvent(i: Interaction, receivedAt: Date): LdrEvent<Interaction> {
  return {
    id: i.id,
    source: `/ldr/instances/${i.instanceId}`,
    type: TYPES.interaction,
    time: receivedAt.toISOString(),
    subject: subjectOf(i.studentId),
    data: i,
    extensions: { 'ldr-instance': i.instanceId, 'ldr-sponsor': i.sponsor, 'ldr-kind': i.kind },
  };
}

/** Reads an interaction back from the bus; anything that is not one is a poison message. */
export function readInteraction(ev: LdrEvent): Interaction {
  if (ev.type !== TYPES.interaction) throw new PoisonMessage(`unexpected event type ${ev.type}`);
  const parsed = interactionSchema.safeParse(ev.data);
  if (!parsed.success) {
    const where = parsed.error.issues.map((i) => `/${i.path.join('/')}: ${i.message}`).join('; ');
    throw new PoisonMessage(`invalid interaction: ${where}`.slice(0, 900));
  }
  if (!parsed.data.id || parsed.data.id !== ev.id)
    throw new PoisonMessage('interaction id does not match ce-id');
  return parsed.data as Interaction;
}
