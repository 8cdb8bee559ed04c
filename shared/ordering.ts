import { loadTopology, type Topology } from './topology.ts';

/**
 * `shard(key, n)`: a stable hash of an ordering key (FNV-1a, 32 bit) onto one of n shards, named `s<k>`.
 * A learner always maps to the same shard, so per-learner order holds; the shard's other learners share
 * its order (and wait while one of its messages is retried).
 */
export function shardKey(key: string, shards: number): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return `s${h % shards}`;
}

/**
 * The ordering key a message is published with. A topic's `orderingKeyShards` (topology) turns the natural
 * key (e.g. the studentId) into its shard everywhere; `emulatorOrderingKeyShards` does so only when
 * publishing to the Pub/Sub emulator (`emulator`, by default: PUBSUB_EMULATOR_HOST is set), which keeps a
 * thread per distinct ordering key. Other topics keep the natural key. Readers never rely on the key being
 * the student id: they read the learner from the event.
 */
export function orderingKeyResolver(
  topology: Topology = loadTopology(),
  emulator = Boolean(process.env.PUBSUB_EMULATOR_HOST),
) {
  const shards = new Map<string, number>();
  for (const t of topology.topics) {
    const n = t.orderingKeyShards ?? (emulator ? t.emulatorOrderingKeyShards : undefined);
    if (n) shards.set(t.name, n);
  }
  return (topic: string, key: string | undefined): string | undefined => {
    const n = key === undefined ? undefined : shards.get(topic);
    return n ? shardKey(key!, n) : key;
  };
}
