import { createHash } from 'node:crypto';
import pino from 'pino';
import { beforeEach, describe, expect, it } from 'vitest';
import type { ArtifactDoc, ArtifactStore, Settlement } from '../../shared/artifacts.ts';
import type { Bus } from '../../shared/clients.ts';
import { BusUnavailable } from '../../shared/clients.ts';
import { type LdrEvent, PoisonMessage, type PubsubMessage } from '../../shared/cloudevents.ts';
import type { RawMessage } from '../../shared/event-function.ts';
import { createLogger, type Logger } from '../../shared/log.ts';
import type { ArtifactObjects } from '../lfsProxy/storage.ts';
import { createFinalizeArtifact } from './handler.ts';

const NOW = new Date('2025-03-10T12:00:00Z');
const BYTES = Buffer.from('hello artifact');
const SHA = createHash('sha256').update(BYTES).digest('hex');

class MemoryStore implements ArtifactStore {
  docs = new Map<string, ArtifactDoc>();
  async get(id: string) {
    const d = this.docs.get(id);
    return d && { ...d };
  }
  async create(id: string, doc: ArtifactDoc) {
    this.docs.set(id, doc);
  }
  async settle(id: string, s: Settlement) {
    const d = this.docs.get(id);
    if (!d) return undefined;
    if (d.state !== 'pending') return { doc: { ...d }, changed: false };
    this.docs.set(id, { ...d, ...s });
    return { doc: { ...d, ...s }, changed: true };
  }
  async markAnnounced(id: string, at: string) {
    this.docs.set(id, { ...this.docs.get(id)!, announcedAt: at });
  }
}

class FakeObjects implements ArtifactObjects {
  objects = new Map<string, Buffer>();
  removed: string[] = [];
  async digest(_bucket: string, name: string) {
    const b = this.objects.get(name);
    if (!b) return 'missing' as const;
    return { sha256: createHash('sha256').update(b).digest('hex'), size: b.length };
  }
  async remove(_bucket: string, name: string) {
    this.removed.push(name);
    this.objects.delete(name);
  }
}

class FakeBus implements Bus {
  published: Array<{ topic: string; event: LdrEvent; orderingKey?: string }> = [];
  down = false;
  async publish(topic: string, event: LdrEvent, orderingKey?: string) {
    if (this.down) throw new BusUnavailable('down');
    this.published.push({ topic, event, orderingKey });
    return '1';
  }
  async publishRaw(_t: string, _m: PubsubMessage): Promise<string> {
    throw new Error('not used');
  }
}

let store: MemoryStore;
let objects: FakeObjects;
let bus: FakeBus;
const finalize = () =>
  createFinalizeArtifact({
    store,
    objects,
    bus,
    bucket: 'ldr-artifacts',
    log: createLogger('test', 'silent'),
    now: () => NOW,
  });

const NAME = 'artifacts/a1/clip.mp4';
const pending = (patch: Partial<ArtifactDoc> = {}): ArtifactDoc => ({
  state: 'pending',
  ownerId: 'stu-1',
  ownerKind: 'student',
  instanceId: 'inst-a',
  uploaderSub: 'stu-1',
  uploaderRole: 'student',
  bucket: 'ldr-artifacts',
  objectName: NAME,
  contentType: 'video/mp4',
  size: BYTES.length,
  sha256: SHA,
  filename: 'clip.mp4',
  createdAt: NOW.toISOString(),
  ...patch,
});

const notification = (
  attrs: Record<string, string> = {},
  resource: Record<string, unknown> = {},
): RawMessage => ({
  attributes: {
    eventType: 'OBJECT_FINALIZE',
    bucketId: 'ldr-artifacts',
    objectId: NAME,
    objectGeneration: '17',
    payloadFormat: 'JSON_API_V1',
    ...attrs,
  },
  data: Buffer.from(
    JSON.stringify({
      name: NAME,
      bucket: 'ldr-artifacts',
      size: String(BYTES.length),
      contentType: 'video/mp4',
      generation: '17',
      ...resource,
    }),
  ),
});

beforeEach(() => {
  store = new MemoryStore();
  objects = new FakeObjects();
  bus = new FakeBus();
  store.docs.set('a1', pending());
  objects.objects.set(NAME, BYTES);
});

describe('finalizeArtifact', () => {
  it('matching bytes → stored and announced once, ordered by owner, id derived from the artifact', async () => {
    expect(await finalize()(notification())).toBe('stored');
    expect(store.docs.get('a1')).toMatchObject({
      state: 'stored',
      storedAt: NOW.toISOString(),
      generation: '17',
      announcedAt: NOW.toISOString(),
    });
    expect(bus.published).toHaveLength(1);
    const { topic, event, orderingKey } = bus.published[0]!;
    expect(topic).toBe('learnflow.artifact.stored');
    expect(orderingKey).toBe('stu-1');
    expect(event).toMatchObject({
      id: 'a1.stored',
      type: 'learnflow.artifact.stored.v1',
      subject: 'students/stu-1',
      extensions: { 'ldr-instance': 'inst-a' },
      data: {
        artifactId: 'a1',
        uri: 'lfs://a1',
        ownerId: 'stu-1',
        instanceId: 'inst-a',
        size: BYTES.length,
        sha256: SHA,
      },
    });
  });

  it('a redelivery after the announcement publishes nothing', async () => {
    await finalize()(notification());
    expect(await finalize()(notification())).toBe('duplicate');
    expect(bus.published).toHaveLength(1);
  });

  it('stored but not yet announced (crash in between): the redelivery announces under the same id', async () => {
    bus.down = true;
    await expect(finalize()(notification())).rejects.toThrow(BusUnavailable);
    expect(store.docs.get('a1')).toMatchObject({ state: 'stored' });
    expect(store.docs.get('a1')).not.toHaveProperty('announcedAt');
    bus.down = false;
    expect(await finalize()(notification())).toBe('announced');
    expect(bus.published.map((p) => p.event.id)).toEqual(['a1.stored']);
  });

  it.each([
    ['other bytes of the same size', Buffer.from('hello artefakt'), /sha256 mismatch/],
    ['fewer bytes', Buffer.from('hello'), /size mismatch/],
  ])(
    '%s → rejected with the reason and the object deleted; nothing announced',
    async (_what, bytes, reason) => {
      objects.objects.set(NAME, bytes);
      expect(await finalize()(notification({}, { size: String(bytes.length) }))).toBe('rejected');
      expect(store.docs.get('a1')).toMatchObject({
        state: 'rejected',
        reason: expect.stringMatching(reason),
        generation: '17',
      });
      expect(objects.removed).toEqual([NAME]);
      expect(bus.published).toHaveLength(0);
    },
  );

  it('a content type other than declared is rejected without reading the object', async () => {
    expect(await finalize()(notification({}, { contentType: 'text/html' }))).toBe('rejected');
    expect(store.docs.get('a1')?.reason).toMatch(/content type mismatch/);
  });

  it('a re-upload to a rejected artifact is deleted again and stays rejected', async () => {
    store.docs.set('a1', pending({ state: 'rejected', reason: 'sha256 mismatch' }));
    expect(await finalize()(notification({ objectGeneration: '18' }))).toBe('rejected');
    expect(objects.removed).toEqual([NAME]);
    expect(store.docs.get('a1')?.state).toBe('rejected');
  });

  it.each([
    ['another event type', { eventType: 'OBJECT_DELETE' }, 'ignored'],
    ['another bucket', { bucketId: 'other' }, 'ignored'],
    ['outside artifacts/', { objectId: 'tmp/x.bin' }, 'ignored'],
    ['an unknown artifact', { objectId: 'artifacts/zz/clip.mp4' }, 'unknown'],
    ['a name other than recorded', { objectId: 'artifacts/a1/other.mp4' }, 'unknown'],
    ['a nested path', { objectId: 'artifacts/a1/x/clip.mp4' }, 'unknown'],
  ])('%s → %s, acknowledged without changes', async (_what, attrs, outcome) => {
    expect(await finalize()(notification(attrs))).toBe(outcome);
    expect(store.docs.get('a1')?.state).toBe('pending');
    expect(bus.published).toHaveLength(0);
    expect(objects.removed).toHaveLength(0);
  });

  it('an object gone meanwhile is acknowledged and the artifact stays pending', async () => {
    objects.objects.clear();
    expect(await finalize()(notification())).toBe('missing');
    expect(store.docs.get('a1')?.state).toBe('pending');
  });

  it('a message that is not a Storage notification is poison', async () => {
    await expect(finalize()({ attributes: { 'ce-id': 'x' }, data: Buffer.from('{}') })).rejects.toThrow(
      PoisonMessage,
    );
  });

  it('a platform content artifact has no learner subject', async () => {
    store.docs.set(
      'a1',
      pending({ ownerId: 'content-engine', ownerKind: 'platform', instanceId: undefined }),
    );
    await finalize()(notification());
    const { event, orderingKey } = bus.published[0]!;
    expect(orderingKey).toBe('content-engine');
    expect(event.subject).toBeUndefined();
    expect(event.extensions?.['ldr-instance']).toBeUndefined();
  });
});

describe('finalizeArtifact logs (issue 11 #14)', () => {
  it('never logs the client’s filename, whatever the outcome', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'trace' }, { write: (line: string) => lines.push(line) }) as unknown as Logger;
    const run = (m: RawMessage) =>
      createFinalizeArtifact({ store, objects, bus, bucket: 'ldr-artifacts', log, now: () => NOW })(m);
    expect(await run(notification())).toBe('stored');
    expect(await run(notification())).toBe('duplicate');
    store.docs.set('a2', pending({ objectName: 'artifacts/a2/clip.mp4', sha256: 'f'.repeat(64) }));
    objects.objects.set('artifacts/a2/clip.mp4', BYTES);
    expect(
      await run(notification({ objectId: 'artifacts/a2/clip.mp4' }, { name: 'artifacts/a2/clip.mp4' })),
    ).toBe('rejected');
    expect(
      await run(notification({ objectId: 'artifacts/zz/clip.mp4' }, { name: 'artifacts/zz/clip.mp4' })),
    ).toBe('unknown');
    expect(await run(notification({ objectId: 'other/clip.mp4' }, { name: 'other/clip.mp4' }))).toBe(
      'ignored',
    );
    expect(lines).toHaveLength(5);
    for (const line of lines) expect(line).not.toContain('clip.mp4');
    expect(lines.map((l) => JSON.parse(l).artifactId)).toEqual(['a1', 'a1', 'a2', 'zz', undefined]);
  });
});
