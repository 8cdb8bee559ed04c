import { randomUUID } from 'node:crypto';
import { PubSub } from '@google-cloud/pubsub';
import { inject } from 'vitest';
import { ensureIdentity, mintToken, type TokenRequest } from '../emulators/identity.ts';
import { orderingKeyResolver, shardKey } from '../shared/ordering.ts';
import { loadTopology } from '../shared/topology.ts';

export const suite = () => inject('suite');

export function pubsubClient() {
  const s = suite();
  return new PubSub({ projectId: s.projectId, apiEndpoint: s.env.PUBSUB_EMULATOR_HOST });
}

export async function token(req: TokenRequest) {
  return mintToken(await ensureIdentity(suite().dataDir), req);
}

/** The ordering key the room publishes `key` with on `topic` in the local suite (the emulator's shards). */
export const localOrderingKey = orderingKeyResolver(loadTopology(), true);

/** `count` distinct learner ids that all share one ordering key on `topic` in the local suite. */
export function learnersSharingAKey(topic: string, count: number, prefix = 's') {
  const n = loadTopology().topics.find((t) => t.name === topic)?.emulatorOrderingKeyShards;
  if (!n) throw new Error(`${topic} is not sharded locally`);
  const base = `${prefix}-${randomUUID()}`;
  const target = shardKey(`${base}-0`, n);
  const out: string[] = [];
  for (let i = 0; out.length < count; i++)
    if (shardKey(`${base}-${i}`, n) === target) out.push(`${base}-${i}`);
  return out;
}

export const fnUrl = (name: string, path = '') => `${suite().functionsBase}/${name}${path}`;

/** Polls until `check` returns a value other than undefined, or throws after the deadline. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A fresh subscription on a topic, to observe what gets published there. */
export async function tap(pubsub: PubSub, topic: string, opts: { ordered?: boolean } = {}) {
  const name = `test.tap.${randomUUID()}`;
  const [sub] = await pubsub
    .topic(topic)
    .createSubscription(name, { enableMessageOrdering: opts.ordered ?? false });
  const received: Array<{
    id: string;
    data: Buffer;
    attributes: Record<string, string>;
    orderingKey?: string;
  }> = [];
  sub.on('message', (m) => {
    received.push({ id: m.id, data: m.data, attributes: m.attributes, orderingKey: m.orderingKey });
    m.ack();
  });
  return {
    received,
    json: () => received.map((m) => ({ ...m, body: JSON.parse(m.data.toString()) })),
    close: async () => {
      await sub.close();
      await sub.delete().catch(() => {});
    },
  };
}

export interface PostResult {
  status: number;
  headers: Headers;
  body: any;
}

export async function postJson(url: string, body: unknown, bearer?: string): Promise<PostResult> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

/** The suite's admin routes (/_ldr/…), with the suite's own bearer token. */
export const adminFetch = (path: string, init: RequestInit = {}) =>
  fetch(`http://127.0.0.1:${suite().ports.functions}${path}`, {
    ...init,
    headers: {
      ...(init.headers as Record<string, string>),
      authorization: `Bearer ${suite().env.LDR_ADMIN_TOKEN}`,
    },
  });

export async function control(component: 'redis' | 'pubsub' | 'postgres', action: 'stop' | 'start') {
  const res = await adminFetch(`/_ldr/control/${component}/${action}`, { method: 'POST' });
  if (!res.ok) throw new Error(`control ${component} ${action}: ${res.status} ${await res.text()}`);
}

export async function workers(): Promise<Record<string, { pid: number; port: number }>> {
  return (await adminFetch('/_ldr/workers')).json();
}

export const iso = (d = new Date()) => d.toISOString();

/** Waits until the bridge has nothing in flight, so a test file leaves no backlog to the next one. */
export async function settle(timeoutMs = 120_000) {
  await eventually(
    async () => {
      const stats = await (await adminFetch('/_ldr/bridge')).json();
      return stats.inFlight === 0 ? true : undefined;
    },
    timeoutMs,
    'the bridge to drain its backlog',
  );
}
