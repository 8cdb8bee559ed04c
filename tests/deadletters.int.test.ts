import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { type DeadLetter, pullAll } from '../scripts/dead-letters.ts';
import { toMessage } from '../shared/cloudevents.ts';
import { type Interaction, interactionSchema } from '../shared/domain/interaction.ts';
import { interactionEvent, TOPICS } from '../shared/events.ts';
import { orderingKeyResolver } from '../shared/ordering.ts';
import { loadTopology } from '../shared/topology.ts';
import { eventually, fnUrl, pubsubClient, suite, token } from './helpers.ts';

/**
 * `npm run deadletters`: an interaction dead-lettered from fn.updateProgress.interaction is listed with
 * its source subscription and attempts, and `replay --all` gets it applied — reaching
 * fn.updateProgress.interaction only, not the other subscriptions of the interaction topic.
 */
const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const cli = async (...args: string[]) => {
  const env = { ...process.env };
  delete env.GOOGLE_CLOUD_PROJECT;
  delete env.PUBSUB_EMULATOR_HOST;
  return run(
    process.execPath,
    ['--import', 'tsx', 'scripts/deadletters.ts', ...args, '--data-dir', suite().dataDir],
    { cwd: root, env, timeout: 60_000 },
  );
};
const admin = (method: string, path: string) =>
  fetch(`http://127.0.0.1:${suite().ports.functions}/_ldr${path}`, {
    method,
    headers: { authorization: `Bearer ${suite().env.LDR_ADMIN_TOKEN}` },
  });
const pubsub = pubsubClient();

afterAll(async () => {
  await pubsub.close();
});

describe('npm run deadletters', () => {
  it('lists a message dead-lettered from fn.updateProgress.interaction and replay --all applies it', async () => {
    const studentId = `dl-${randomUUID().slice(0, 8)}`;
    const id = `dl-int-${randomUUID()}`;
    const interaction = interactionSchema.parse({
      id,
      studentId,
      instanceId: 'school-dl',
      kind: 'quiz_answer',
      occurredAt: new Date(Date.now() - 60_000).toISOString(),
      topic: 'python.loops',
      payload: { quizId: 'q1', correct: true, score: 0.9 },
    }) as Interaction;
    // what Pub/Sub's dead-letter policy forwards after five failed pushes to updateProgress (the bridge
    // does exactly this locally; updateProgress waits a PostgreSQL outage out for minutes per attempt)
    const msg = toMessage(interactionEvent(interaction, new Date()));
    const ceId = msg.attributes['ce-id']!; // scoped to the learner (SPEC §3)
    await pubsub.topic(TOPICS.deadLetter).publishMessage({
      data: msg.data,
      attributes: {
        ...msg.attributes,
        CloudPubSubDeadLetterSourceDeliveryCount: '5',
        CloudPubSubDeadLetterSourceSubscription: 'fn.updateProgress.interaction',
        CloudPubSubDeadLetterSourceSubscriptionProject: suite().projectId,
        CloudPubSubDeadLetterSourceTopicPublishTime: new Date().toISOString(),
      },
    });

    await eventually(
      async () => {
        const pulled = await pullAll(pubsub);
        await pulled.release(pulled.messages.map((m) => m.ackId));
        await pulled.close();
        return pulled.messages.find((m: DeadLetter) => m.ceId === ceId);
      },
      20_000,
      'the dead letter on ops.deadletter',
    );
    const listed = await cli('list');
    const line = listed.stdout.split('\n').find((l) => l.includes(`ce-id=${ceId}`));
    expect(line, listed.stdout).toContain('from=fn.updateProgress.interaction');
    expect(line).toContain('attempts=5');
    expect(line).toContain('type=learnflow.interaction.v1');

    // a tap on the interaction topic sees the replay as published: keyed as the functions key the learner
    const [tap] = await pubsub.topic(TOPICS.interaction).createSubscription(`tap-dl-${randomUUID()}`);
    const replayKeys = new Map<string, string>();
    tap.on('message', (m) => {
      if (m.attributes['ce-id'] === ceId) replayKeys.set(m.attributes['ce-id'], m.orderingKey ?? '');
      m.ack();
    });
    tap.on('error', () => {});

    const before = (await (await admin('GET', '/bridge')).json()) as { filtered: number };
    // --all of one source subscription: other tests of the run leave dead letters of made-up subscriptions
    // (push bodies posted by hand), which `replay --all` rightly reports as not replayable (exit 1)
    const replayed = await cli('replay', '--all', '--subscription', 'fn.updateProgress.interaction');
    expect(replayed.stdout).toMatch(/\d+ replayed, 0 failed/);
    expect(replayed.stdout).toContain(`ce-id ${ceId}`);
    // the dead letter carried no key: it comes back from the data as the learner's shard (on the emulator)
    const key = await eventually(async () => replayKeys.get(ceId), 20_000, 'the replay on the tap');
    await tap.close();
    await tap.delete();
    expect(key).toBe(orderingKeyResolver(loadTopology(), true)(TOPICS.interaction, studentId));
    expect(key).toMatch(/^s\d+$/);

    const platform = await token({ sub: 'platform-svc', role: 'platform' });
    const history = await eventually(
      async () => {
        const r = await fetch(fnUrl('progressApi', `/students/${studentId}/history?limit=10`), {
          headers: { authorization: `Bearer ${platform}` },
        });
        const body = (await r.json()) as { items?: Array<{ id: string }> };
        return r.status === 200 && body.items?.length ? body.items : undefined;
      },
      45_000,
      'the replayed interaction to be applied',
    );
    expect(history.map((i) => i.id)).toEqual([id]);
    // the other subscriptions of the interaction topic dropped the replay (their filter), unseen by their functions
    const after = (await (await admin('GET', '/bridge')).json()) as { filtered: number };
    expect(after.filtered - before.filtered).toBeGreaterThanOrEqual(2);
    // acknowledged on ops.deadletter once replayed
    expect((await cli('list')).stdout).not.toContain(`ce-id=${ceId}`);
  });

  it('gives a consumer subscription the retry and dead-letter policy: deliveryAttempt counts, then ops.deadletter', async () => {
    const marker = randomUUID();
    await pubsub
      .topic('learnflow.agent.debug')
      .publishMessage({ data: Buffer.from('{}'), attributes: { 'ce-id': marker } });
    const attempts: number[] = [];
    const sub = pubsub.subscription('agent.debug');
    sub.on('message', (m) => {
      if (m.attributes['ce-id'] !== marker) return m.ack(); // earlier files' leftovers
      attempts.push(m.deliveryAttempt);
      m.nack();
    });
    try {
      const dead = await eventually(
        async () => {
          const pulled = await pullAll(pubsub);
          await pulled.release(pulled.messages.map((m) => m.ackId));
          await pulled.close();
          return pulled.messages.find((m: DeadLetter) => m.ceId === marker);
        },
        45_000,
        'the nacked message to reach ops.deadletter',
      );
      expect(dead.source).toBe('agent.debug');
      expect(dead.attempts).toBe(5);
      expect(attempts.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
    } finally {
      await sub.close();
    }
    // a replay addressed to it comes back with a fresh count
    const replayed = await cli('replay', '--id', marker);
    expect(replayed.stdout).toContain('1 replayed, 0 failed');
    const back = await new Promise<{ attempt: number; replayFor?: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the replay never reached agent.debug')), 30_000);
      const again = pubsub.subscription('agent.debug');
      again.on('message', (m) => {
        m.ack();
        if (m.attributes['ce-id'] !== marker) return;
        clearTimeout(timer);
        void again.close();
        resolve({ attempt: m.deliveryAttempt, replayFor: m.attributes['ldr-replay-for'] });
      });
    });
    expect(back).toEqual({ attempt: 1, replayFor: 'agent.debug' });
  });
});
