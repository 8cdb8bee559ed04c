import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type Bus, BusUnavailable } from '../../shared/clients.ts';
import { type LdrEvent, PoisonMessage, type PubsubMessage } from '../../shared/cloudevents.ts';
import type { Interaction } from '../../shared/domain/interaction.ts';
import { interactionEvent, TYPES } from '../../shared/events.ts';
import type { Logger } from '../../shared/log.ts';
import { learnerRef, type PartnerSecrets } from '../../shared/partner-secrets.ts';
import { type Partner, partnerSchema } from '../../shared/registry.ts';
import { createMirror, LOG, type MirrorMarks, type PartnerDirectory } from './handler.ts';

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
  /** partners whose secret file is missing */
  missing = new Set<string>();
  async get(slug: string) {
    if (this.missing.has(slug)) throw new Error(`ENOENT: no such file or directory, open '/secrets/${slug}'`);
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
  on(topic: string) {
    return this.published.filter((p) => p.topic === topic);
  }
}

class FakeMarks implements MirrorMarks {
  marks = new Set<string>();
  events = new Map<string, string[]>();
  broken = false;
  /** reads and writes made, to assert what a delivery costs */
  reads = 0;
  writes = 0;
  async handled(ev: LdrEvent) {
    this.reads++;
    if (this.broken) throw new Error('ECONNREFUSED');
    return new Set(this.events.get(ev.id) ?? []);
  }
  async record(ev: LdrEvent, slugs: string[]) {
    this.writes++;
    if (this.broken) throw new Error('ECONNREFUSED');
    this.events.set(ev.id, [...slugs]);
  }
  async seen(slug: string, id: string) {
    this.reads++;
    if (this.broken) throw new Error('ECONNREFUSED');
    return this.marks.has(`${slug}:${id}`);
  }
  async mark(slug: string, id: string) {
    this.writes++;
    if (this.broken) throw new Error('ECONNREFUSED');
    this.marks.add(`${slug}:${id}`);
  }
}

const A = partner({ slug: 'acme', instances: ['inst-a'], sponsors: ['acme-edu'] });
const B = partner({ slug: 'bravo', instances: ['inst-b'] });
const C = partner({ slug: 'charlie', instances: ['inst-c'], eventTypes: [TYPES.progress] });

const RETRY = 'learnflow.mirror.retry';

/** A logger that keeps its lines, to assert on the log catalogue. */
function memoryLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: 'info', messageKey: 'message', formatters: { level: (label) => ({ level: label }) } },
    { write: (l: string) => lines.push(JSON.parse(l)) },
  );
  return { log: log as unknown as Logger, lines };
}

function setup(partners: Partner[] = [A, B, C]) {
  const bus = new FakeBus();
  const marks = new FakeMarks();
  const secrets = new FakeSecrets();
  const { log, lines } = memoryLogger();
  const m = createMirror({
    partners: new FakeDirectory(partners),
    secrets,
    bus,
    marks,
    topicOf: (slug) => `partner.${slug}.events`,
    retryTopic: RETRY,
    log,
  });
  /** the partners published to by one normal delivery */
  const mirror = async (ev: LdrEvent) => (await m.mirror(ev)).delivered;
  return { m, mirror, bus, marks, secrets, lines };
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
    const { m, bus, marks } = setup();
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    expect((await m.handle(ev, { deliveryAttempt: 1 })).delivered.sort()).toEqual(['acme', 'bravo']);
    // a first delivery cannot have been handled before: no read, one write for all its copies
    expect([marks.reads, marks.writes]).toEqual([0, 1]);
    expect((await m.handle(ev, { deliveryAttempt: 2 })).delivered).toEqual([]);
    expect((await m.handle(ev, { deliveryAttempt: 3 })).delivered).toEqual([]);
    expect(bus.published).toHaveLength(2);
    expect([...marks.events]).toEqual([['evt-1', ['acme', 'bravo']]]);
    // redeliveries only read: nothing new to record
    expect([marks.reads, marks.writes]).toEqual([2, 1]);
  });

  it('an event with no entitled partner costs no marks at all', async () => {
    const { m, marks } = setup();
    expect(await m.handle(interaction({ instanceId: 'inst-z' }))).toEqual({ delivered: [], retrying: [] });
    expect([marks.reads, marks.writes]).toEqual([0, 0]);
  });

  it('a message published again (replay, relay) is a first delivery: same copy, same ce-id', async () => {
    const { m, bus } = setup();
    const ev = interaction();
    await m.handle(ev, { deliveryAttempt: 1 });
    await m.handle(ev, { deliveryAttempt: 1 });
    expect(bus.on('partner.acme.events').map((p) => p.event)).toEqual([
      bus.published[0]!.event,
      bus.published[0]!.event,
    ]);
  });

  it('still publishes when the marks store is down (at-least-once, same ce-id)', async () => {
    const { m, mirror, bus, marks } = setup();
    marks.broken = true;
    const ev = interaction();
    expect(await mirror(ev)).toEqual(['acme']);
    expect((await m.handle(ev, { deliveryAttempt: 2 })).delivered).toEqual(['acme']);
    expect(bus.published.map((p) => p.event.id)).toEqual(['evt-1', 'evt-1']);
  });

  it('a partner whose topic is missing gets a retry task; the others are served', async () => {
    const { m, bus, marks } = setup();
    bus.missing.add('partner.acme.events');
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    expect(await m.mirror(ev, { orderingKey: 'stu-1' })).toEqual({
      delivered: ['bravo'],
      retrying: ['acme'],
    });
    expect(bus.on('partner.bravo.events')).toHaveLength(1);
    const [task] = bus.on(RETRY);
    expect(task!.event).toEqual({ ...ev, extensions: { ...ev.extensions, 'ldr-partner': 'acme' } });
    expect(task!.orderingKey).toBe('acme/stu-1');
    // not marked: once the topic exists, the retry task brings the copy
    expect(marks.marks.has('acme:evt-1')).toBe(false);
    await expect(m.handle(task!.event)).rejects.toThrow(/acme.*NOT_FOUND/);
    bus.missing.clear();
    expect(await m.handle(task!.event)).toEqual({ delivered: ['acme'], retrying: [] });
    expect(bus.on('partner.acme.events')).toHaveLength(1);
  });

  it('one partner with a missing secret neither stops nor delays the others', async () => {
    const { m, bus, secrets, lines } = setup();
    secrets.missing.add('acme');
    // sponsored by acme on bravo's instance: both are entitled, acme is listed first
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    expect(await m.mirror(ev)).toEqual({ delivered: ['bravo'], retrying: ['acme'] });
    const next = interaction({ id: 'evt-2', instanceId: 'inst-b', sponsor: 'acme-edu' });
    expect(await m.mirror(next)).toEqual({ delivered: ['bravo'], retrying: ['acme'] });
    expect(bus.on('partner.bravo.events').map((p) => p.event.id)).toEqual(['evt-1', 'evt-2']);
    expect(bus.on('partner.acme.events')).toEqual([]);
    expect(bus.on(RETRY).map((p) => [p.event.id, p.event.extensions?.['ldr-partner']])).toEqual([
      ['evt-1', 'acme'],
      ['evt-2', 'acme'],
    ]);
    // unordered original: the retry task is unordered too
    expect(bus.on(RETRY)[0]!.orderingKey).toBeUndefined();
    // every failure is an ERROR line naming the partner and the event (what the alert matches)
    const errors = lines.filter((l) => l.message === LOG.partnerFailed);
    expect(errors.map((l) => [l.level, l.partner, l.eventId])).toEqual([
      ['error', 'acme', 'evt-1'],
      ['error', 'acme', 'evt-2'],
    ]);
    expect(JSON.stringify(lines)).not.toContain('stu-1');
  });

  it('a retry task targets only its partner, and fails until that partner works', async () => {
    const { m, bus, secrets, lines } = setup();
    secrets.missing.add('acme');
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    await m.mirror(ev);
    const task = bus.on(RETRY)[0]!.event;
    const before = bus.published.length;
    // the redelivered task fails (Pub/Sub retries it, then dead-letters it) and publishes nothing
    await expect(m.handle(task)).rejects.toThrow(/partner acme.*ENOENT/);
    await expect(m.handle(task)).rejects.toThrow(/ENOENT/);
    expect(bus.published).toHaveLength(before);
    expect(lines.filter((l) => l.message === LOG.partnerFailed && l.retry === true)).toHaveLength(2);
    secrets.missing.clear();
    expect(await m.handle(task)).toEqual({ delivered: ['acme'], retrying: [] });
    const copies = bus.published.slice(before);
    expect(copies.map((p) => p.topic)).toEqual(['partner.acme.events']);
    // the copy is acme's own scoped copy, exactly as a normal delivery would have made it
    const ref = learnerRef(await secrets.get('acme'), 'stu-1');
    expect(copies[0]!.orderingKey).toBe(ref);
    expect(copies[0]!.event.extensions?.['ldr-partner']).toBe('acme');
    expect(JSON.stringify(copies[0]!.event)).not.toMatch(/stu-1|print/);
  });

  it('no partner gets a copy twice: redeliveries of the event and of the task are marked', async () => {
    const { m, bus, secrets } = setup();
    secrets.missing.add('acme');
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    await m.mirror(ev);
    const task = bus.on(RETRY)[0]!.event;
    secrets.missing.clear();
    await m.handle(task);
    await m.handle(task, { deliveryAttempt: 2 }); // the task redelivered after its ack was lost
    // the original redelivered: both partners already have it, no new retry task either
    expect(await m.mirror(ev, { deliveryAttempt: 2 })).toEqual({ delivered: [], retrying: [] });
    expect(bus.on('partner.acme.events')).toHaveLength(1);
    expect(bus.on('partner.bravo.events')).toHaveLength(1);
    expect(bus.on(RETRY)).toHaveLength(1);
  });

  it('a retry task for a partner that is gone or no longer entitled is acknowledged', async () => {
    const { m, bus, secrets } = setup([A, B]);
    secrets.missing.add('acme');
    await m.mirror(interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' }));
    const task = bus.on(RETRY)[0]!.event;
    const gone = setup([B]);
    expect(await gone.m.handle(task)).toEqual({ delivered: [], retrying: [] });
    const notEntitled = setup([{ ...A, sponsors: [] }, B]);
    expect(await notEntitled.m.handle(task)).toEqual({ delivered: [], retrying: [] });
    expect([...gone.bus.published, ...notEntitled.bus.published]).toEqual([]);
    await expect(
      m.handle({ ...task, extensions: { ...task.extensions, 'ldr-partner': '' } }),
    ).rejects.toBeInstanceOf(PoisonMessage);
  });

  it('fails the whole delivery when a retry task cannot be published, and the redelivery loses nothing', async () => {
    const { m, bus } = setup([A, B]);
    bus.failing.add('partner.bravo.events');
    bus.failing.add(RETRY);
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    await expect(m.mirror(ev)).rejects.toBeInstanceOf(BusUnavailable);
    expect(bus.topics()).toEqual(['partner.acme.events']);
    bus.failing.clear();
    expect(await m.mirror(ev, { deliveryAttempt: 2 })).toEqual({ delivered: ['bravo'], retrying: [] });
    expect(bus.topics()).toEqual(['partner.acme.events', 'partner.bravo.events']);
    expect(await m.mirror(ev, { deliveryAttempt: 3 })).toEqual({ delivered: [], retrying: [] });
    expect(bus.topics()).toHaveLength(2);
  });

  it('a transient publish failure for one partner becomes a retry task, not a failed delivery', async () => {
    const { m, bus } = setup([A, B]);
    bus.failing.add('partner.bravo.events');
    const ev = interaction({ instanceId: 'inst-b', sponsor: 'acme-edu' });
    expect(await m.mirror(ev)).toEqual({ delivered: ['acme'], retrying: ['bravo'] });
    bus.failing.clear();
    expect(await m.handle(bus.on(RETRY)[0]!.event)).toEqual({ delivered: ['bravo'], retrying: [] });
    expect(bus.topics().filter((t) => t.startsWith('partner.'))).toEqual([
      'partner.acme.events',
      'partner.bravo.events',
    ]);
  });
});
