/**
 * Issue 10 item 5 through the running suite: one partner whose HMAC secret file is missing neither
 * stops nor delays the copies of another partner entitled to the same events; its own copies are
 * retried (fn.mirrorToPartners.retry) and arrive once the secret is back, or are dead-lettered with
 * the partner named when it never comes back.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import type { Message } from '@google-cloud/pubsub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partnerSecretsDir } from '../emulators/registry.ts';
import { clientEventId, TOPICS } from '../shared/events.ts';
import { eventually, fnUrl, iso, postJson, pubsubClient, suite, tap, token } from './helpers.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const run = randomUUID().slice(0, 8);
const INSTANCE = `inst-iso-${run}`;
const SPONSOR = `sp-iso-${run}`;
/** the broken partner (sponsor match) and the healthy one (instance match); both take every event */
const BROKEN = `mx-${run}`;
const HEALTHY = `my-${run}`;

const pubsub = pubsubClient();
const cli = (...args: string[]) =>
  execFileSync(
    process.execPath,
    ['--import', 'tsx', 'scripts/registry.ts', ...args, '--data-dir', suite().dataDir],
    {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
const secretFile = (slug: string) => join(partnerSecretsDir(suite().dataDir), slug);

/** What a partner receives on its pull subscription (acking each): ce-id → distinct Pub/Sub message ids. */
function listen(slug: string) {
  const got = new Map<string, Set<string>>();
  const sub = pubsub.subscription(`partner.${slug}.pull`);
  sub.on('message', (m: Message) => {
    const id = m.attributes['ce-id']!;
    got.set(id, (got.get(id) ?? new Set()).add(m.id));
    m.ack();
  });
  sub.on('error', () => {});
  return {
    ids: () => [...got.keys()],
    /** how many times the mirror published this event to the partner (redeliveries not counted) */
    published: (id: string) => got.get(id)?.size ?? 0,
    has: (want: string[]) => want.every((id) => got.has(id)),
    close: () => sub.close(),
  };
}

let seq = 0;
let appToken: string;
/** Posts one interaction on the healthy partner's instance, by default sponsored by the broken partner's sponsor. */
async function post(studentId: string, sponsored = true) {
  const id = `iso-${run}-${++seq}`;
  const res = await postJson(
    fnUrl('ingestInteraction'),
    {
      id,
      studentId,
      instanceId: INSTANCE,
      kind: 'session',
      occurredAt: iso(),
      topic: `iso.t${seq}`,
      payload: { action: 'start' },
      ...(sponsored ? { sponsor: SPONSOR } : {}),
    },
    appToken,
  );
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  // the event's ce-id is scoped to the learner (SPEC §3)
  return clientEventId(studentId, id);
}

let broken: ReturnType<typeof listen>;
let healthy: ReturnType<typeof listen>;

beforeAll(async () => {
  cli('instance', 'add', INSTANCE, '--name', 'Isolation school');
  cli('partner', 'add', BROKEN, '--name', 'Broken partner', '--sponsors', SPONSOR);
  cli('partner', 'add', HEALTHY, '--name', 'Healthy partner', '--instances', INSTANCE);
  // the broken partner's secret goes missing (as a Secret Manager version not mounted yet)
  renameSync(secretFile(BROKEN), `${secretFile(BROKEN)}.away`);
  appToken = await token({ sub: `app-${INSTANCE}`, role: 'app', instance: INSTANCE });
  broken = listen(BROKEN);
  healthy = listen(HEALTHY);
  // the mirror re-reads the partner records about once a second: wait until it serves both
  // (both were added before this probe, which only the healthy partner is entitled to)
  const probe = await post(`probe-${run}`, false);
  await eventually(async () => (healthy.has([probe]) ? true : undefined), 60_000, 'the probe');
});

afterAll(async () => {
  await broken?.close();
  await healthy?.close();
  for (const args of [
    ['partner', 'remove', BROKEN],
    ['partner', 'remove', HEALTHY],
    ['instance', 'remove', INSTANCE],
  ]) {
    try {
      cli(...args);
    } catch {
      // never added
    }
  }
  await pubsub.close();
});

describe('mirror failures are isolated per partner', () => {
  it('a copy that never succeeds is dead-lettered naming its partner; the other partner has it at once', async () => {
    const deadLetters = await tap(pubsub, TOPICS.deadLetter);
    try {
      const id = await post(`s1-${run}`);
      await eventually(async () => (healthy.has([id]) ? true : undefined), 10_000, 'the healthy copy');
      const dead = await eventually(
        async () =>
          deadLetters.received.find(
            (m) => m.attributes['ce-id'] === id && m.attributes['ldr-partner'] === BROKEN,
          ),
        30_000,
        'the retry task in the dead-letter topic',
      );
      // the task carries the event unchanged (data and attributes), so an operator can replay it
      expect(JSON.parse(dead.data.toString()).studentId).toBe(`s1-${run}`);
      expect(broken.ids()).not.toContain(id);
    } finally {
      await deadLetters.close();
    }
  });

  it('a learner’s later events reach the healthy partner promptly; the broken one gets them once its secret is back', async () => {
    const student = `s2-${run}`;
    const first = await post(student);
    const second = await post(student);
    // ordered by learner: without isolation the failing first event would hold up the second
    await eventually(
      async () => (healthy.has([first, second]) ? true : undefined),
      10_000,
      'both copies at the healthy partner',
    );
    expect(broken.ids().filter((id) => id.startsWith(`iso-${run}`))).toEqual([]); // no secret, no copy
    renameSync(`${secretFile(BROKEN)}.away`, secretFile(BROKEN));
    const want = [first, second, `${first}.progress`, `${second}.progress`];
    await eventually(async () => (broken.has(want) ? true : undefined), 30_000, 'the retried copies');
    await eventually(
      async () => (healthy.has(want) ? true : undefined),
      10_000,
      'the healthy progress copies',
    );
    // each copy published once (the Redis marks hold across the retry path)
    for (const partner of [broken, healthy])
      expect(want.map((id) => partner.published(id))).toEqual([1, 1, 1, 1]);
  });
});
