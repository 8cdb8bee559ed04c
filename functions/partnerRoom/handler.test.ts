import type { Request } from '@google-cloud/functions-framework';
import { describe, expect, it } from 'vitest';
import type { Principal, Verifier } from '../../shared/auth.ts';
import { toMessage } from '../../shared/cloudevents.ts';
import { HttpError, unauthorized } from '../../shared/errors.ts';
import { TYPES } from '../../shared/events.ts';
import type { Reply, RouteContext } from '../../shared/http.ts';
import { type Partner, partnerSchema } from '../../shared/registry.ts';
import { createPartnerRoom, type PartnerStream, type PulledMessage, structured } from './handler.ts';

// ---------------------------------------------------------------------------------------------
// In-memory fakes of the ports
// ---------------------------------------------------------------------------------------------

const exp = Math.floor(Date.now() / 1000) + 3600;
const principals: Record<string, Principal> = {
  acme: { sub: 'acme-site', role: 'partner', partner: 'acme', permissions: ['partner:pull'], exp },
  bravo: { sub: 'bravo-site', role: 'partner', partner: 'bravo', permissions: ['partner:pull'], exp },
  ghost: { sub: 'ghost-site', role: 'partner', partner: 'ghost', permissions: ['partner:pull'], exp },
  'acme-no-pull': { sub: 'acme-ro', role: 'partner', partner: 'acme', permissions: [], exp },
  platform: { sub: 'svc', role: 'platform', permissions: ['content:publish'], exp },
  'app-claiming-acme': { sub: 'app', role: 'app', instance: 'inst-a', partner: 'acme', permissions: [], exp },
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

const partners: Record<string, Partner> = {
  acme: partnerSchema.parse({
    slug: 'acme',
    displayName: 'ACME Learning',
    instances: ['inst-a'],
    sponsors: ['acme-edu'],
  }),
  bravo: partnerSchema.parse({
    slug: 'bravo',
    displayName: 'Bravo',
    instances: ['inst-b'],
    eventTypes: [TYPES.progress],
  }),
};

/** A queue per partner with Pub/Sub's lease semantics: pulled → outstanding until acked or nacked. */
class FakeStream implements PartnerStream {
  queues = new Map<string, PulledMessage[]>();
  outstanding = new Map<string, PulledMessage>();
  pulls: Array<{ slug: string; max: number; wait?: number }> = [];
  acked: string[] = [];
  push(slug: string, ...msgs: PulledMessage[]) {
    this.queues.set(slug, [...(this.queues.get(slug) ?? []), ...msgs]);
  }
  async pull(slug: string, max: number, wait: number) {
    this.pulls.push({ slug, max, wait });
    const q = this.queues.get(slug) ?? [];
    const out = q.splice(0, max);
    for (const m of out) this.outstanding.set(m.ackId, m);
    return out;
  }
  async ack(_slug: string, ids: string[]) {
    for (const id of ids) this.outstanding.delete(id);
    this.acked.push(...ids);
  }
  async nack(slug: string, ids: string[]) {
    let released = 0;
    for (const id of ids) {
      const m = this.outstanding.get(id);
      this.outstanding.delete(id);
      if (m) {
        this.push(slug, m);
        released++;
      }
    }
    return released;
  }
}

function setup() {
  const stream = new FakeStream();
  // virtual time: a sleep advances it, and runs what was scheduled for that moment
  const clock = {
    t: 0,
    at: [] as Array<[number, () => void]>,
    now: () => clock.t,
    async sleep(ms: number) {
      clock.t += ms;
      for (const [when, f] of clock.at.splice(0))
        if (when <= clock.t) f();
        else clock.at.push([when, f]);
    },
  };
  const sponsoredQueries: string[][] = [];
  const room = createPartnerRoom({
    verifier,
    partners: { get: async (slug) => partners[slug] },
    stream,
    content: {
      async sponsoredBy(sponsors) {
        sponsoredQueries.push(sponsors);
        return sponsors.includes('acme-edu')
          ? [
              {
                contentId: 'lesson-1',
                version: 2,
                sponsor: 'acme-edu',
                instances: ['inst-a', 'inst-z'],
                audience: ['inst-a', 'inst-z'],
                publishedBy: 'content-engine',
                body: { note: 'free text' },
              },
              { contentId: 'nudge', version: 1, kind: 'signal', sponsor: 'acme-edu', studentId: 'stu-1' },
            ]
          : [];
      },
    },
    subscriptionOf: (slug) => `projects/demo-ldr/subscriptions/partner.${slug}.pull`,
    schemaUrl: (slug, type) => `/p/${slug}/schemas/${type}`,
    clock,
  });
  return { room, stream, sponsoredQueries, clock };
}

type Handler = (ctx: RouteContext) => Promise<Reply>;
async function call(
  handler: Handler,
  slug: string,
  opts: { token?: string; body?: unknown; query?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let raw: Buffer | undefined;
  if (opts.body !== undefined) {
    raw = Buffer.from(JSON.stringify(opts.body));
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(raw.length);
  }
  const req = {
    method: 'POST',
    url: `/p/${slug}`,
    headers,
    body: opts.body,
    rawBody: raw,
  } as unknown as Request;
  try {
    return await handler({ req, params: { slug }, query: new URLSearchParams(opts.query ?? '') });
  } catch (err) {
    if (err instanceof HttpError)
      return { status: err.status, body: err.toProblem(), headers: err.extra.headers };
    throw err;
  }
}

const msg = (n: number): PulledMessage => ({
  ackId: `ack-${n}`,
  event: { id: `evt-${n}`, specversion: '1.0' },
});
type Problem = { status: number; detail?: string; errors?: Array<{ path: string; message: string }> };

// ---------------------------------------------------------------------------------------------

describe('partnerRoom: who is served', () => {
  const routes = (room: ReturnType<typeof setup>['room']): Array<[string, Handler, unknown]> => [
    ['manifest', room.manifest, undefined],
    ['pull', room.pull, undefined],
    ['ack', room.ack, { ackIds: ['a'] }],
    ['nack', room.nack, { ackIds: ['a'] }],
    ['content', room.content, undefined],
  ];

  it('401 with WWW-Authenticate without a token, on every route', async () => {
    const { room, stream } = setup();
    for (const [name, h, body] of routes(room)) {
      const r = await call(h, 'acme', { body });
      expect(r.status, name).toBe(401);
      expect(r.headers?.['WWW-Authenticate'], name).toMatch(/^Bearer error="invalid_token"/);
    }
    expect(stream.pulls).toEqual([]);
  });

  it('404 for another partner’s slug, an unknown slug, a non-partner role — one and the same answer', async () => {
    const { room, stream, sponsoredQueries } = setup();
    for (const [name, h, body] of routes(room)) {
      const other = await call(h, 'bravo', { token: 'acme', body });
      const unknown = await call(h, 'bravo', { token: 'ghost', body }); // bravo exists, ghost's token names another slug
      const noRecord = await call(h, 'ghost', { token: 'ghost', body }); // the claim matches, the partner does not exist
      const platform = await call(h, 'acme', { token: 'platform', body });
      const app = await call(h, 'acme', { token: 'app-claiming-acme', body });
      for (const r of [other, unknown, noRecord, platform, app]) expect(r.status, name).toBe(404);
      expect(unknown.body, name).toEqual(other.body);
      // the body depends only on the slug asked for, never on whether that partner exists
      expect(JSON.stringify(noRecord.body).replaceAll('ghost', 'bravo'), name).toBe(
        JSON.stringify(other.body),
      );
      expect(platform.body, name).toEqual(app.body);
    }
    expect(stream.pulls).toEqual([]);
    expect(sponsoredQueries).toEqual([]);
  });
});

describe('partnerRoom: manifest', () => {
  it('names the display name, subscription, event types, schema links and endpoints', async () => {
    const { room } = setup();
    const r = await call(room.manifest, 'bravo', { token: 'bravo' });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      slug: 'bravo',
      displayName: 'Bravo',
      subscription: 'projects/demo-ldr/subscriptions/partner.bravo.pull',
      eventTypes: [TYPES.progress],
      shareContent: false,
      schemas: { [TYPES.progress]: `/p/bravo/schemas/${TYPES.progress}` },
      endpoints: {
        pull: '/p/bravo/pull?max=N&wait=S',
        ack: '/p/bravo/ack',
        nack: '/p/bravo/nack',
        content: '/p/bravo/content',
      },
    });
    const acme = (await call(room.manifest, 'acme', { token: 'acme' })).body as {
      eventTypes: string[];
      schemas: object;
    };
    expect(acme.eventTypes).toHaveLength(4);
    expect(Object.keys(acme.schemas)).toEqual(acme.eventTypes);
    // the manifest never carries instances, sponsors or secrets
    expect(JSON.stringify(acme)).not.toMatch(/inst-a|acme-edu|secret/);
  });
});

describe('partnerRoom: pull, ack, nack', () => {
  it('pulls up to max (default 100) from the partner’s own stream', async () => {
    const { room, stream } = setup();
    stream.push('acme', msg(1), msg(2), msg(3));
    stream.push('bravo', msg(9));
    const r = await call(room.pull, 'acme', { token: 'acme', query: 'max=2' });
    expect(r.status).toBe(200);
    expect((r.body as { messages: PulledMessage[] }).messages.map((m) => m.ackId)).toEqual([
      'ack-1',
      'ack-2',
    ]);
    await call(room.pull, 'acme', { token: 'acme' });
    expect(stream.pulls).toEqual([
      { slug: 'acme', max: 2, wait: 2 },
      { slug: 'acme', max: 100, wait: 2 },
    ]);
  });

  it.each(['0', '501', '-1', '1.5', 'ten', '', '1e2', ' 5'])('400 for max=%j', async (max) => {
    const { room, stream } = setup();
    const r = await call(room.pull, 'acme', { token: 'acme', query: `max=${encodeURIComponent(max)}` });
    expect(r.status).toBe(400);
    expect((r.body as Problem).errors).toEqual([{ path: '/query/max', message: 'must be 1–500' }]);
    expect(stream.pulls).toEqual([]);
  });

  it.each(['1', '500'])('accepts max=%s', async (max) => {
    const { room } = setup();
    expect((await call(room.pull, 'acme', { token: 'acme', query: `max=${max}` })).status).toBe(200);
  });

  it('acked messages are gone, nacked ones come back', async () => {
    const { room, stream } = setup();
    stream.push('acme', msg(1), msg(2));
    await call(room.pull, 'acme', { token: 'acme' });
    const nack = await call(room.nack, 'acme', { token: 'acme', body: { ackIds: ['ack-2'] } });
    expect(nack).toMatchObject({ status: 200, body: { released: 1 } });
    const ack = await call(room.ack, 'acme', { token: 'acme', body: { ackIds: ['ack-1'] } });
    expect(ack).toMatchObject({ status: 200, body: { acknowledged: 1 } });
    const again = await call(room.pull, 'acme', { token: 'acme' });
    expect((again.body as { messages: PulledMessage[] }).messages.map((m) => m.ackId)).toEqual(['ack-2']);
    expect(stream.acked).toEqual(['ack-1']);
  });

  it.each([
    ['no ackIds', {}, ['/ackIds']],
    ['empty list', { ackIds: [] }, ['/ackIds']],
    ['not strings', { ackIds: [1, 'ok', ''] }, ['/ackIds/0', '/ackIds/2']],
    ['unknown fields', { ackIds: ['a'], all: true, force: 1 }, ['/all', '/force']],
    ['too many', { ackIds: Array.from({ length: 1001 }, (_, i) => `a${i}`) }, ['/ackIds']],
  ])('400 for an ack body with %s', async (_name, body, paths) => {
    const { room, stream } = setup();
    for (const h of [room.ack, room.nack]) {
      const r = await call(h, 'acme', { token: 'acme', body });
      expect(r.status).toBe(400);
      expect((r.body as Problem).errors?.map((e) => e.path)).toEqual(paths);
    }
    expect(stream.acked).toEqual([]);
  });

  it('415 for an ack body that is not JSON', async () => {
    const { room } = setup();
    const req = {
      method: 'POST',
      url: '/',
      headers: { authorization: 'Bearer acme', 'content-type': 'text/plain' },
      body: 'ack-1',
    };
    await expect(
      room.ack({ req: req as unknown as Request, params: { slug: 'acme' }, query: new URLSearchParams() }),
    ).rejects.toMatchObject({
      status: 415,
    });
  });
});

describe('partnerRoom: issue 11 #15', () => {
  it('403 for a partner token without partner:pull on pull, ack and nack (the manifest stays readable)', async () => {
    const { room, stream } = setup();
    stream.push('acme', msg(1));
    for (const [h, body] of [
      [room.pull, undefined],
      [room.ack, { ackIds: ['ack-1'] }],
      [room.nack, { ackIds: ['ack-1'] }],
    ] as const) {
      const r = await call(h, 'acme', { token: 'acme-no-pull', body });
      expect(r.status).toBe(403);
      expect((r.body as Problem).detail).toContain('partner:pull');
    }
    expect(stream.pulls).toEqual([]);
    expect((await call(room.manifest, 'acme', { token: 'acme-no-pull' })).status).toBe(200);
  });

  it.each([
    ['pull', 'max=5&limit=3', [['/query/limit', 'unknown parameter']]],
    ['pull', 'max=5&max=6', [['/query/max', 'must be given at most once']]],
    [
      'pull',
      'wait=1&wait=1&x=1&x=2',
      [
        ['/query/wait', 'must be given at most once'],
        ['/query/x', 'unknown parameter'],
      ],
    ],
    ['ack', 'force=1', [['/query/force', 'unknown parameter']]],
    ['nack', 'max=1', [['/query/max', 'unknown parameter']]],
    ['manifest', 'debug=1', [['/query/debug', 'unknown parameter']]],
    ['content', 'all=1', [['/query/all', 'unknown parameter']]],
  ] as const)('%s?%s → 400 naming the parameters', async (route, query, errors) => {
    const { room, stream } = setup();
    const r = await call(room[route], 'acme', { token: 'acme', query, body: { ackIds: ['ack-1'] } });
    expect(r.status).toBe(400);
    expect((r.body as Problem).errors).toEqual(errors.map(([path, message]) => ({ path, message })));
    expect(stream.pulls).toEqual([]);
  });

  it('nack reports only the ack ids it released', async () => {
    const { room, stream } = setup();
    stream.push('acme', msg(1));
    await call(room.pull, 'acme', { token: 'acme' });
    const made = Array.from({ length: 999 }, (_, i) => `made-up-${i}`);
    const r = await call(room.nack, 'acme', { token: 'acme', body: { ackIds: ['ack-1', ...made] } });
    expect(r).toMatchObject({ status: 200, body: { released: 1 } });
  });

  it('wait= bounds the long poll: 0–20 s, default 2', async () => {
    const { room, stream, clock } = setup();
    expect((await call(room.pull, 'acme', { token: 'acme', query: 'wait=0' })).status).toBe(200);
    expect(stream.pulls).toHaveLength(1); // wait=0: one pull
    expect(clock.t).toBe(0);
    const r = await call(room.pull, 'acme', { token: 'acme', query: 'wait=20' });
    expect(r).toMatchObject({ status: 200, body: { messages: [] } });
    expect(clock.t).toBe(20_000); // an empty stream: pulled again every 250 ms until 20 s passed
    expect(stream.pulls).toHaveLength(1 + 1 + 80);
    for (const wait of ['21', '-1', 'x', '', '1.5']) {
      const bad = await call(room.pull, 'acme', { token: 'acme', query: `wait=${encodeURIComponent(wait)}` });
      expect(bad.status, wait).toBe(400);
      expect((bad.body as Problem).errors).toEqual([{ path: '/query/wait', message: 'must be 0–20' }]);
    }
  });

  it('a message that arrives during the wait is answered at once', async () => {
    const { room, stream, clock } = setup();
    clock.at.push([3000, () => stream.push('acme', msg(7))]);
    const r = await call(room.pull, 'acme', { token: 'acme', query: 'wait=10' });
    expect((r.body as { messages: PulledMessage[] }).messages.map((m) => m.ackId)).toEqual(['ack-7']);
    expect(clock.t).toBe(3000);
  });
});

describe('partnerRoom: content', () => {
  it('lists the content sponsored by the partner’s sponsors only', async () => {
    const { room, sponsoredQueries } = setup();
    // no signals, no other partner's instances, no publisher, no body without shareContent (issue 11 #9, #14)
    expect((await call(room.content, 'acme', { token: 'acme' })).body).toEqual({
      content: [
        {
          contentId: 'lesson-1',
          version: 2,
          sponsor: 'acme-edu',
          instances: ['inst-a'],
          audience: ['inst-a'],
        },
      ],
    });
    expect((await call(room.content, 'bravo', { token: 'bravo' })).body).toEqual({ content: [] });
    expect(sponsoredQueries).toEqual([['acme-edu'], []]);
  });
});

describe('structured()', () => {
  it('rebuilds a structured CloudEvent from a binary-mode message', () => {
    const m = toMessage(
      {
        id: 'evt-1',
        source: '/ldr/instances/-',
        type: TYPES.interaction,
        time: '2025-03-10T12:00:00.000Z',
        subject: 'learners/abc',
        data: { learnerRef: 'abc', kind: 'quiz_answer', payload: { score: 0.9 } },
        extensions: { 'ldr-kind': 'quiz_answer', 'ldr-sponsor': 'acme-edu', 'ldr-partner': 'acme' },
      },
      'abc',
    );
    expect(structured(m.attributes, m.data)).toEqual({
      specversion: '1.0',
      id: 'evt-1',
      source: '/ldr/instances/-',
      type: TYPES.interaction,
      time: '2025-03-10T12:00:00.000Z',
      subject: 'learners/abc',
      datacontenttype: 'application/json',
      ldrkind: 'quiz_answer',
      ldrsponsor: 'acme-edu',
      ldrpartner: 'acme',
      data: { learnerRef: 'abc', kind: 'quiz_answer', payload: { score: 0.9 } },
    });
  });

  it('keeps data that is not JSON as data_base64', () => {
    const ev = structured({ 'ce-id': 'x', 'ce-specversion': '1.0' }, Buffer.from([0xff, 0x00, 0x01]));
    expect(ev).toEqual({
      id: 'x',
      specversion: '1.0',
      data_base64: Buffer.from([0xff, 0x00, 0x01]).toString('base64'),
    });
  });
});
