import { parse as uuidParse, v5 as uuidv5 } from 'uuid';
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

/**
 * Event ids are scoped to their learner (SPEC §3). An interaction's `id` (the client's idempotency key, or a
 * UUIDv7 the server assigned) names it within its learner; its published `ce-id` must be unique across
 * learners and stable across retries, mirrors and replays:
 * - a client id → the UUIDv5 of `<studentId>/<id>` in this fixed namespace (deterministic: a retry of the
 *   same post gets the same ce-id; student A and B sending `shared-X` get two);
 * - a server-assigned id → the UUIDv7 itself (already unique; a UUIDv5 can never equal it).
 * Changing the namespace changes every ce-id: never do it.
 */
export const INTERACTION_ID_NAMESPACE = '6b1e0f3c-2a54-4c1e-9d0e-3f5b7a2c9e41';

// parsed once: given as a string, uuid parses the namespace twice per id, and encodes the name through
// unescape(encodeURIComponent()); both showed in ingest's profile for batches (the ids are the same)
const NAMESPACE_BYTES = uuidParse(INTERACTION_ID_NAMESPACE);

export const clientEventId = (studentId: string, id: string): string =>
  uuidv5(Buffer.from(`${studentId}/${id}`, 'utf8'), NAMESPACE_BYTES);

/** The ce-id of an interaction; `serverAssigned` when ingest generated its id (the client sent none). */
export const interactionEventId = (i: Pick<Interaction, 'studentId' | 'id'>, serverAssigned: boolean) =>
  serverAssigned ? i.id : clientEventId(i.studentId, i.id);

/** The published interaction; `ceId` defaults to the id derived from learner and (client) id. */
export function interactionEvent(
  i: Interaction,
  receivedAt: Date,
  ceId = clientEventId(i.studentId, i.id),
): LdrEvent<Interaction> {
  return {
    id: ceId,
    source: `/ldr/instances/${i.instanceId}`,
    type: TYPES.interaction,
    time: receivedAt.toISOString(),
    subject: subjectOf(i.studentId),
    data: i,
    extensions: { 'ldr-instance': i.instanceId, 'ldr-sponsor': i.sponsor, 'ldr-kind': i.kind },
  };
}

/**
 * Reads an interaction back from the bus; anything that is not one is a poison message. The ce-id must be
 * one ingest gives it: derived from learner and client id, or the interaction id itself (a server-assigned
 * UUIDv7, or an event published before ids were scoped to the learner). Either way the ledger keys the
 * interaction by (studentId, id), so no form counts twice; consumers derive their event ids from the ce-id.
 */
export function readInteraction(ev: LdrEvent): Interaction {
  if (ev.type !== TYPES.interaction) throw new PoisonMessage(`unexpected event type ${ev.type}`);
  const parsed = interactionSchema.safeParse(ev.data);
  if (!parsed.success) {
    const where = parsed.error.issues.map((i) => `/${i.path.join('/')}: ${i.message}`).join('; ');
    throw new PoisonMessage(`invalid interaction: ${where}`.slice(0, 900));
  }
  const i = parsed.data;
  if (!i.id || (ev.id !== i.id && ev.id !== clientEventId(i.studentId, i.id)))
    throw new PoisonMessage('ce-id is not the event id of this interaction (its learner and id)');
  return i as Interaction;
}
