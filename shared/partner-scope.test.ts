import { describe, expect, it } from 'vitest';
import type { LdrEvent } from './cloudevents.ts';
import type { Interaction } from './domain/interaction.ts';
import { interactionEvent, TYPES } from './events.ts';
import { entitled, scopedCopy, scopedSchema } from './partner-scope.ts';
import { learnerRef } from './partner-secrets.ts';
import { type Partner, partnerSchema } from './registry.ts';

const STUDENT = 'stu-1@school';
const SECRET_A = Buffer.alloc(32, 0xa1);
const SECRET_B = Buffer.alloc(32, 0xb2);
const NOW = new Date('2025-03-10T12:00:00Z');

const partner = (over: Partial<Partner> & { slug: string }): Partner =>
  partnerSchema.parse({ displayName: over.slug, ...over });

const A = partner({ slug: 'acme', instances: ['inst-a'], sponsors: ['acme-edu'] });
const B = partner({ slug: 'bravo', instances: ['inst-b'] });
const SPONSOR_ONLY = partner({ slug: 'sponsor-only', sponsors: ['acme-edu'] });

const interaction = (over: Partial<Interaction> = {}): LdrEvent =>
  interactionEvent(
    {
      id: 'evt-1',
      studentId: STUDENT,
      instanceId: 'inst-a',
      kind: 'help_request',
      occurredAt: '2025-03-10T11:59:00Z',
      topic: 'python.loops',
      payload: { text: 'I am stuck with the loop' },
      ...over,
    } as Interaction,
    NOW,
  );

const content = (
  extensions: Record<string, string | undefined>,
  data: Record<string, unknown> = {},
): LdrEvent => ({
  id: 'lesson-1@2',
  source: '/ldr/functions/publishContent',
  type: TYPES.content,
  time: NOW.toISOString(),
  subject: 'content/lesson-1',
  data: { contentId: 'lesson-1', version: 2, kind: 'lesson', title: 'Loops', topic: 'python.loops', ...data },
  extensions: { 'ldr-kind': 'lesson', ...extensions },
});

describe('entitled (SPEC §8)', () => {
  it('an event of one of the partner’s instances belongs to it', () => {
    expect(entitled(A, interaction({ instanceId: 'inst-a' }))).toBe(true);
    expect(entitled(B, interaction({ instanceId: 'inst-a' }))).toBe(false);
  });

  it('an event sponsored by one of the partner’s sponsors belongs to it, whatever the instance', () => {
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    expect(entitled(A, ev)).toBe(true);
    expect(entitled(SPONSOR_ONLY, ev)).toBe(true);
    expect(entitled(B, ev)).toBe(true); // inst-b is B's instance
    expect(entitled(B, interaction({ instanceId: 'inst-c', sponsor: 'acme-edu' }))).toBe(false);
  });

  it('an event of nobody’s instance and no sponsor belongs to nobody', () => {
    const ev = interaction({ instanceId: 'inst-c' });
    for (const p of [A, B, SPONSOR_ONLY]) expect(entitled(p, ev)).toBe(false);
  });

  it('a type outside the partner’s eventTypes is not mirrored, even on its own instance', () => {
    const progressOnly = partner({
      slug: 'progress-only',
      instances: ['inst-a'],
      eventTypes: [TYPES.progress],
    });
    expect(entitled(progressOnly, interaction())).toBe(false);
    expect(entitled(progressOnly, { ...interaction(), type: TYPES.progress, id: 'evt-1.progress' })).toBe(
      true,
    );
    // types that are never mirrored (struggle, triage) never match
    expect(entitled(A, { ...interaction(), type: TYPES.struggle })).toBe(false);
    expect(entitled(A, { ...interaction(), type: TYPES.triage })).toBe(false);
  });

  it('content for all instances goes to every partner that runs an instance', () => {
    const ev = content({ 'ldr-audience': 'all' });
    expect(entitled(A, ev)).toBe(true);
    expect(entitled(B, ev)).toBe(true);
    expect(entitled(SPONSOR_ONLY, ev)).toBe(false);
  });

  it('content for listed instances goes to the partners of those instances only', () => {
    const ev = content({ 'ldr-audience': 'list', 'ldr-to-inst-a': '1' });
    expect(entitled(A, ev)).toBe(true);
    expect(entitled(B, ev)).toBe(false);
    expect(entitled(SPONSOR_ONLY, ev)).toBe(false);
  });

  it('content for another instance does not reach a partner unless it is sponsored by it', () => {
    const ev = content({ 'ldr-audience': 'list', 'ldr-to-inst-x': '1' });
    expect(entitled(A, ev)).toBe(false);
    expect(entitled(B, ev)).toBe(false);
    const sponsored = content({ 'ldr-audience': 'list', 'ldr-to-inst-x': '1', 'ldr-sponsor': 'acme-edu' });
    expect(entitled(A, sponsored)).toBe(true);
    expect(entitled(SPONSOR_ONLY, sponsored)).toBe(true);
    expect(entitled(B, sponsored)).toBe(false);
  });
});

describe('scopedCopy (SPEC §8)', () => {
  const refA = learnerRef(SECRET_A, STUDENT);

  it('replaces the student id by learnerRef everywhere: data (nested, arrays), subject and attributes', () => {
    const ev: LdrEvent = {
      id: 'x-1',
      source: '/ldr/functions/updateProgress',
      type: TYPES.progress,
      time: NOW.toISOString(),
      subject: `students/${STUDENT}`,
      data: {
        studentId: STUDENT,
        nested: { studentId: STUDENT, deeper: [{ studentId: STUDENT, ownerId: STUDENT }] },
        peers: [STUDENT, 'someone-else'],
        mastery: 12.3,
      },
      extensions: { 'ldr-instance': 'inst-a', 'ldr-owner': STUDENT },
    };
    const { event, orderingKey } = scopedCopy(A, SECRET_A, ev);
    expect(event.subject).toBe(`learners/${refA}`);
    expect(event.data).toEqual({
      learnerRef: refA,
      nested: { learnerRef: refA, deeper: [{ learnerRef: refA, ownerId: refA }] },
      peers: [refA, 'someone-else'],
      mastery: 12.3,
    });
    expect(event.extensions).toMatchObject({
      'ldr-instance': 'inst-a',
      'ldr-owner': refA,
      'ldr-partner': 'acme',
    });
    expect(orderingKey).toBe(refA);
    expect(JSON.stringify(event)).not.toContain(STUDENT);
  });

  it('keeps id, type and time; hides the instance in the source', () => {
    const ev = interaction({ sponsor: 'acme-edu' });
    const { event } = scopedCopy(A, SECRET_A, ev);
    expect(event.id).toBe(ev.id);
    expect(event.type).toBe(ev.type);
    expect(event.time).toBe(ev.time);
    expect(event.source).toBe('/ldr/instances/-');
    expect(event.extensions).toMatchObject({
      'ldr-sponsor': 'acme-edu',
      'ldr-kind': 'help_request',
      'ldr-partner': 'acme',
    });
  });

  it.each([
    ['help_request', { text: 'Ich komme nicht weiter' }, {}],
    ['dialogue_turn', { text: 'how do loops work?', role: 'student' }, { role: 'student' }],
    [
      'code_submission',
      { exerciseId: 'ex-1', code: 'print(1)', codeQuality: 0.5 },
      { exerciseId: 'ex-1', codeQuality: 0.5 },
    ],
    [
      'code_execution',
      { ok: false, errorType: 'TypeError', errorMessage: 'x is undefined' },
      { ok: false, errorType: 'TypeError' },
    ],
  ] as const)('drops free text and code of a %s unless shareContent', (kind, payload, scoped) => {
    const ev = interaction({ kind, payload } as Partial<Interaction>);
    const { event } = scopedCopy(A, SECRET_A, ev);
    expect((event.data as { payload: unknown }).payload).toEqual(scoped);
    const sharing = { ...A, shareContent: true };
    expect((scopedCopy(sharing, SECRET_A, ev).event.data as { payload: unknown }).payload).toEqual(payload);
  });

  it('drops detail and filename at any depth unless shareContent', () => {
    const ev: LdrEvent = {
      id: 'art-1.stored',
      source: '/ldr/functions/finalizeArtifact',
      type: TYPES.artifact,
      time: NOW.toISOString(),
      subject: `students/${STUDENT}`,
      data: {
        artifactId: 'art-1',
        ownerId: STUDENT,
        filename: 'my-essay.pdf',
        meta: { detail: 'private', size: 3 },
      },
      extensions: { 'ldr-instance': 'inst-a' },
    };
    expect(scopedCopy(A, SECRET_A, ev).event.data).toEqual({
      artifactId: 'art-1',
      ownerId: refA,
      meta: { size: 3 },
    });
    expect(scopedCopy({ ...A, shareContent: true }, SECRET_A, ev).event.data).toEqual({
      artifactId: 'art-1',
      ownerId: refA,
      filename: 'my-essay.pdf',
      meta: { detail: 'private', size: 3 },
    });
  });

  it('orders content by contentId and removes the addressing of instances', () => {
    const ev = content(
      { 'ldr-audience': 'list', 'ldr-to-inst-a': '1', 'ldr-to-inst-x': '1', 'ldr-sponsor': 'acme-edu' },
      { instances: ['inst-a', 'inst-x'], audience: ['inst-a', 'inst-x'] },
    );
    const { event, orderingKey } = scopedCopy(A, SECRET_A, ev);
    expect(orderingKey).toBe('lesson-1');
    expect(event.subject).toBe('content/lesson-1');
    expect(Object.keys(event.extensions ?? {}).sort()).toEqual(['ldr-kind', 'ldr-partner', 'ldr-sponsor']);
    // the data names only the partner's own instances, never the other addressees
    expect(event.data).toMatchObject({ contentId: 'lesson-1', instances: ['inst-a'], audience: ['inst-a'] });
    expect(JSON.stringify(event)).not.toContain('inst-x');
    // a sponsor-only partner learns no instance at all
    const { event: sponsorCopy } = scopedCopy(SPONSOR_ONLY, SECRET_B, ev);
    expect(sponsorCopy.data).toMatchObject({ instances: [], audience: [] });

    const all = scopedCopy(B, SECRET_B, content({ 'ldr-audience': 'all' }, { audience: 'all' })).event;
    expect(all.extensions?.['ldr-audience']).toBeUndefined();
    expect(all.data).toMatchObject({ audience: 'all' });
  });

  it('a signal for one learner is ordered and addressed by the learner’s ref', () => {
    const ev = content(
      { 'ldr-audience': 'list', 'ldr-to-inst-a': '1', 'ldr-instance': 'inst-a', 'ldr-kind': 'signal' },
      { kind: 'signal', studentId: STUDENT, audience: ['inst-a'] },
    );
    const { event, orderingKey } = scopedCopy(A, SECRET_A, { ...ev, subject: `students/${STUDENT}` });
    expect(orderingKey).toBe(refA);
    expect(event.subject).toBe(`learners/${refA}`);
    expect(event.data).toMatchObject({ learnerRef: refA });
    expect(JSON.stringify(event)).not.toContain(STUDENT);
  });

  describe('issue 11 #9: no student id inside strings, no free text of a content body', () => {
    const signal = (body: unknown, title = 'Nudge') =>
      ({
        ...content(
          { 'ldr-audience': 'list', 'ldr-to-inst-a': '1', 'ldr-instance': 'inst-a', 'ldr-kind': 'signal' },
          { kind: 'signal', studentId: STUDENT, audience: ['inst-a'], title, body },
        ),
        subject: `students/${STUDENT}`,
      }) as LdrEvent;

    it('drops the body of content unless shareContent', () => {
      const { event } = scopedCopy(A, SECRET_A, signal({ note: `${STUDENT} needs help`, level: 3 }));
      expect(event.data).not.toHaveProperty('body');
      expect(JSON.stringify(event)).not.toContain('needs help');
      const lesson = scopedCopy(
        A,
        SECRET_A,
        content({ 'ldr-audience': 'all' }, { body: { md: 'Bob.B2 wrote' } }),
      );
      expect(lesson.event.data).not.toHaveProperty('body');
    });

    it('replaces the learner’s id inside strings and keys, in any case, when the body is shared', () => {
      const sharing = { ...A, shareContent: true };
      const { event } = scopedCopy(
        sharing,
        SECRET_A,
        signal(
          { note: `${STUDENT} needs help`, [STUDENT]: [`see ${STUDENT.toUpperCase()}!`] },
          `Hi ${STUDENT}`,
        ),
      );
      expect((event.data as { body: unknown }).body).toEqual({
        note: `${refA} needs help`,
        [refA]: [`see ${refA}!`],
      });
      expect((event.data as { title: string }).title).toBe(`Hi ${refA}`);
      expect(JSON.stringify(event).toLowerCase()).not.toContain(STUDENT.toLowerCase());
    });

    it('replaces the learner’s id inside interaction text shared with the partner', () => {
      const ev = interaction({ payload: { text: `I am ${STUDENT}, help` } } as Partial<Interaction>);
      const { event } = scopedCopy({ ...A, shareContent: true }, SECRET_A, ev);
      expect((event.data as { payload: unknown }).payload).toEqual({ text: `I am ${refA}, help` });
    });
  });

  describe('issue 11 #14: no id of an instance the partner does not run', () => {
    it('a sponsor-matched copy of another instance’s event carries neither ldr-instance nor instanceId', () => {
      const ev = interaction({
        instanceId: 'inst-b',
        sponsor: 'acme-edu',
        kind: 'session',
        payload: { action: 'start' },
      });
      for (const p of [A, SPONSOR_ONLY]) {
        const { event } = scopedCopy(p, SECRET_A, ev);
        expect(event.extensions).not.toHaveProperty('ldr-instance');
        expect(event.data).not.toHaveProperty('instanceId');
        expect(JSON.stringify(event)).not.toContain('inst-b');
      }
      const progress: LdrEvent = {
        id: 'evt-1.progress',
        source: '/ldr/functions/updateProgress',
        type: TYPES.progress,
        time: NOW.toISOString(),
        subject: `students/${STUDENT}`,
        data: { studentId: STUDENT, instanceId: 'inst-b', topic: 't', mastery: 1 },
        extensions: { 'ldr-instance': 'inst-b', 'ldr-sponsor': 'acme-edu' },
      };
      expect(JSON.stringify(scopedCopy(A, SECRET_A, progress).event)).not.toContain('inst-b');
    });

    it('a copy of the partner’s own instance’s event keeps the instance', () => {
      const { event } = scopedCopy(A, SECRET_A, interaction({ instanceId: 'inst-a' }));
      expect(event.extensions?.['ldr-instance']).toBe('inst-a');
      expect((event.data as { instanceId: string }).instanceId).toBe('inst-a');
    });
  });

  it('learnerRef is stable for one partner and differs across partners with different secrets', () => {
    const first = scopedCopy(A, SECRET_A, interaction({ id: 'e1' }));
    const second = scopedCopy(
      A,
      SECRET_A,
      interaction({ id: 'e2', kind: 'session', payload: { action: 'start' } }),
    );
    const atB = scopedCopy(B, SECRET_B, interaction({ id: 'e1', instanceId: 'inst-b' }));
    const refOf = (c: { event: LdrEvent }) => (c.event.data as { learnerRef: string }).learnerRef;
    expect(refOf(first)).toBe(refA);
    expect(refOf(second)).toBe(refA);
    expect(first.orderingKey).toBe(refA);
    expect(refOf(atB)).not.toBe(refA);
    expect(atB.orderingKey).toBe(refOf(atB));
    expect(refOf(atB)).toBe(learnerRef(SECRET_B, STUDENT));
    // another learner at the same partner gets another ref
    expect(refOf(scopedCopy(A, SECRET_A, interaction({ studentId: 'stu-2' })))).not.toBe(refA);
  });

  it('does not change the event it copies', () => {
    const ev = interaction({ kind: 'code_execution', payload: { ok: false, errorMessage: 'boom' } });
    const before = JSON.stringify(ev);
    scopedCopy(A, SECRET_A, ev);
    expect(JSON.stringify(ev)).toBe(before);
  });
});

describe('scopedSchema()', () => {
  const raw = {
    oneOf: [
      {
        type: 'object',
        properties: {
          studentId: { type: 'string', pattern: '^[a-z]+$' },
          kind: { const: 'dialogue_turn' },
          payload: {
            type: 'object',
            properties: { text: { type: 'string' }, role: { enum: ['student', 'tutor'] } },
            required: ['text', 'role'],
            additionalProperties: false,
          },
        },
        required: ['studentId', 'kind', 'payload'],
        additionalProperties: false,
      },
    ],
  };

  it('describes the partner’s copy: learnerRef instead of studentId, no free text', () => {
    const s = scopedSchema(raw, false) as typeof raw;
    const variant = s.oneOf[0]!;
    expect(Object.keys(variant.properties)).toEqual(['learnerRef', 'kind', 'payload']);
    expect(variant.required).toEqual(['learnerRef', 'kind', 'payload']);
    expect(variant.properties.payload).toEqual({
      type: 'object',
      properties: { role: { enum: ['student', 'tutor'] } },
      required: ['role'],
      additionalProperties: false,
    });
    expect(JSON.stringify(s)).not.toContain('studentId');
    // the input is left as it was
    expect(raw.oneOf[0]!.required).toEqual(['studentId', 'kind', 'payload']);
  });

  it('keeps free text for a partner with shareContent', () => {
    const s = scopedSchema(raw, true) as typeof raw;
    expect(s.oneOf[0]!.properties.payload.required).toEqual(['text', 'role']);
    expect(Object.keys(s.oneOf[0]!.properties)).toEqual(['learnerRef', 'kind', 'payload']);
  });
});
