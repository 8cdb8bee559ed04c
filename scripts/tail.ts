/**
 * `npm run tail -- <topic|all> [--learner <id>] [--type <t>] [--json] [--project <id>]`
 * Follows events as they are published: one temporary subscription of its own per topic (created now,
 * deleted on exit, and expiring after a day of disuse if the process is killed), so it never takes a
 * message from another consumer. One line per event: time, topic, type, ce-id, learner, ordering key.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { Message, Subscription } from '@google-cloud/pubsub';
import { loadTopology } from '../shared/topology.ts';
import { defaultDataDir, pubsubFor } from './room.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    learner: { type: 'string' },
    type: { type: 'string' },
    json: { type: 'boolean' },
    project: { type: 'string' },
    'data-dir': { type: 'string' },
  },
});
const [which] = positionals;
if (!which) {
  console.error('usage: tail <topic|all> [--learner <id>] [--type <t>] [--json]');
  process.exit(2);
}

/** The learner an event is about: its subject (students/<id>), else data.studentId. */
export function learnerOf(m: { attributes: Record<string, string>; data: Buffer }): string | undefined {
  const subject = m.attributes['ce-subject'];
  if (subject?.startsWith('students/')) return subject.slice('students/'.length);
  try {
    const d = JSON.parse(m.data.toString('utf8')) as Record<string, unknown>;
    return typeof d.studentId === 'string' ? d.studentId : undefined;
  } catch {
    return undefined;
  }
}

const pubsub = pubsubFor(values['data-dir'] ?? defaultDataDir(), 'tail', values.project);
const topics = which === 'all' ? loadTopology().topics.map((t) => t.name) : [which];
const tag = randomUUID().slice(0, 8);
const subs: Subscription[] = [];
let closing = false;
const close = async (code: number) => {
  if (closing) return;
  closing = true;
  await Promise.all(subs.map((s) => s.close().catch(() => {})));
  await Promise.all(subs.map((s) => s.delete().catch(() => {})));
  await pubsub.close();
  process.exit(code);
};
process.on('SIGINT', () => void close(0));
process.on('SIGTERM', () => void close(0));

try {
  for (const topic of topics) {
    const [sub] = await pubsub.topic(topic).createSubscription(`tail.${tag}.${topic}`, {
      ackDeadlineSeconds: 10,
      expirationPolicy: { ttl: { seconds: 86_400 } },
    });
    subs.push(sub);
    sub.on('message', (m: Message) => {
      m.ack();
      const type = m.attributes['ce-type'] ?? '-';
      const learner = learnerOf(m);
      if (values.type && !type.includes(values.type)) return;
      if (values.learner && learner !== values.learner && m.orderingKey !== values.learner) return;
      if (values.json) {
        console.log(
          JSON.stringify({
            topic,
            id: m.id,
            publishTime: m.publishTime.toISOString(),
            orderingKey: m.orderingKey || undefined,
            attributes: m.attributes,
            data: m.data.toString('utf8'),
          }),
        );
        return;
      }
      console.log(
        [
          m.publishTime.toISOString().slice(11, 23),
          topic,
          type,
          `ce-id=${m.attributes['ce-id'] ?? '-'}`,
          `learner=${learner ?? '-'}`,
          `key=${m.orderingKey || '-'}`,
          m.attributes['ldr-deadletter-reason'] ? `reason=${m.attributes['ldr-deadletter-reason']}` : '',
        ]
          .filter(Boolean)
          .join('  '),
      );
    });
    sub.on('error', (err) => console.error(`tail: ${topic}: ${err.message}`));
  }
  console.error(`tail: following ${topics.join(', ')} (Ctrl-C stops and deletes the tail's subscriptions)`);
} catch (err) {
  console.error(`tail: ${(err as Error).message}`);
  await close(1);
}
