import type { Request } from '@google-cloud/functions-framework';
import { describe, expect, it } from 'vitest';
import type { Principal, Verifier } from '../../shared/auth.ts';
import { type Bus, BusUnavailable } from '../../shared/clients.ts';
import { type LdrEvent, type PubsubMessage, toMessage } from '../../shared/cloudevents.ts';
import { HttpError, unauthorized } from '../../shared/errors.ts';
import { TOPICS, TYPES } from '../../shared/events.ts';
import type { Reply, RouteContext } from '../../shared/http.ts';
import type { ArtifactRecord, Artifacts } from '../../shared/ports.ts';
import { type ContentStore, createPublishContent, type Learners } from './handler.ts';

// ---------------------------------------------------------------------------------------------
// In-memory fakes of the ports
// ---------------------------------------------------------------------------------------------

const NOW = new Date('2025-03-10T12:00:00Z');
const exp = Math.floor(NOW.getTime() / 1000) + 3600;

const principals: Record<string, Principal> = {
  platform: { sub: 'content-engine', role: 'platform', permissions: ['content:publish'], exp },
  'platform-no-perm': { sub: 'memory', role: 'platform', permissions: ['progress:read'], exp },
  app: { sub: 'app-a', role: 'app', instance: 'inst-a', permissions: ['content:publish'], exp },
  partner: { sub: 'p', role: 'partner', partner: 'acme', permissions: ['content:publish'], exp },
  student: { sub: 'stu-1', role: 'student', permissions: ['content:publish'], exp },
};
const verifier: Verifier = {
  async verify(h) {
    const m = /^Bearer (.+)$/.exec(h ?? '');
    if (!m) throw unauthorized('missing bearer token');
    const p = principals[m[1]!];
    if (!p) throw unauthorized('invalid token');
    return p;
  },
};

class FakeBus implements Bus {
  published: Array<{ topic: string; event: LdrEvent; orderingKey?: string }> = [];
  down = false;
  async publish(topic: string, event: LdrEvent, orderingKey?: string) {
    if (this.down) throw new BusUnavailable(`publish to ${topic} failed: 14 UNAVAILABLE`);
    this.published.push({ topic, event, orderingKey });
    return String(this.published.length);
  }
  async publishRaw(_t: string, _m: PubsubMessage): Promise<string> {
    throw new Error('publishContent publishes CloudEvents');
  }
}

type Stored = Parameters<ContentStore['putIfNewer']>[0];
class FakeStore implements ContentStore {
  docs = new Map<string, Stored>();
  async putIfNewer(c: Stored) {
    const cur = this.docs.get(c.contentId);
    if (cur && cur.version >= c.version) return false;
    this.docs.set(c.contentId, c);
    return true;
  }
}

class FakeLearners implements Learners {
  constructor(private where: Record<string, string>) {}
  async instanceOf(id: string) {
    return this.where[id];
  }
}

class FakeArtifacts implements Artifacts {
  constructor(private records: Record<string, ArtifactRecord>) {}
  async get(id: string) {
    return this.records[id];
  }
}

function setup() {
  const bus = new FakeBus();
  const store = new FakeStore();
  const publish = createPublishContent({
    verifier,
    bus,
    store,
    learners: new FakeLearners({ 'stu-1': 'inst-a' }),
    artifacts: new FakeArtifacts({
      'art-ok': { state: 'stored', ownerId: 'content-engine', ownerKind: 'platform' },
      'art-pending': { state: 'pending', ownerId: 'content-engine', ownerKind: 'platform' },
      'art-bad': { state: 'rejected', ownerId: 'content-engine', ownerKind: 'platform' },
    }),
    now: () => NOW,
  });
  const call = async (body: unknown, token: string | null = 'platform'): Promise<Reply> => {
    const raw = Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'content-length': String(raw.length),
    };
    if (token) headers.authorization = `Bearer ${token}`;
    const req = { method: 'POST', url: '/', headers, body, rawBody: raw } as unknown as Request;
    const ctx: RouteContext = { req, params: {}, query: new URLSearchParams() };
    try {
      return await publish(ctx);
    } catch (err) {
      if (err instanceof HttpError)
        return { status: err.status, body: err.toProblem(), headers: err.extra.headers };
      throw err;
    }
  };
  return { call, bus, store };
}

const lesson = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  contentId: 'lesson-1',
  version: 1,
  kind: 'lesson',
  title: 'Loops in Python',
  topic: 'python.loops',
  ...over,
});

type Problem = { status: number; detail?: string; errors?: Array<{ path: string; message: string }> };
const problem = (r: Reply) => r.body as Problem;
const paths = (r: Reply) => (problem(r).errors ?? []).map((e) => e.path).sort();

// ---------------------------------------------------------------------------------------------

describe('publishContent: who may publish', () => {
  it('401 without a token', async () => {
    const { call, bus } = setup();
    const r = await call(lesson(), null);
    expect(r.status).toBe(401);
    expect(r.headers?.['WWW-Authenticate']).toMatch(/^Bearer error="invalid_token"/);
    expect(bus.published).toEqual([]);
  });

  it.each(['app', 'partner', 'student'])('403 for a %s token, even with content:publish', async (t) => {
    const { call, bus } = setup();
    expect((await call(lesson(), t)).status).toBe(403);
    expect(bus.published).toEqual([]);
  });

  it('403 for a platform token without content:publish', async () => {
    const { call } = setup();
    const r = await call(lesson(), 'platform-no-perm');
    expect(r.status).toBe(403);
    expect(problem(r).detail).toContain('content:publish');
  });
});

describe('publishContent: validation', () => {
  it('names every offending field, unknown ones included', async () => {
    const { call, bus } = setup();
    const r = await call({
      contentId: 'bad id!',
      version: 0,
      kind: 'podcast',
      title: '',
      topic: 'Python',
      color: 'red',
      extra: 1,
    });
    expect(r.status).toBe(400);
    expect(paths(r)).toEqual(['/color', '/contentId', '/extra', '/kind', '/title', '/topic', '/version']);
    expect(problem(r).errors?.find((e) => e.path === '/color')?.message).toMatch(/unrecognized|unknown/i);
    expect(bus.published).toEqual([]);
  });

  it('refuses bodies Firestore cannot store, naming the place', async () => {
    const { call, bus } = setup();
    let deep: unknown = 1;
    for (let i = 0; i < 20; i++) deep = { a: deep };
    const base = { contentId: 'c1', version: 1, kind: 'lesson', title: 'T', topic: 'python' };
    const cases: Array<[unknown, string]> = [
      [deep, '/body/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a'],
      [{ list: [[1]] }, '/body/list/0'],
      [{ __name__: 1 }, '/body/__name__'],
    ];
    for (const [body, path] of cases) {
      const r = await call({ ...base, body });
      expect(r.status).toBe(400);
      expect(paths(r)).toEqual([path]);
    }
    expect(bus.published).toEqual([]);
  });

  it('names missing required fields', async () => {
    const { call } = setup();
    const r = await call({ contentId: 'x' });
    expect(r.status).toBe(400);
    expect(paths(r)).toEqual(['/kind', '/title', '/topic', '/version']);
  });

  it('a signal needs studentId, no instances; other kinds take no studentId', async () => {
    const { call } = setup();
    expect(paths(await call(lesson({ kind: 'signal' })))).toEqual(['/studentId']);
    expect(paths(await call(lesson({ kind: 'signal', studentId: 'stu-1', instances: ['inst-b'] })))).toEqual([
      '/instances',
    ]);
    expect(paths(await call(lesson({ studentId: 'stu-1' })))).toEqual(['/studentId']);
  });

  it('400 for a signal to a learner the room does not know', async () => {
    const { call, bus } = setup();
    const r = await call(lesson({ kind: 'signal', studentId: 'stu-unknown' }));
    expect(r.status).toBe(400);
    expect(problem(r).errors).toEqual([{ path: '/studentId', message: 'unknown learner' }]);
    expect(bus.published).toEqual([]);
  });

  it('artifacts must exist and be stored', async () => {
    const { call, bus } = setup();
    const r = await call(
      lesson({ artifacts: ['lfs://art-ok', 'lfs://art-pending', 'lfs://nope', 'lfs://art-bad', 'http://x'] }),
    );
    expect(r.status).toBe(400);
    expect(paths(r)).toEqual(['/artifacts/4']);
    const r2 = await call(
      lesson({ artifacts: ['lfs://art-ok', 'lfs://art-pending', 'lfs://nope', 'lfs://art-bad'] }),
    );
    expect(r2.status).toBe(400);
    expect(problem(r2).errors).toEqual([
      { path: '/artifacts/1', message: 'artifact is pending, not stored' },
      { path: '/artifacts/2', message: 'no such artifact' },
      { path: '/artifacts/3', message: 'artifact is rejected, not stored' },
    ]);
    expect(bus.published).toEqual([]);
    expect((await call(lesson({ artifacts: ['lfs://art-ok'] }))).status).toBe(202);
  });

  it('413 for a body over 32 KiB, pointing to lfsProxy', async () => {
    const { call, bus } = setup();
    const r = await call(lesson({ body: { markdown: 'x'.repeat(33 * 1024) } }));
    expect(r.status).toBe(413);
    expect(problem(r).detail).toMatch(/lfsProxy/);
    expect(problem(r).errors).toEqual([{ path: '/body', message: 'must be at most 32 KiB' }]);
    expect(bus.published).toEqual([]);
    expect((await call(lesson({ body: { markdown: 'x'.repeat(31 * 1024) } }))).status).toBe(202);
  });
});

describe('publishContent: the event', () => {
  it('content for all instances: ce-id contentId@version, ordering key contentId, ldr-audience all', async () => {
    const { call, bus, store } = setup();
    const r = await call(lesson({ version: 3, sponsor: 'acme-edu', body: { markdown: '# loops' } }));
    expect(r.status).toBe(202);
    expect(r.body).toEqual({
      id: 'lesson-1@3',
      contentId: 'lesson-1',
      version: 3,
      audience: 'all',
      stored: true,
    });
    expect(bus.published).toHaveLength(1);
    const [p] = bus.published;
    expect(p!.topic).toBe(TOPICS.content);
    expect(p!.orderingKey).toBe('lesson-1');
    const msg = toMessage(p!.event, p!.orderingKey);
    expect(msg.attributes).toEqual({
      'ce-specversion': '1.0',
      'ce-id': 'lesson-1@3',
      'ce-source': '/ldr/functions/publishContent',
      'ce-type': TYPES.content,
      'ce-time': NOW.toISOString(),
      'ce-subject': 'content/lesson-1',
      'content-type': 'application/json',
      'ldr-kind': 'lesson',
      'ldr-sponsor': 'acme-edu',
      'ldr-audience': 'all',
    });
    expect(JSON.parse(msg.data.toString())).toMatchObject({
      contentId: 'lesson-1',
      version: 3,
      audience: 'all',
      body: { markdown: '# loops' },
    });
    expect(store.docs.get('lesson-1')).toMatchObject({
      version: 3,
      audience: 'all',
      publishedBy: 'content-engine',
      publishedAt: NOW.toISOString(),
    });
  });

  it('content for listed instances carries one ldr-to-<id> attribute per instance', async () => {
    const { call, bus } = setup();
    const r = await call(lesson({ instances: ['inst-a', 'inst-b'] }));
    expect(r.status).toBe(202);
    const { attributes } = toMessage(bus.published[0]!.event);
    expect(attributes['ldr-audience']).toBe('list');
    expect(attributes['ldr-to-inst-a']).toBe('1');
    expect(attributes['ldr-to-inst-b']).toBe('1');
    expect(Object.keys(attributes).filter((k) => k.startsWith('ldr-to-'))).toHaveLength(2);
    expect(attributes['ldr-instance']).toBeUndefined();
    expect(attributes['ldr-sponsor']).toBeUndefined();
  });

  it('a signal goes to its learner’s instance, subject students/<id>', async () => {
    const { call, bus } = setup();
    const r = await call(lesson({ contentId: 'nudge-1', kind: 'signal', studentId: 'stu-1' }));
    expect(r.status).toBe(202);
    expect((r.body as { audience: unknown }).audience).toEqual(['inst-a']);
    const { attributes, orderingKey } = toMessage(bus.published[0]!.event, bus.published[0]!.orderingKey);
    expect(attributes).toMatchObject({
      'ce-id': 'nudge-1@1',
      'ce-subject': 'students/stu-1',
      'ldr-kind': 'signal',
      'ldr-audience': 'list',
      'ldr-to-inst-a': '1',
      'ldr-instance': 'inst-a',
    });
    expect(orderingKey).toBe('nudge-1');
  });

  it('republishes an older or equal version (retry after a failed publish) without storing it', async () => {
    const { call, bus, store } = setup();
    await call(lesson({ version: 2 }));
    const r = await call(lesson({ version: 2 }));
    expect(r.status).toBe(202);
    expect((r.body as { stored: boolean }).stored).toBe(false);
    expect(bus.published.map((p) => p.event.id)).toEqual(['lesson-1@2', 'lesson-1@2']);
    expect(store.docs.get('lesson-1')?.version).toBe(2);
  });

  it('503 with Retry-After when the bus is down', async () => {
    const { call, bus } = setup();
    bus.down = true;
    const r = await call(lesson());
    expect(r.status).toBe(503);
    expect(r.headers?.['Retry-After']).toBe('2');
    bus.down = false;
    expect((await call(lesson())).status).toBe(202);
  });
});
