import { describe, expect, it } from 'vitest';
import { orderingKeyResolver, shardKey } from './ordering.ts';
import { loadTopology } from './topology.ts';

const LEARNER_TOPICS = [
  'learnflow.interaction.received',
  'learnflow.agent.concepts',
  'learnflow.agent.code-review',
  'learnflow.agent.debug',
  'learnflow.agent.exercise',
  'learnflow.agent.progress',
  'learnflow.triage.routed',
  'learnflow.progress.updated',
  'learnflow.struggle.detected',
];

describe('ordering keys', () => {
  it('shardKey is stable, in range and spreads learners over the shards', () => {
    expect(shardKey('stu-1', 16)).toBe(shardKey('stu-1', 16));
    const counts = new Map<string, number>();
    for (let i = 0; i < 16_000; i++) {
      const k = shardKey(`stu-${i}`, 16);
      expect(k).toMatch(/^s(\d|1[0-5])$/);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    expect(counts.size).toBe(16);
    for (const n of counts.values()) expect(n).toBeGreaterThan(700);
  });

  it('a topic with orderingKeyShards publishes the shard; other topics keep the natural key', () => {
    const t = loadTopology();
    const topology = {
      ...t,
      topics: t.topics.map((x) =>
        x.name === 'learnflow.interaction.received' ? { ...x, orderingKeyShards: 8 } : x,
      ),
    };
    const keyFor = orderingKeyResolver(topology, false);
    expect(keyFor('learnflow.interaction.received', 'stu-1')).toBe(shardKey('stu-1', 8));
    expect(keyFor('learnflow.progress.updated', 'stu-1')).toBe('stu-1');
    expect(keyFor('learnflow.interaction.received', undefined)).toBeUndefined();
    expect(keyFor('partner.acme.events', 'ref-1')).toBe('ref-1');
  });

  it('the topology: student id in production, its shard on the emulator, for every learner topic only', () => {
    const production = orderingKeyResolver(loadTopology(), false);
    const emulator = orderingKeyResolver(loadTopology(), true);
    const learnerTopics = loadTopology()
      .topics.filter((t) => t.orderingKey === 'studentId')
      .map((t) => t.name);
    expect(learnerTopics.sort()).toEqual([...LEARNER_TOPICS].sort());
    for (const topic of learnerTopics) {
      expect(production(topic, 'stu-1'), topic).toBe('stu-1');
      expect(emulator(topic, 'stu-1'), topic).toBe(shardKey('stu-1', 256));
    }
    // keys that are not learners, and the partner-facing learnerRef, are never sharded
    for (const [topic, key] of [
      ['learnflow.content.published', 'lesson-1'],
      ['learnflow.artifact.stored', 'stu-1'],
      ['learnflow.mirror.retry', 'acme/stu-1'],
      ['partner.acme.events', 'ref-1'],
    ] as const) {
      expect(emulator(topic, key), topic).toBe(key);
      expect(production(topic, key), topic).toBe(key);
    }
  });

  it('reads PUBSUB_EMULATOR_HOST when not told', () => {
    const saved = process.env.PUBSUB_EMULATOR_HOST;
    try {
      process.env.PUBSUB_EMULATOR_HOST = '127.0.0.1:8085';
      expect(orderingKeyResolver()('learnflow.interaction.received', 'stu-1')).toBe(shardKey('stu-1', 256));
      delete process.env.PUBSUB_EMULATOR_HOST;
      expect(orderingKeyResolver()('learnflow.interaction.received', 'stu-1')).toBe('stu-1');
    } finally {
      if (saved === undefined) delete process.env.PUBSUB_EMULATOR_HOST;
      else process.env.PUBSUB_EMULATOR_HOST = saved;
    }
  });
});
