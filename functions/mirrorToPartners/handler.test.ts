import { describe, expect, it } from 'vitest';
import { type Bus, BusUnavailable } from '../../shared/clients.ts';
import type { LdrEvent, PubsubMessage } from '../../shared/cloudevents.ts';
import type { Interaction } from '../../shared/domain/interaction.ts';
import { interactionEvent, TYPES } from '../../shared/events.ts';
import { createLogger } from '../../shared/log.ts';
import { learnerRef, type PartnerSecrets } from '../../shared/partner-secrets.ts';
import { type Partner, partnerSchema } from '../../shared/registry.ts';
import { createMirror, type MirrorMarks, type PartnerDirectory } from './handler.ts';

// ---------------------------------------------------------------------------------------------
// In-memory fakes of the ports
// ---------------------------------------------------------------------------------------------

const partner = (over: Partial<Partner> & { slug: string }): Partner =>
  partnerSchema.parse({ displayName: over.slug, ...over });

class FakeDirectory implements PartnerDirectory {
  constructor(public partners: Partner[]) {}
  async list() {
    return this.partners;
  }
}

class FakeSecrets implements PartnerSecrets {
  async get(slug: string) {
    return Buffer.alloc(32, slug);
  }
}

interface Published {
  topic: string;
  event: LdrEvent;
  orderingKey?: string;
}

class FakeBus implements Bus {
  published: Published[] = [];
  /** topics that do not exist (NOT_FOUND) and topics whose publish fails transiently */
  missing = new Set<string>();
  failing = new Set<string>();
  async publish(topic: string, event: LdrEvent, orderingKey?: string) {
    if (this.missing.has(topic))
      throw new BusUnavailable(`publish to ${topic} failed: 5 NOT_FOUND: Topic not found`);
    if (this.failing.has(topic))
      throw new BusUnavailable(`publish to ${topic} failed: 14 UNAVAILABLE: connection refused`);
    this.published.push({ topic, event, orderingKey });
    return String(this.published.length);
  }
  async publishRaw(_topic: string, _message: PubsubMessage): Promise<string> {
    throw new Error('the mirror publishes CloudEvents');
  }
  topics() {
    return this.published.map((p) => p.topic);
  }
}

class FakeMarks implements MirrorMarks {
  marks = new Set<string>();
  broken = false;
  async seen(slug: string, id: string) {
    if (this.broken) throw new Error('ECONNREFUSED');
    return this.marks.has(`${slug}:${id}`);
  }
  async mark(slug: string, id: string) {
    if (this.broken) throw new Error('ECONNREFUSED');
    this.marks.add(`${slug}:${id}`);
  }
}

const A = partner({ slug: 'acme', instances: ['inst-a'], sponsors: ['acme-edu'] });
const B = partner({ slug: 'bravo', instances: ['inst-b'] });
const C = partner({ slug: 'charlie', instances: ['inst-c'], eventTypes: [TYPES.progress] });

function setup(partners: Partner[] = [A, B, C]) {
  const bus = new FakeBus();
  const marks = new FakeMarks();
  const secrets = new FakeSecrets();
  const mirror = createMirror({
    partners: new FakeDirectory(partners),
    secrets,
    bus,
    marks,
    topicOf: (slug) => `partner.${slug}.events`,
    log: createLogger('mirror-test', 'silent'),
  });
  return { mirror, bus, marks, secrets };
}

const interaction = (over: Partial<Interaction> = {}) =>
  interactionEvent(
    {
      id: 'evt-1',
      studentId: 'stu-1',
      instanceId: 'inst-a',
      kind: 'code_submission',
      occurredAt: '2025-03-10T11:59:00Z',
      topic: 'python.loops',
      payload: { exerciseId: 'ex-1', code: 'print("hi")', codeQuality: 0.7 },
      ...over,
    } as Interaction,
    new Date('2025-03-10T12:00:00Z'),
    over.id ?? 'evt-1', // the ce-id (the mirror keeps it as is)
  );

// ---------------------------------------------------------------------------------------------

describe('createMirror', () => {
  it('publishes a scoped copy to each entitled partner only', async () => {
    const { mirror, bus, secrets } = setup();
    expect(await mirror(interaction({ instanceId: 'inst-a' }))).toEqual(['acme']);
    expect(bus.topics()).toEqual(['partner.acme.events']);
    const [p] = bus.published;
    const ref = learnerRef(await secrets.get('acme'), 'stu-1');
    expect(p!.orderingKey).toBe(ref);
    expect(p!.event.id).toBe('evt-1');
    expect(p!.event.data).toMatchObject({
      learnerRef: ref,
      payload: { exerciseId: 'ex-1', codeQuality: 0.7 },
    });
    expect(JSON.stringify(p!.event)).not.toMatch(/stu-1|print/);

    // sponsored on B's instance: both A (sponsor) and B (instance); C takes progress only
    expect(
      (await mirror(interaction({ id: 'evt-2', instanceId: 'inst-b', sponsor: 'acme-edu' }))).sort(),
    ).toEqual(['acme', 'bravo']);
    // nobody's instance, no sponsor: nobody
    expect(await mirror(interaction({ id: 'evt-3', instanceId: 'inst-z' }))).toEqual([]);
    // C's instance, but C does not take interactions
    expect(await mirror(interaction({ id: 'evt-4', instanceId: 'inst-c' }))).toEqual([]);
    expect(
      await mirror({
        ...interaction({ id: 'evt-5', instanceId: 'inst-c' }),
        id: 'evt-5.progress',
        type: TYPES.progress,
      }),
    ).toEqual(['charlie']);
    expect(bus.published).toHaveLength(4);
  });

  it('gives each partner its own learnerRef for the same learner', async () => {
    const { mirror, bus } = setup();
    await mirror(interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' }));
    const refs = bus.published.map((p) => (p.event.data as { learnerRef: string }).learnerRef);
    expect(refs).toHaveLength(2);
    expect(refs[0]).not.toBe(refs[1]);
  });

  it('ignores types that are never mirrored', async () => {
    const { mirror, bus } = setup();
    for (const type of [TYPES.struggle, TYPES.triage, 'something.else.v1']) {
      expect(await mirror({ ...interaction(), type })).toEqual([]);
    }
    expect(bus.published).toEqual([]);
  });

  it('does not republish a copy on redelivery', async () => {
    const { mirror, bus, marks } = setup();
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    await mirror(ev);
    expect(await mirror(ev)).toEqual([]);
    expect(await mirror(ev)).toEqual([]);
    expect(bus.published).toHaveLength(2);
    expect([...marks.marks].sort()).toEqual(['acme:evt-1', 'bravo:evt-1']);
  });

  it('still publishes when the marks store is down (at-least-once, same ce-id)', async () => {
    const { mirror, bus, marks } = setup();
    marks.broken = true;
    const ev = interaction();
    expect(await mirror(ev)).toEqual(['acme']);
    expect(await mirror(ev)).toEqual(['acme']);
    expect(bus.published.map((p) => p.event.id)).toEqual(['evt-1', 'evt-1']);
  });

  it('skips a partner whose topic is missing and serves the others', async () => {
    const { mirror, bus, marks } = setup();
    bus.missing.add('partner.acme.events');
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    expect(await mirror(ev)).toEqual(['bravo']);
    expect(bus.topics()).toEqual(['partner.bravo.events']);
    // not marked: once the topic exists, a redelivery brings the copy
    expect(marks.marks.has('acme:evt-1')).toBe(false);
    bus.missing.clear();
    expect(await mirror(ev)).toEqual(['acme']);
  });

  it('fails the delivery when the bus is down, and the retry publishes only what is missing', async () => {
    const { mirror, bus } = setup([A, B]);
    bus.failing.add('partner.bravo.events');
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    await expect(mirror(ev)).rejects.toBeInstanceOf(BusUnavailable);
    expect(bus.topics()).toEqual(['partner.acme.events']);
    bus.failing.clear();
    expect(await mirror(ev)).toEqual(['bravo']);
    expect(bus.topics()).toEqual(['partner.acme.events', 'partner.bravo.events']);
  });
});
