import type { Redis } from '@upstash/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalUpstash } from '../../emulators/redis/local.ts';
import type { UpstashRest } from '../../emulators/redis/upstash-rest.ts';
import type { Bus } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import type { Interaction } from '../../shared/domain/interaction.ts';
import { interactionEvent } from '../../shared/events.ts';
import { createLogger } from '../../shared/log.ts';
import { redisMirrorMarks } from '../../shared/redis-ports.ts';
import { type Partner, partnerSchema } from '../../shared/registry.ts';
import { createMirror } from './handler.ts';

/**
 * mirrorToPartners' marks against the real Redis (redis-server behind the local Upstash REST endpoint, whose
 * counters say what each delivery cost): what a first delivery and a redelivery write and read.
 */

const TOKEN = 'mirror-marks-test-token';
let local: Awaited<ReturnType<typeof startLocalUpstash>>;
let rest: UpstashRest;
let redis: Redis;

beforeAll(async () => {
  local = await startLocalUpstash(TOKEN);
  ({ rest, redis } = local);
});

afterAll(() => local?.stop());

class MemoryBus implements Bus {
  published: Array<{ topic: string; event: LdrEvent }> = [];
  async publish(topic: string, event: LdrEvent) {
    this.published.push({ topic, event });
    return String(this.published.length);
  }
  async publishRaw(): Promise<string> {
    throw new Error('not used');
  }
}

const partners: Partner[] = [
  partnerSchema.parse({ slug: 'acme', displayName: 'Acme', instances: ['inst-a'], sponsors: ['acme-edu'] }),
  partnerSchema.parse({ slug: 'bravo', displayName: 'Bravo', instances: ['inst-b'] }),
];

function setup() {
  const bus = new MemoryBus();
  const m = createMirror({
    partners: { list: async () => partners },
    secrets: { get: async (slug) => Buffer.alloc(32, slug) },
    bus,
    marks: redisMirrorMarks(redis),
    topicOf: (slug) => `partner.${slug}.events`,
    retryTopic: 'learnflow.mirror.retry',
    log: createLogger('mirror-marks-test', 'silent'),
  });
  return { m, bus };
}

const uid = () => Math.random().toString(36).slice(2);
const event = (instanceId: string, time = new Date()) =>
  interactionEvent(
    {
      id: uid(),
      studentId: `stu-${uid()}`,
      instanceId,
      sponsor: 'acme-edu',
      kind: 'exercise_attempt',
      occurredAt: new Date(time.getTime() - 1000).toISOString(),
      payload: { exerciseId: 'ex-1', passed: true, score: 0.5 },
    } as Interaction,
    time,
    `ce-${uid()}`,
  );

const snapshot = async () => ({ requests: rest.stats.requests, billed: (await rest.billed()).total });

describe('mirror marks on Redis', () => {
  it('16 concurrent first deliveries: no read, their marks in one round trip of one HSET (+ the TTL)', async () => {
    const { m, bus } = setup();
    const events = Array.from({ length: 16 }, () => event('inst-b'));
    const minute = Math.floor(Date.parse(events[0]!.time) / 60_000);
    const before = await snapshot();
    const results = await Promise.all(events.map((ev) => m.handle(ev, { deliveryAttempt: 1 })));
    const after = await snapshot();
    expect(results.every((r) => r.delivered.length === 2)).toBe(true);
    expect(bus.published).toHaveLength(32);
    // the 16 marks in one pipeline (or two, if they straddle a minute); HSET + EXPIRE of the bucket
    expect(after.requests - before.requests).toBeLessThanOrEqual(2);
    expect(after.billed - before.billed).toBeLessThanOrEqual(4);
    const ttl = await redis.ttl(`mirrored:${minute}`);
    expect(ttl).toBeGreaterThanOrEqual(86_400);

    // redeliveries read the mark and publish nothing
    const again = await Promise.all(events.map((ev) => m.handle(ev, { deliveryAttempt: 2 })));
    expect(again.every((r) => r.delivered.length === 0 && r.retrying.length === 0)).toBe(true);
    expect(bus.published).toHaveLength(32);
  });

  it('a redelivery after a partial failure publishes only the partners not yet handled', async () => {
    const { m, bus } = setup();
    const ev = event('inst-b', new Date(Date.now() - 3 * 3_600_000)); // an event of hours ago: its own bucket
    const failing = bus.publish.bind(bus);
    bus.publish = async (topic, e) => {
      if (topic !== 'partner.acme.events') throw new Error('UNAVAILABLE');
      return failing(topic, e);
    };
    // bravo fails and so does its retry task: the delivery fails, acme's copy is recorded
    await expect(m.handle(ev, { deliveryAttempt: 1 })).rejects.toThrow(/UNAVAILABLE/);
    expect(bus.published.map((p) => p.topic)).toEqual(['partner.acme.events']);
    bus.publish = failing;
    expect(await m.handle(ev, { deliveryAttempt: 2 })).toEqual({ delivered: ['bravo'], retrying: [] });
    expect(await m.handle(ev, { deliveryAttempt: 3 })).toEqual({ delivered: [], retrying: [] });
    expect(bus.published.map((p) => p.topic)).toEqual(['partner.acme.events', 'partner.bravo.events']);
  });

  it('reads back the list record() wrote; a mark that is not such a list counts as nothing handled', async () => {
    const marks = redisMirrorMarks(redis);
    const ev = event('inst-b', new Date(Date.now() - 5 * 3_600_000));
    await marks.record(ev, ['acme', 'bravo']);
    expect(await marks.handled(ev)).toEqual(new Set(['acme', 'bravo']));
    // what else could be in the field: not JSON, JSON but not a list; the redelivery then publishes to all
    const bucket = `mirrored:${Math.floor(Date.parse(ev.time) / 60_000)}`;
    for (const junk of ['not json', '{"acme":true}']) {
      await redis.hset(bucket, { [ev.id]: junk });
      expect(await marks.handled(ev)).toEqual(new Set());
    }
    const { m, bus } = setup();
    // both partners are entitled (bravo by instance, acme by sponsor): both get it again
    expect(await m.handle(ev, { deliveryAttempt: 2 })).toEqual({
      delivered: ['acme', 'bravo'],
      retrying: [],
    });
    expect(bus.published.map((p) => p.topic)).toEqual(['partner.acme.events', 'partner.bravo.events']);
  });
});
