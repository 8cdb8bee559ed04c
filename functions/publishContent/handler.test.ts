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

type Stored = Parameters<ContentStore['record']>[0];
class FakeStore implements ContentStore {
  docs = new Map<string, Stored>();
  versions = new Map<string, { fingerprint: string; publishedAt: string; sent: boolean }>();
  async record(c: Stored, fingerprint: string) {
    const key = `${c.contentId}@${c.version}`;
    const v = this.versions.get(key);
    if (v) {
      const state = v.fingerprint !== fingerprint ? 'conflict' : v.sent ? 'sent' : 'unsent';
      return { state: state as 'conflict' | 'sent' | 'unsent', publishedAt: v.publishedAt };
    }
    this.versions.set(key, { fingerprint, publishedAt: c.publishedAt, sent: false });
    const cur = this.docs.get(c.contentId);
    if (!cur || cur.version < c.version) this.docs.set(c.contentId, c);
    return { state: 'new' as const, publishedAt: c.publishedAt };
  }
  async markSent(contentId: string, version: number) {
    this.versions.get(`${contentId}@${version}`)!.sent = true;
  }
}

class FakeLearners implements Learners {
  constructor(private where: Record<string, string[]>) {}
  async instancesOf(id: string) {
    return this.where[id] ?? [];
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
  let clock = NOW.getTime();
  const publish = createPublishContent({
    verifier,
    bus,
    store,
    instances: {
      async known(ids) {
        return new Set(ids.filter((i) => ['inst-a', 'inst-b', 'inst-c'].includes(i)));
      },
    },
    learners: new FakeLearners({ 'stu-1': ['inst-a', 'inst-c'] }),
    artifacts: new FakeArtifacts({
      'art-ok': { state: 'stored', ownerId: 'content-engine', ownerKind: 'platform' },
      'art-pending': { state: 'pending', ownerId: 'content-engine', ownerKind: 'platform' },
      'art-bad': { state: 'rejected', ownerId: 'content-engine', ownerKind: 'platform' },
    }),
    // every request a second later, so a republished event would show another time
    now: () => {
      clock += 1000;
      return new Date(clock - 1000);
    },
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

  it('a signal needs studentId and names its instances; other kinds take no studentId', async () => {
    const { call } = setup();
    expect(paths(await call(lesson({ kind: 'signal' })))).toEqual(['/instances', '/studentId']);
    expect(paths(await call(lesson({ kind: 'signal', studentId: 'stu-1' })))).toEqual(['/instances']);
    expect(paths(await call(lesson({ studentId: 'stu-1' })))).toEqual(['/studentId']);
  });

  it('400 for a signal to a learner the room does not know', async () => {
    const { call, bus } = setup();
    const r = await call(lesson({ kind: 'signal', studentId: 'stu-unknown', instances: ['inst-a'] }));
    expect(r.status).toBe(400);
    expect(problem(r).errors).toEqual([{ path: '/studentId', message: 'unknown learner' }]);
    expect(bus.published).toEqual([]);
  });

  it('a signal goes only to instances the learner’s interactions came through (issue 11 #2)', async () => {
    const { call, bus } = setup();
    const r = await call(lesson({ kind: 'signal', studentId: 'stu-1', instances: ['inst-a', 'inst-b'] }));
    expect(r.status).toBe(400);
    expect(problem(r).errors).toEqual([
      { path: '/instances/1', message: 'the learner has no interactions through this instance' },
    ]);
    expect(bus.published).toEqual([]);
  });

  it('unknown or repeated instances are a 400 naming each index (issue 11 #10)', async () => {
    const { call, bus } = setup();
    const r = await call(lesson({ instances: ['inst-a', 'inst-nope', 'inst-b', 'inst-a', 'inst-gone'] }));
    expect(r.status).toBe(400);
    expect(problem(r).errors).toEqual([
      { path: '/instances/1', message: 'no such app-instance' },
      { path: '/instances/3', message: 'listed more than once' },
      { path: '/instances/4', message: 'no such app-instance' },
    ]);
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
      status: 'published',
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

  it('a signal goes to the instance it names, subject students/<id>', async () => {
    const { call, bus } = setup();
    const r = await call(
      lesson({ contentId: 'nudge-1', kind: 'signal', studentId: 'stu-1', instances: ['inst-a'] }),
    );
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
});

describe('publishContent: a version is immutable (issue 11 #10)', () => {
  it('the same version with the same data is answered as already published and not sent again', async () => {
    const { call, bus } = setup();
    expect((await call(lesson({ version: 2, body: { a: 1, b: [1, 2] } }))).status).toBe(202);
    // same data, keys in another order
    const again = await call({ body: { b: [1, 2], a: 1 }, ...lesson({ version: 2 }) });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ id: 'lesson-1@2', status: 'already_published' });
    expect(bus.published.map((p) => p.event.id)).toEqual(['lesson-1@2']);
  });

  it('the same version with other data is a 409 and nothing is sent', async () => {
    const { call, bus, store } = setup();
    expect((await call(lesson({ version: 2 }))).status).toBe(202);
    const r = await call(lesson({ version: 2, title: 'A new title' }));
    expect(r.status).toBe(409);
    expect(problem(r).errors).toEqual([{ path: '/version', message: 'already published with other data' }]);
    expect(bus.published).toHaveLength(1);
    expect(store.docs.get('lesson-1')?.title).toBe('Loops in Python');
  });

  it('an older version may still be published once; the catalogue keeps the newest', async () => {
    const { call, store } = setup();
    expect((await call(lesson({ version: 3 }))).status).toBe(202);
    expect((await call(lesson({ version: 2 }))).status).toBe(202);
    expect(store.docs.get('lesson-1')?.version).toBe(3);
  });

  it('a retry after a failed publish sends the recorded event once, with its first time', async () => {
    const { call, bus } = setup();
    bus.down = true;
    expect((await call(lesson())).status).toBe(503);
    bus.down = false;
    expect((await call(lesson())).status).toBe(202);
    expect((await call(lesson())).status).toBe(200);
    expect(bus.published).toHaveLength(1);
    expect(bus.published[0]!.event.time).toBe(NOW.toISOString());
  });

  it('503 with Retry-After when the bus is down', async () => {
    const { call, bus } = setup();
    bus.down = true;
    const r = await call(lesson());
    expect(r.status).toBe(503);
    expect(r.headers?.['Retry-After']).toBe('2');
    bus.down = false;
    expect((await call(lesson())).status).toBe(202);
    expect(bus.published).toHaveLength(1);
  });
});
