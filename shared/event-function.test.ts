/**
 * The push contract's error paths on the Functions Framework's own server (getServer): a bad push body is
 * a 400 naming the field; a poison message is dead-lettered and acknowledged; a failing handler — or a
 * failing dead-letter publish — is not acknowledged (5xx), so Pub/Sub redelivers it.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PubsubMessage } from './cloudevents.ts';
import { PoisonMessage } from './cloudevents.ts';
import { pushBodySchema, readPush, registerMessageFunction } from './event-function.ts';
import { createLogger } from './log.ts';
import type { Runtime } from './runtime.ts';

const deadLetters: PubsubMessage[] = [];
let deadLetterDown = false;
let behaviour: 'ok' | 'poison' | 'fail' = 'ok';
const seen: Array<{ data: string; attempt: number; orderingKey?: string }> = [];
/** the node:domain each delivery ran in (the framework opens one per request) */
const domains: unknown[] = [];

const rt = {
  name: 'pushProbe',
  log: createLogger('pushProbe', 'silent'),
  health: () => async () => ({ pubsub: 'ok' as const }),
  bus: () => ({
    publish: async () => 'x',
    publishRaw: async (_topic: string, m: PubsubMessage) => {
      if (deadLetterDown) throw new Error('dead-letter topic unavailable');
      deadLetters.push(m);
      return 'dl';
    },
  }),
} as unknown as Runtime;

let server: Server;
let base: string;
beforeAll(async () => {
  registerMessageFunction(rt, async (msg, delivery) => {
    seen.push({
      data: msg.data.toString(),
      attempt: delivery.deliveryAttempt,
      orderingKey: delivery.orderingKey,
    });
    await Promise.resolve();
    domains.push((process as { domain?: unknown }).domain);
    if (behaviour === 'poison') throw new PoisonMessage('not an interaction');
    if (behaviour === 'fail') throw new Error('PostgreSQL unavailable');
  });
  server = getTestServer('pushProbe');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const push = (body: unknown) =>
  fetch(`${base}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
const body = (data: string, extra: Record<string, unknown> = {}) => ({
  message: {
    data: Buffer.from(data).toString('base64'),
    attributes: { 'ce-id': `ce-${data}` },
    messageId: `m-${data}`,
    publishTime: '2026-01-01T00:00:00Z',
    orderingKey: 'learner-1',
  },
  subscription: 'projects/p/subscriptions/fn.probe',
  ...extra,
});

describe('push handler', () => {
  it('acknowledges a handled message and hands the handler the delivery (attempt, ordering key)', async () => {
    behaviour = 'ok';
    const res = await push(body('a', { deliveryAttempt: 3 }));
    expect(res.status).toBe(204);
    expect(seen.at(-1)).toEqual({ data: 'a', attempt: 3, orderingKey: 'learner-1' });
  });

  it('runs deliveries outside the framework’s per-request domain (it costs on every callback)', async () => {
    behaviour = 'ok';
    domains.length = 0;
    expect((await push(body('b'))).status).toBe(204);
    // no active domain: undefined, or null once the domain module has been loaded
    expect(domains).toHaveLength(1);
    expect(domains[0] ?? undefined).toBeUndefined();
  });

  it('refuses what is not a push body with a 400 naming the field', async () => {
    const res = await push({ message: { data: 'eA==' } });
    expect(res.status).toBe(400);
    const paths = (await res.json()).errors.map((e: { path: string }) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['/subscription', '/message/messageId']));
    const notBase64 = await push({ ...body('b'), message: { ...body('b').message, data: '%%%' } });
    expect(notBase64.status).toBe(400);
  });

  it('dead-letters a poison message with its reason and acknowledges it', async () => {
    behaviour = 'poison';
    deadLetterDown = false;
    const res = await push(body('c'));
    expect(res.status).toBe(204);
    expect(deadLetters.at(-1)?.attributes).toMatchObject({
      'ce-id': 'ce-c',
      'ldr-deadletter-reason': 'not an interaction',
      'ldr-deadletter-function': 'pushProbe',
      'ldr-deadletter-subscription': 'projects/p/subscriptions/fn.probe',
    });
  });

  it('does not acknowledge when the handler fails, or when a poison message cannot be dead-lettered', async () => {
    behaviour = 'fail';
    expect((await push(body('d'))).status).toBe(500);
    behaviour = 'poison';
    deadLetterDown = true;
    const before = deadLetters.length;
    expect((await push(body('e'))).status).toBe(500);
    expect(deadLetters).toHaveLength(before);
  });

  it('reads exactly the bodies the push schema accepts (the usual one without running the schema)', () => {
    const good = { message: { data: 'eA==', attributes: { a: 'b' }, messageId: '1' }, subscription: 's' };
    const cases: unknown[] = [
      good,
      { ...good, deliveryAttempt: 2 },
      { message: { message_id: '1' }, subscription: 's' },
      { message: { messageId: '1', publishTime: 't', orderingKey: 'k' }, subscription: 's' },
      { ...good, subscription: '' },
      { message: { messageId: '' }, subscription: 's' },
      { message: { messageId: '', message_id: '1' }, subscription: 's' },
      { message: { messageId: 1 }, subscription: 's' },
      { message: { messageId: '1', data: 5 }, subscription: 's' },
      { message: { messageId: '1', attributes: { a: 1 } }, subscription: 's' },
      { message: { messageId: '1', attributes: ['x'] }, subscription: 's' },
      { message: ['x'], subscription: 's' },
      { ...good, deliveryAttempt: 0 },
      { ...good, deliveryAttempt: 1.5 },
      { ...good, deliveryAttempt: '2' },
      null,
      'x',
    ];
    for (const c of cases) {
      const ok = (() => {
        try {
          readPush(c);
          return true;
        } catch {
          return false;
        }
      })();
      expect(ok, JSON.stringify(c)).toBe(pushBodySchema.safeParse(c).success);
    }
  });
});
