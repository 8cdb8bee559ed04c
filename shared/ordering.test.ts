import { describe, expect, it } from 'vitest';
import { orderingKeyResolver, shardKey } from './ordering.ts';
import { loadTopology } from './topology.ts';

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
    const keyFor = orderingKeyResolver(topology);
    expect(keyFor('learnflow.interaction.received', 'stu-1')).toBe(shardKey('stu-1', 8));
    expect(keyFor('learnflow.progress.updated', 'stu-1')).toBe('stu-1');
    expect(keyFor('learnflow.interaction.received', undefined)).toBeUndefined();
    expect(keyFor('partner.acme.events', 'ref-1')).toBe('ref-1');
  });
});
