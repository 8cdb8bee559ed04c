import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createMirror } from '../functions/mirrorToPartners/handler.ts';
import { createRouteTriage } from '../functions/routeTriage/handler.ts';
import type { Bus } from '../shared/clients.ts';
import { fromMessage, type LdrEvent, toMessage } from '../shared/cloudevents.ts';
import type { Interaction } from '../shared/domain/interaction.ts';
import { loadRules } from '../shared/domain/triage.ts';
import defaultRules from '../shared/domain/triage-rules.json' with { type: 'json' };
import { clientEventId, interactionEvent, TOPICS, TYPES } from '../shared/events.ts';
import { type Partner, partnerSchema } from '../shared/registry.ts';
import {
  createProgressState,
  ingestPublications,
  mirrorPublications,
  type Publication,
  triagePublications,
} from './ceiling-events.ts';

const interaction = (over: Partial<Interaction> = {}): Interaction =>
  ({
    id: 'ev-1',
    studentId: 'stu-1',
    instanceId: 'inst-a',
    kind: 'help_request',
    occurredAt: '2026-01-05T10:00:00.000Z',
    topic: 'python.loops',
    payload: { text: 'I am stuck with this loop' },
    ...over,
  }) as Interaction;

/** As delivered: through the same Pub/Sub message encoding the bridge decodes. */
const delivered = (ev: LdrEvent) => {
  const m = toMessage(ev);
  return fromMessage(m.attributes, m.data);
};

const recordingBus = () => {
  const published: Publication[] = [];
  const bus: Bus = {
    async publish(topic, event, orderingKey) {
      published.push({ topic, event, orderingKey });
      return 'id';
    },
    async publishRaw() {
      return 'id';
    },
  };
  return { bus, published };
};

/** Publications compared as the messages they become (attributes, data, ordering key). */
const asMessages = (ps: Publication[]) =>
  ps.map((p) => ({ topic: p.topic, ...toMessage(p.event, p.orderingKey), data: p.event.data }));

describe('the bus ceiling publishes what the real functions publish', () => {
  it('ingestInteraction: one interaction event per posted event, keyed by learner, with the derived ce-id', () => {
    const at = new Date('2026-01-05T10:00:01.000Z');
    const a = interaction();
    const b = interaction({ id: 'ev-2', studentId: 'stu-2' });
    expect(ingestPublications(a, at)).toEqual([
      { topic: TOPICS.interaction, event: interactionEvent(a, at), orderingKey: 'stu-1' },
    ]);
    const batch = ingestPublications({ events: [a, b] }, at);
    expect(batch.map((p) => [p.event.id, p.orderingKey])).toEqual([
      [clientEventId('stu-1', 'ev-1'), 'stu-1'],
      [clientEventId('stu-2', 'ev-2'), 'stu-2'],
    ]);
  });

  it('routeTriage: the same decision on the same topics as the real handler', async () => {
    const rules = loadRules(defaultRules);
    for (const i of [
      interaction(),
      interaction({ kind: 'content_view', payload: { contentId: 'c', durationMs: 1 } } as never),
      interaction({
        kind: 'code_execution',
        payload: { ok: false, errorType: 'TypeError', errorMessage: 'x' },
      } as never),
    ]) {
      const ev = delivered(interactionEvent(i, new Date()));
      const real = recordingBus();
      await createRouteTriage({ bus: real.bus, rules })(ev);
      expect(asMessages(triagePublications(ev, rules))).toEqual(asMessages(real.published));
    }
  });

  it('mirrorToPartners: the same scoped copies, on the same partner topics, as the real handler', async () => {
    const partners: Partner[] = [
      partnerSchema.parse({ slug: 'acme', displayName: 'A', instances: ['inst-a'] }),
      partnerSchema.parse({ slug: 'other', displayName: 'O', instances: ['inst-z'] }),
      partnerSchema.parse({
        slug: 'share',
        displayName: 'S',
        instances: ['inst-a'],
        shareContent: true,
        eventTypes: [TYPES.interaction],
      }),
    ];
    const secret = (slug: string) => Buffer.alloc(32, slug);
    const topicOf = (slug: string) => `partner.${slug}.events`;
    const ev = delivered(interactionEvent(interaction(), new Date()));
    const real = recordingBus();
    await createMirror({
      partners: { list: async () => partners },
      secrets: { get: async (slug) => secret(slug) },
      bus: real.bus,
      marks: {
        handled: async () => new Set<string>(),
        record: async () => {},
        seen: async () => false,
        mark: async () => {},
      },
      topicOf,
      retryTopic: TOPICS.mirrorRetry,
      log: pino({ level: 'silent' }),
    }).mirror(ev);
    const ours = mirrorPublications(
      ev,
      partners.map((partner) => ({ partner, secret: secret(partner.slug), topic: topicOf(partner.slug) })),
    );
    expect(ours.map((p) => p.topic).sort()).toEqual(['partner.acme.events', 'partner.share.events']);
    const byTopic = (ps: Publication[]) => asMessages(ps).sort((x, y) => x.topic.localeCompare(y.topic));
    expect(byTopic(ours)).toEqual(byTopic(real.published));
    // types that are not mirrored are not copied
    expect(mirrorPublications({ ...ev, type: TYPES.triage }, [])).toEqual([]);
  });

  it('updateProgress: a progress event when mastery or level change (and on the first), none for a redelivery', () => {
    const progress = createProgressState();
    const first = delivered(
      interactionEvent(interaction({ kind: 'session', payload: { action: 'start' } } as never), new Date()),
    );
    const p1 = progress(first);
    expect(p1.map((p) => [p.topic, p.event.id, p.event.type, p.orderingKey])).toEqual([
      [TOPICS.progress, `${first.id}.progress`, TYPES.progress, 'stu-1'],
    ]);
    expect(p1[0]!.event.data).toMatchObject({ interactionId: 'ev-1', version: 1, previousMastery: 0 });
    expect(progress(first)).toEqual([]); // redelivery: the ledger's duplicate publishes nothing
    // the same day, nothing that moves mastery: no progress event
    const view = interaction({
      id: 'ev-2',
      kind: 'content_view',
      payload: { contentId: 'c', durationMs: 5 },
    } as never);
    expect(progress(delivered(interactionEvent(view, new Date())))).toEqual([]);
    // a passed exercise moves mastery: progress, version 3 (every applied interaction counts)
    const ex = interaction({
      id: 'ev-3',
      kind: 'exercise_attempt',
      payload: { exerciseId: 'e1', passed: true, score: 1 },
    } as never);
    const p3 = progress(delivered(interactionEvent(ex, new Date())));
    expect(p3).toHaveLength(1);
    expect(p3[0]!.event.data).toMatchObject({ interactionId: 'ev-3', version: 3 });
    expect((p3[0]!.event.data as { mastery: number }).mastery).toBeGreaterThan(0);
  });

  it('updateProgress: a struggle event once per learner, topic, reason and day', () => {
    const progress = createProgressState();
    const fail = (n: number) =>
      delivered(
        interactionEvent(
          interaction({
            id: `run-${n}`,
            kind: 'code_execution',
            payload: { ok: false, errorType: 'TypeError', errorMessage: 'x is not a function' },
          } as never),
          new Date(),
        ),
      );
    const struggles = Array.from({ length: 8 }, (_, n) => progress(fail(n)))
      .flat()
      .filter((p) => p.topic === TOPICS.struggle);
    expect(struggles.length).toBeGreaterThan(0);
    const reasons = struggles.map((p) => (p.event.data as { reason: string }).reason);
    expect(new Set(reasons).size).toBe(reasons.length);
    expect(struggles[0]!.event.id).toMatch(/\.struggle\./);
  });
});
