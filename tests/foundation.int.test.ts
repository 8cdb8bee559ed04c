import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Ratelimit } from '@upstash/ratelimit';
import { Redis } from '@upstash/redis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBridge } from '../emulators/bridge.ts';
import { createVerifier } from '../shared/auth.ts';
import { createLogger } from '../shared/log.ts';
import { loadTopology } from '../shared/topology.ts';
import { eventually, fnUrl, pubsubClient, suite, tap, token } from './helpers.ts';

const topology = loadTopology();

describe('functions host', () => {
  it.each(topology.functions.filter((f) => f.trigger === 'https').map((f) => f.name))(
    '%s answers /healthz with its dependencies',
    async (name) => {
      // a cold instance may need a moment for its first dependency checks
      const res = await eventually(
        async () => {
          const r = await fetch(fnUrl(name, '/healthz'));
          return r.status === 200 ? r : undefined;
        },
        30_000,
        `${name} healthy`,
      );
      const body = await res.json();
      expect(body.status).toBe('ok');
      expect(Object.values(body.dependencies).every((s) => s === 'ok')).toBe(true);
    },
  );

  it('every Pub/Sub function takes a documented push body at its local URL', async () => {
    for (const f of topology.functions.filter((x) => x.trigger === 'pubsub')) {
      // unreadable data: the function's own code dead-letters it and acknowledges (2xx); a function that
      // did not load would answer 404/503, a crashing handler 500
      const res = await fetch(`${fnUrl(f.name)}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          message: {
            data: Buffer.from('not json').toString('base64'),
            attributes: {},
            messageId: `probe-${f.name}`,
          },
          subscription: 'projects/demo-ldr/subscriptions/probe',
          deliveryAttempt: 1,
        }),
      });
      expect(res.status, f.name).toBeLessThan(300);
    }
  });

  it('unknown functions and paths are 404 problem+json', async () => {
    const res = await fetch(`${suite().functionsBase}/noSuchFunction/`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });

  it('malformed JSON is a 400 problem naming the body, never a 5xx', async () => {
    const res = await fetch(fnUrl('publishContent'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"broken":',
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect((await res.json()).errors[0].path).toBe('/');
  });
});

describe('pub/sub bridge', () => {
  const pubsub = pubsubClient();
  const received: Array<{ headers: http.IncomingHttpHeaders; body: any }> = [];
  let failFor = new Set<string>();
  let server: http.Server;
  let bridge: ReturnType<typeof startBridge>;
  const topic = `test.bridge.${randomUUID()}`;
  const subName = `fn.probe.${randomUUID()}`;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let raw = '';
      req.on('data', (c) => (raw += c));
      req.on('end', () => {
        const body = JSON.parse(raw);
        received.push({ headers: req.headers, body });
        const data = Buffer.from(body.message.data, 'base64').toString();
        res.statusCode = failFor.has(data) ? 500 : 204;
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    await pubsub.createTopic(topic);
    await pubsub.topic(topic).createSubscription(subName, { enableMessageOrdering: true });
    const port = (server.address() as AddressInfo).port;
    bridge = startBridge({
      pubsub,
      projectId: suite().projectId,
      log: createLogger('test-bridge', 'silent'),
      topology: { ...topology, subscriptions: [{ name: subName, topic, ordered: true, function: 'probe' }] },
      targetOf: () => `http://127.0.0.1:${port}/`,
      minBackoffMs: 50,
      maxBackoffMs: 200,
    });
  });

  afterAll(async () => {
    await bridge.stop();
    server.close();
    await pubsub.close();
  });

  it('delivers ordered messages per key in order, as the documented Pub/Sub push body', async () => {
    const t = pubsub.topic(topic, { messageOrdering: true });
    const keys = ['student-a', 'student-b'];
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) {
      const key = keys[i % 2]!;
      sent.push(`${key}:${i}`);
      await t.publishMessage({
        data: Buffer.from(`${key}:${i}`),
        orderingKey: key,
        attributes: { 'ce-id': `e${i}` },
      });
    }
    await eventually(async () => (received.length >= 20 ? true : undefined), 20_000, '20 deliveries');
    for (const key of keys) {
      const got = received
        .map((r) => Buffer.from(r.body.message.data, 'base64').toString())
        .filter((d) => d.startsWith(key));
      expect(got).toEqual(sent.filter((d) => d.startsWith(key)));
    }
    const first = received[0]!;
    // a plain push: JSON body, no CloudEvents headers, nothing undocumented
    expect(first.headers['content-type']).toBe('application/json');
    expect(Object.keys(first.headers).filter((h) => h.startsWith('ce-'))).toEqual([]);
    expect(Object.keys(first.body).sort()).toEqual(['deliveryAttempt', 'message', 'subscription']);
    expect(first.body.message.publishTime).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(first.body.subscription).toBe(`projects/${suite().projectId}/subscriptions/${subName}`);
    expect(first.body.deliveryAttempt).toBe(1);
    expect(keys).toContain(first.body.message.orderingKey);
    expect(first.body.message.attributes['ce-id']).toMatch(/^e\d+$/);
    expect(first.body.message.messageId).toBeTruthy();
  });

  it('retries a failing delivery with increasing attempts, then forwards it to the dead-letter topic as Pub/Sub does', async () => {
    const dl = await tap(pubsub, topology.deadLetterTopic);
    try {
      const payload = `poison-${randomUUID()}`;
      failFor = new Set([payload]);
      await pubsub
        .topic(topic, { messageOrdering: true })
        .publishMessage({ data: Buffer.from(payload), orderingKey: 'student-c', attributes: { a: '1' } });
      const msg = await eventually(
        async () => dl.received.find((m) => m.data.toString() === payload),
        30_000,
        'the dead-lettered message',
      );
      const attempts = received
        .filter((r) => Buffer.from(r.body.message.data, 'base64').toString() === payload)
        .map((r) => r.body.deliveryAttempt);
      expect(attempts).toEqual([1, 2, 3, 4, 5]);
      // data and attributes unchanged, plus exactly Pub/Sub's own dead-letter attributes
      expect(msg.attributes).toEqual({
        a: '1',
        CloudPubSubDeadLetterSourceDeliveryCount: '5',
        CloudPubSubDeadLetterSourceSubscription: subName,
        CloudPubSubDeadLetterSourceSubscriptionProject: suite().projectId,
        CloudPubSubDeadLetterSourceTopicPublishTime: expect.stringMatching(/^\d{4}-/),
      });
      // the key is not stuck: a later message of the same key is delivered
      failFor = new Set();
      await pubsub
        .topic(topic, { messageOrdering: true })
        .publishMessage({ data: Buffer.from('after'), orderingKey: 'student-c' });
      await eventually(
        async () => received.find((r) => Buffer.from(r.body.message.data, 'base64').toString() === 'after'),
        10_000,
        'the next message on the key',
      );
    } finally {
      await dl.close();
    }
  });
});

describe('redis behind the Upstash REST endpoint', () => {
  it('@upstash/ratelimit denies past its limit', async () => {
    const env = suite().env;
    const redis = new Redis({ url: env.UPSTASH_REDIS_REST_URL!, token: env.UPSTASH_REDIS_REST_TOKEN! });
    const limiter = new Ratelimit({
      redis,
      limiter: Ratelimit.slidingWindow(3, '60 s'),
      prefix: `t-${randomUUID()}`,
    });
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await limiter.limit('student-1'));
    expect(results.map((r) => r.success)).toEqual([true, true, true, false]);
    expect(results[3]!.remaining).toBe(0);
    expect(results[3]!.reset).toBeGreaterThan(Date.now());
  });
});

describe('postgres', () => {
  it('has the migrations applied', async () => {
    const client = new pg.Client(suite().env.DATABASE_URL);
    await client.connect();
    try {
      const { rows } = await client.query('SELECT name FROM schema_migrations ORDER BY name');
      expect(rows.map((r) => r.name)).toContain('001_init.sql');
      const tables = await client.query(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`,
      );
      expect(tables.rows.map((r) => r.table_name)).toEqual(
        expect.arrayContaining([
          'interactions',
          'mastery_snapshots',
          'struggle_alerts',
          'topic_state',
          'outbox',
        ]),
      );
    } finally {
      await client.end();
    }
  });
});

describe('dev identity', () => {
  const env = () => suite().env;
  const verifier = () =>
    createVerifier({
      jwks: new URL(env().JWKS_URL!),
      issuer: env().JWT_ISSUER!,
      audience: env().JWT_AUDIENCE!,
      revocations: { isRevoked: async () => false },
    });

  it('a minted token verifies against the served JWKS', async () => {
    const t = await token({ sub: 'learner-1', role: 'student' });
    const p = await verifier().verify(`Bearer ${t}`);
    expect(p.sub).toBe('learner-1');
    expect(p.role).toBe('student');
    expect(p.permissions).toContain('interaction:write');
  });

  it('npm run token prints a token that verifies', async () => {
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'scripts/token.ts',
        '--sub',
        'app-1',
        '--role',
        'app',
        '--instance',
        'inst-1',
        '--data-dir',
        suite().dataDir,
      ],
      { encoding: 'utf8' },
    ).trim();
    const p = await verifier().verify(`Bearer ${out}`);
    expect(p).toMatchObject({ sub: 'app-1', role: 'app', instance: 'inst-1' });
  });
});
