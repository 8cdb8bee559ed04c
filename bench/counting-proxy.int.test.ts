import { randomUUID } from 'node:crypto';
import { Firestore } from '@google-cloud/firestore';
import { PubSub } from '@google-cloud/pubsub';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createBus } from '../shared/clients.ts';
import { type LdrEvent, toMessage } from '../shared/cloudevents.ts';
import {
  type CountingProxies,
  type Counts,
  type CountsSnapshot,
  countsDelta,
  startCountingProxies,
} from './counting-proxy.ts';

/**
 * The bench's counting proxies in front of the suite's real emulators and PostgreSQL, driven by the official
 * clients and `pg`: every call goes through unchanged (results and error codes), and is counted as
 * production bills it.
 */
const suite = inject('suite');
let proxies: CountingProxies;
beforeAll(async () => {
  proxies = await startCountingProxies({
    upstreams: {
      pubsub: suite.ports.pubsub!,
      firestore: suite.ports.firestore!,
      postgres: suite.ports.postgres!,
    },
    labels: ['fn', 'other'],
  });
});
afterAll(() => proxies?.stop());

const fnCounts = () => proxies.stats().byLabel.fn!;
/** the counts a step added (gRPC calls are counted when they close: polled with a deadline) */
async function counted(step: () => Promise<unknown>, settled: (d: Counts) => boolean = () => true) {
  const before = fnCounts();
  await step();
  let d = countsDelta(before, fnCounts());
  const deadline = Date.now() + 5_000;
  while (!settled(d) && Date.now() < deadline) {
    await new Promise((r) => setImmediate(r));
    d = countsDelta(before, fnCounts());
  }
  return d;
}

describe('counting proxies', () => {
  it('Pub/Sub: each publish request, its messages and billable bytes; one ordering key per request', async () => {
    const pubsub = new PubSub({
      projectId: suite.projectId,
      apiEndpoint: `127.0.0.1:${proxies.ports.fn!.pubsub}`,
    });
    const topic = `counts-${randomUUID()}`;
    await pubsub.createTopic(topic);
    const [sub] = await pubsub
      .topic(topic)
      .createSubscription(`${topic}-sub`, { enableMessageOrdering: true });
    const bus = createBus(pubsub, 10_000, (_t, k) => k);
    const event = (key: string, i: number) =>
      ({
        id: `${key}-${i}`,
        source: 'urn:test',
        type: 'learnflow.test.v1',
        time: new Date().toISOString(),
        data: { i },
      }) as LdrEvent;
    try {
      const keys = ['k1', 'k2', 'k3', 'k4'];
      // one after another: every message its own request
      const seq = await counted(
        async () => {
          for (let i = 0; i < 8; i++) await bus.publish(topic, event(keys[i % 4]!, i), keys[i % 4]);
        },
        (d) => d.pubsub.publishRequests >= 8,
      );
      expect(seq.pubsub).toMatchObject({ publishRequests: 8, messages: 8, failedRequests: 0 });
      expect(seq.grpc['/google.pubsub.v1.Publisher/Publish']).toMatchObject({ requests: 8, failed: 0 });
      expect(seq.pubsub.billableBytes).toBe(8 * 1000); // small messages: the minimum per request
      expect(seq.pubsub.requestBytes).toBe(seq.grpc['/google.pubsub.v1.Publisher/Publish']!.requestBytes);
      expect(seq.pubsub.requestBytes / 8).toBeGreaterThan(toMessage(event('k1', 0), 'k1').data.length);
      // at once: the batcher puts each key's messages in one request, never two keys in one
      const burst = await counted(
        () =>
          Promise.all(
            Array.from({ length: 12 }, (_, i) => bus.publish(topic, event(keys[i % 4]!, i), keys[i % 4])),
          ),
        (d) => d.pubsub.messages >= 12,
      );
      expect(burst.pubsub).toMatchObject({ publishRequests: 4, messages: 12 });
      // a refused publish (no such topic) is passed back and counted apart: not billed
      const refused = await counted(
        () =>
          expect(bus.publish(`${topic}-missing`, event('k1', 99), 'k1')).rejects.toThrow(
            /NOT_FOUND|not found/i,
          ),
        (d) => d.pubsub.failedRequests >= 1,
      );
      expect(refused.pubsub).toMatchObject({
        publishRequests: 0,
        messages: 0,
        billableBytes: 0,
        failedRequests: 1,
      });
      // forwarded unchanged: all 20 arrive, in order per key
      // (the subscriber's streaming pull goes through the proxy too)
      const got: Record<string, number[]> = {};
      sub.on('message', (m) => {
        const k = m.orderingKey ?? '';
        got[k] = [...(got[k] ?? []), (JSON.parse(m.data.toString()) as { i: number }).i];
        m.ack();
      });
      await expect.poll(() => Object.values(got).flat().length, { timeout: 10_000 }).toBe(20);
      expect(got).toEqual(Object.fromEntries(keys.map((k, j) => [k, [j, j + 4, j, j + 4, j + 8]])));
    } finally {
      await sub.close();
      await pubsub.close();
    }
  });

  it('Firestore: a read per document returned or missing, a write per committed Write, errors pass through', async () => {
    const db = new Firestore({
      projectId: suite.projectId,
      host: `127.0.0.1:${proxies.ports.fn!.firestore}`,
      ssl: false,
    });
    const col = db.collection(`counts-${randomUUID()}`);
    try {
      const create = await counted(
        () => col.doc('a').create({ v: 1 }),
        (d) => d.firestore.writes >= 1,
      );
      expect(create.firestore).toEqual({ reads: 0, writes: 1, deletes: 0 });
      const get = await counted(
        () => col.doc('a').get(),
        (d) => d.firestore.reads >= 1,
      );
      expect(get.firestore).toEqual({ reads: 1, writes: 0, deletes: 0 });
      const missing = await counted(
        async () => {
          expect((await col.doc('nope').get()).exists).toBe(false);
        },
        (d) => d.firestore.reads >= 1,
      );
      expect(missing.firestore.reads).toBe(1);
      // the emulator's error code comes back through the proxy; a refused commit writes nothing
      const refused = await counted(
        () => expect(col.doc('a').create({ v: 2 })).rejects.toMatchObject({ code: 6 }),
        (d) => (d.grpc['/google.firestore.v1.Firestore/Commit']?.failed ?? 0) >= 1,
      );
      expect(refused.firestore.writes).toBe(0);
      expect(refused.grpc['/google.firestore.v1.Firestore/Commit']).toMatchObject({ requests: 1, failed: 1 });
      const batch = await counted(
        async () => {
          const b = db.batch();
          b.set(col.doc('b'), { v: 1 });
          b.set(col.doc('c'), { v: 1 });
          b.delete(col.doc('a'));
          await b.commit();
        },
        (d) => d.firestore.writes + d.firestore.deletes >= 3,
      );
      expect(batch.firestore).toEqual({ reads: 0, writes: 2, deletes: 1 });
      const query = await counted(
        () => col.get(),
        (d) => d.firestore.reads >= 2,
      );
      expect(query.firestore.reads).toBe(2);
      const empty = await counted(
        () => col.where('v', '==', 99).get(),
        (d) => d.firestore.reads >= 1,
      );
      expect(empty.firestore.reads).toBe(1); // an empty query bills one read
      const tx = await counted(
        () =>
          db.runTransaction(async (t) => {
            const s = await t.get(col.doc('b'));
            t.update(col.doc('b'), { v: Number(s.get('v')) + 1 });
          }),
        (d) => d.firestore.writes >= 1,
      );
      expect(tx.firestore).toEqual({ reads: 1, writes: 1, deletes: 0 });
      expect((await col.doc('b').get()).get('v')).toBe(2);
    } finally {
      await db.terminate();
    }
  });

  it('PostgreSQL: one round trip per simple or extended query, statements of a transaction each', async () => {
    const url = new URL(suite.env.DATABASE_URL!);
    url.port = String(proxies.ports.fn!.postgres);
    const client = new pg.Client(url.toString());
    await client.connect();
    try {
      const rt = () => fnCounts().postgres.roundTrips;
      let before = rt();
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect(rt() - before).toBe(1);
      before = rt();
      expect((await client.query('SELECT $1::int AS two', [2])).rows).toEqual([{ two: 2 }]);
      expect(rt() - before).toBe(1);
      before = rt();
      const types = { ...fnCounts().postgres.byType };
      await client.query('BEGIN');
      await client.query('CREATE TEMP TABLE counts_t (v int) ON COMMIT DROP');
      await client.query('INSERT INTO counts_t VALUES ($1), ($2)', [1, 2]);
      expect((await client.query('SELECT sum(v)::int AS s FROM counts_t')).rows).toEqual([{ s: 3 }]);
      await client.query('COMMIT');
      expect(rt() - before).toBe(5);
      const after = fnCounts().postgres.byType;
      expect((after.Q ?? 0) - (types.Q ?? 0)).toBe(4);
      expect((after.S ?? 0) - (types.S ?? 0)).toBe(1);
      // only this label's listener saw it
      expect(proxies.stats().byLabel.other!.postgres.connections).toBe(0);
      // the endpoint answers the same counters
      const served = (await (await fetch(proxies.url)).json()) as CountsSnapshot;
      expect(served.byLabel.fn!.postgres.roundTrips).toBe(rt());
      expect(served.total.postgres.roundTrips).toBe(rt());
    } finally {
      await client.end();
    }
  });
});
