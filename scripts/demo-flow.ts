import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Message, PubSub } from '@google-cloud/pubsub';
import { compileFilter } from '../emulators/filter.ts';
import { ensureIdentity, mintToken } from '../emulators/identity.ts';
import { upsertInstance, upsertPartner } from '../emulators/registry.ts';
import { clientEventId, TOPICS } from '../shared/events.ts';
import { instanceSubscription, loadTopology, partnerNames } from '../shared/topology.ts';

/**
 * The seed's flow, step by step, against a running room (its `<dataDir>/suite.json`). Every hop is
 * checked; the first one that breaks throws with its name.
 */
export interface DemoResult {
  studentId: string;
  interactionId: string;
  /** the ce-id the interaction is published under (ids are scoped to the learner) */
  eventId: string;
  contentId: string;
  mastery: number;
  partnerCopy: Record<string, unknown>;
  partnerHttpCopy: Record<string, unknown>;
}

export async function runDemo(
  dataDir: string,
  say: (line: string) => void = console.log,
): Promise<DemoResult> {
  const suite = JSON.parse(readFileSync(join(dataDir, 'suite.json'), 'utf8'));
  const base: string = suite.functionsBase;
  const admin = `http://127.0.0.1:${suite.ports.functions}/_ldr`;
  const identity = await ensureIdentity(dataDir);
  const pubsub = new PubSub({ projectId: suite.projectId, apiEndpoint: suite.env.PUBSUB_EMULATOR_HOST });
  const run = randomUUID().slice(0, 8);
  const studentId = `learner-${run}`;
  const slug = 'acme-learning';
  const instance = 'school-1';
  let n = 0;
  /** the last request sent, for the step's line */
  let sent: string | undefined;
  /** one line per step: what it did, then the request sent or the event seen */
  const step = async <T>(title: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    sent = undefined;
    try {
      const v = await fn();
      const detail = typeof v === 'string' ? `seen ${v}` : sent;
      say(`✓ ${++n}. ${title}${detail ? ` — ${detail}` : ''} (${Date.now() - t0} ms)`);
      return v;
    } catch (err) {
      say(`✗ ${++n}. ${title}: ${(err as Error).message}`);
      throw new Error(`demo step ${n} failed (${title}): ${(err as Error).message}`);
    }
  };
  const http = async (method: string, url: string, token: string, body?: unknown) => {
    const res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await res.json().catch(() => undefined);
    sent = `${method} ${url.replace(base, '')} → ${res.status}`;
    if (!res.ok) throw new Error(`${method} ${url} → ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  /**
   * Watches a topic through a subscription of the demo's own (created now, deleted at the end), so the
   * demo never takes a message from another consumer's subscription. Resolves with the first match.
   */
  const temps: string[] = [];
  const watch = async (topic: string, match: (m: Message) => boolean, timeoutMs = 60_000) => {
    const name = `demo.${run}.${temps.length + 1}`;
    const [sub] = await pubsub.topic(topic).createSubscription(name, { ackDeadlineSeconds: 60 });
    temps.push(name);
    const arrived = new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        void sub.close();
        reject(new Error(`nothing matching arrived on ${topic} within ${timeoutMs} ms`));
      }, timeoutMs);
      sub.on('message', (m: Message) => {
        m.ack();
        if (!match(m)) return;
        clearTimeout(timer);
        void sub.close();
        resolve(m);
      });
      sub.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    arrived.catch(() => {});
    return { arrived }; // wrapped: an async function returning the promise itself would wait for it
  };
  const seen = (m: Message) => `ce-id=${m.attributes['ce-id']} type=${m.attributes['ce-type']}`;

  try {
    await step(
      `register app-instance ${instance} and partner ${slug} (sponsor acme, instance ${instance})`,
      async () => {
        upsertInstance(dataDir, { id: instance, displayName: 'School One' });
        upsertPartner(dataDir, {
          slug,
          displayName: 'ACME Learning',
          instances: [instance],
          sponsors: ['acme'],
        });
        const res = await fetch(`${admin}/registry/apply`, {
          method: 'POST',
          headers: { authorization: `Bearer ${suite.env.LDR_ADMIN_TOKEN}` },
        });
        sent = `POST /_ldr/registry/apply → ${res.status}`;
        if (!res.ok) throw new Error(`registry apply → ${res.status}`);
      },
    );

    const platform = await mintToken(identity, { sub: 'content-engine', role: 'platform' });
    const contentId = `lesson-${run}`;
    const { arrived: contentArrived } = await watch(
      'learnflow.content.published',
      (m) => m.attributes['ce-id'] === `${contentId}@1`,
    );
    const admitsInstance = compileFilter(instanceSubscription(loadTopology(), instance).filter ?? '');
    await step('the platform publishes a sponsored lesson to the instance', () =>
      http('POST', `${base}/publishContent`, platform, {
        contentId,
        version: 1,
        kind: 'lesson',
        title: 'Loops in Python',
        topic: 'python.loops',
        sponsor: 'acme',
        instances: [instance],
        body: { markdown: '# for-loops' },
      }),
    );
    await step(`the app-instance receives it on instance.${instance}.content`, async () => {
      const m = await contentArrived;
      if (!admitsInstance(m.attributes))
        throw new Error(`instance.${instance}.content's filter drops ${seen(m)}`);
      return seen(m);
    });

    const student = await mintToken(identity, { sub: studentId, role: 'student', instance });
    const interactionId = `demo-${run}`;
    const eventId = clientEventId(studentId, interactionId);
    const { arrived: memory } = await watch(TOPICS.interaction, (m) => m.attributes['ce-id'] === eventId);
    // the partner's copy, seen through the demo's own subscription on the partner's topic
    const { arrived: partnerCopy } = await watch(
      partnerNames(loadTopology(), slug).topic,
      (x) => x.attributes['ce-id'] === eventId,
    );
    await step(`learner ${studentId} answers a quiz in the app`, () =>
      http('POST', `${base}/ingestInteraction`, student, {
        id: interactionId,
        studentId,
        instanceId: instance,
        kind: 'quiz_answer',
        occurredAt: new Date().toISOString(),
        topic: 'python.loops',
        sponsor: 'acme',
        payload: { quizId: contentId, correct: true, score: 0.9 },
      }),
    );
    await step(
      `the interaction is published on ${TOPICS.interaction} (what memory.interactions delivers)`,
      async () => seen(await memory),
    );

    const mastery = await step('progress is updated (progressApi)', async () => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const res = await fetch(`${base}/progressApi/students/${studentId}`, {
          headers: { authorization: `Bearer ${student}` },
        });
        if (res.ok) {
          const body = await res.json();
          const t = body.topics?.find((x: { topic: string }) => x.topic === 'python.loops');
          sent = `GET /progressApi/students/${studentId} → ${res.status}`;
          if (t) return t.mastery as number;
        }
        if (Date.now() > deadline) throw new Error(`no progress after 20 s (last status ${res.status})`);
        await new Promise((r) => setTimeout(r, 200));
      }
    });
    say(`   mastery in python.loops: ${mastery}`);

    const partner = await mintToken(identity, { sub: `${slug}-site`, role: 'partner', partner: slug });
    const partnerHttpCopy = await step(
      `the partner pulls its scoped copy through its custom URL /p/${slug}/pull`,
      async () => {
        const deadline = Date.now() + 20_000;
        const seen: string[] = [];
        for (;;) {
          const { messages } = await http('POST', `${base}/partnerRoom/p/${slug}/pull?max=50`, partner);
          seen.push(...messages.map((m: { ackId: string }) => m.ackId));
          const mine = messages.find((m: { event: { id: string } }) => m.event.id === eventId);
          if (mine) {
            // released again, not acked, so the partner's Pub/Sub subscriber receives them next, in order
            await http('POST', `${base}/partnerRoom/p/${slug}/nack`, partner, { ackIds: seen });
            return mine.event as Record<string, unknown>;
          }
          if (Date.now() > deadline) throw new Error('the partner copy did not arrive');
          await new Promise((r) => setTimeout(r, 200));
        }
      },
    );
    const copy = await step(
      `the partner's scoped copy is on partner.${slug}.events (official Pub/Sub client)`,
      async () => {
        const m = await partnerCopy;
        sent = `seen ${seen(m)} orderingKey=${m.orderingKey || '-'}`;
        return { attributes: m.attributes, data: JSON.parse(m.data.toString()) } as Record<string, unknown>;
      },
    );
    await step('the copy is pseudonymised: no student id anywhere, learnerRef instead', async () => {
      const text = JSON.stringify([copy, partnerHttpCopy]);
      if (text.includes(studentId)) throw new Error('the raw student id reached the partner');
      const data = (copy as { data: Record<string, unknown> }).data;
      if (typeof data.learnerRef !== 'string') throw new Error('learnerRef missing');
      say(`   learnerRef ${data.learnerRef}`);
    });
    return { studentId, interactionId, eventId, contentId, mastery, partnerCopy: copy, partnerHttpCopy };
  } finally {
    await Promise.all(
      temps.map((t) =>
        pubsub
          .subscription(t)
          .delete()
          .catch(() => {}),
      ),
    );
    await pubsub.close();
  }
}
