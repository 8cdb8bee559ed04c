import { describe, expect, it } from 'vitest';
import { PoisonMessage } from './cloudevents.ts';
import type { Interaction } from './domain/interaction.ts';
import { clientEventId, interactionEvent, interactionEventId, readInteraction } from './events.ts';

const at = new Date('2025-03-10T12:00:00Z');
const interaction = (over: Partial<Interaction> = {}) =>
  ({
    id: 'shared-X',
    studentId: 'stu-a',
    instanceId: 'inst-a',
    kind: 'session',
    occurredAt: '2025-03-10T11:59:00Z',
    topic: 'general',
    payload: { action: 'start' },
    ...over,
  }) as Interaction;

describe('interaction event ids (scoped to the learner)', () => {
  it('derives a deterministic UUIDv5 from learner and client id: same on retry, different per learner', () => {
    const a = clientEventId('stu-a', 'shared-X');
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(clientEventId('stu-a', 'shared-X')).toBe(a);
    expect(clientEventId('stu-b', 'shared-X')).not.toBe(a);
    // no ambiguity between (learner, id) pairs that concatenate alike
    expect(clientEventId('stu-a.b', 'c')).not.toBe(clientEventId('stu-a', 'b.c'));
  });

  it('ce-ids are a contract: these stay what they were when the room first derived them', () => {
    // consumers de-duplicate on ce-id across deploys; a changed derivation would make every retry new
    expect(clientEventId('stu-a', 'shared-X')).toBe('0246af58-7554-5b68-befa-969597069091');
    expect(clientEventId('learner-Zoë', 'ü/日本語/🎉')).toBe('94baf836-797a-56d1-826e-ebe7578662c2');
    expect(clientEventId('s', '')).toBe('d4852e75-174a-5a2e-8a94-bfd6bafde39c');
  });

  it('keeps a server-assigned UUIDv7 as the ce-id', () => {
    const id = '01950000-0000-7000-8000-000000000001';
    expect(interactionEventId({ studentId: 'stu-a', id }, true)).toBe(id);
    expect(interactionEventId({ studentId: 'stu-a', id }, false)).toBe(clientEventId('stu-a', id));
  });

  it('readInteraction accepts the derived ce-id and the id itself, and rejects any other', () => {
    const i = interaction();
    expect(readInteraction(interactionEvent(i, at)).id).toBe('shared-X');
    expect(readInteraction(interactionEvent(i, at, 'shared-X')).studentId).toBe('stu-a');
    // student B's ce-id for the same client id does not name A's interaction
    expect(() => readInteraction(interactionEvent(i, at, clientEventId('stu-b', 'shared-X')))).toThrow(
      PoisonMessage,
    );
  });

  it('readInteraction rejects an interaction before the year 2000 as poison (it could not be recorded)', () => {
    const ev = interactionEvent(interaction({ occurredAt: '0000-01-01T00:00:00Z' }), at);
    expect(() => readInteraction(ev)).toThrow(/occurredAt/);
  });
});
