import { expect, describe as group, it } from 'vitest';
import { compileFilter } from '../emulators/filter.ts';
import { orderingKeyResolver, shardKey } from '../shared/ordering.ts';
import { instanceSubscription, loadTopology } from '../shared/topology.ts';
import { describe, matches, REPLAY_ATTRIBUTE, replayMessage } from './dead-letters.ts';

const topology = loadTopology();
const data = Buffer.from(JSON.stringify({ id: 'i-1', studentId: 'learner-1' }));

const fromBridge = describe({
  id: 'dl-1',
  ackId: 'a1',
  data,
  publishTime: '2026-01-01T00:00:00.000Z',
  attributes: {
    'ce-id': 'i-1',
    'ce-type': 'learnflow.interaction.v1',
    CloudPubSubDeadLetterSourceDeliveryCount: '5',
    CloudPubSubDeadLetterSourceSubscription: 'fn.updateProgress.interaction',
    CloudPubSubDeadLetterSourceSubscriptionProject: 'demo-ldr',
    CloudPubSubDeadLetterSourceTopicPublishTime: '2026-01-01T00:00:00.000Z',
  },
});

const poison = describe({
  id: 'dl-2',
  ackId: 'a2',
  data: Buffer.from('not json'),
  publishTime: '2026-01-01T00:00:00.000Z',
  attributes: {
    'ce-id': 'i-2',
    'ldr-deadletter-reason': 'data is not JSON',
    'ldr-deadletter-function': 'routeTriage',
    'ldr-deadletter-subscription': 'projects/demo-ldr/subscriptions/fn.routeTriage.interaction',
    'ldr-deadletter-message-id': 'orig-2',
    [REPLAY_ATTRIBUTE]: 'fn.routeTriage.interaction',
  },
});

group('dead letters', () => {
  it('reads the source subscription, attempts and reason from either dead-letter path', () => {
    expect(fromBridge).toMatchObject({
      source: 'fn.updateProgress.interaction',
      attempts: 5,
      ceId: 'i-1',
      type: 'learnflow.interaction.v1',
    });
    expect(fromBridge.reason).toBeUndefined();
    expect(poison).toMatchObject({
      source: 'fn.routeTriage.interaction',
      reason: 'data is not JSON',
      function: 'routeTriage',
      originalId: 'orig-2',
    });
  });

  it('replays data and attributes without the dead-letter ones, addressed to the source subscription', () => {
    const m = replayMessage(fromBridge, topology, 'learnflow.interaction.received');
    expect(m.data).toBe(data);
    expect(m.attributes).toEqual({
      'ce-id': 'i-1',
      'ce-type': 'learnflow.interaction.v1',
      [REPLAY_ATTRIBUTE]: 'fn.updateProgress.interaction',
    });
    // the topic's ordering key comes back from the data (dead-lettering drops it)
    expect(m.orderingKey).toBe('learner-1');
    // resolved as the functions publish it: on the emulator the learner's shard of the topic
    const onEmulator = orderingKeyResolver(topology, true);
    const sharded = replayMessage(fromBridge, topology, 'learnflow.interaction.received', onEmulator);
    expect(sharded.orderingKey).toBe(shardKey('learner-1', 256));
    expect(sharded.orderingKey).toBe(onEmulator('learnflow.interaction.received', 'learner-1'));
    // a key the dead letter kept is published as it was
    const kept = replayMessage(
      { ...fromBridge, orderingKey: 's17' },
      topology,
      'learnflow.interaction.received',
      onEmulator,
    );
    expect(kept.orderingKey).toBe('s17');
    const again = replayMessage(poison, topology, 'learnflow.interaction.received');
    expect(again.attributes).toEqual({ 'ce-id': 'i-2', [REPLAY_ATTRIBUTE]: 'fn.routeTriage.interaction' });
    expect(again.orderingKey).toBeUndefined();
  });

  it('selects by --all, --id (dead-letter id, original id or ce-id) and --subscription', () => {
    expect(matches(fromBridge, {})).toBe(false);
    expect(matches(fromBridge, { all: true })).toBe(true);
    expect(matches(poison, { id: 'orig-2' })).toBe(true);
    expect(matches(poison, { id: 'i-2' })).toBe(true);
    expect(matches(poison, { id: 'dl-1' })).toBe(false);
    expect(matches(fromBridge, { subscription: 'fn.updateProgress.interaction' })).toBe(true);
    expect(matches(poison, { all: true, subscription: 'fn.updateProgress.interaction' })).toBe(false);
  });

  it("every subscription's filter lets its own replays and ordinary messages through, and no one else's", () => {
    const subs = [
      ...topology.subscriptions.filter((s) => s.topic !== topology.deadLetterTopic),
      instanceSubscription(topology, 'school-1'),
    ];
    for (const s of subs) {
      expect(s.filter, s.name).toBeDefined();
      const admits = compileFilter(s.filter!);
      const base: Record<string, string> = s.name.startsWith('instance.') ? { 'ldr-audience': 'all' } : {};
      expect(admits({ ...base }), s.name).toBe(true);
      expect(admits({ ...base, [REPLAY_ATTRIBUTE]: s.name }), s.name).toBe(true);
      for (const other of subs.filter((o) => o.topic === s.topic && o.name !== s.name)) {
        expect(admits({ ...base, [REPLAY_ATTRIBUTE]: other.name }), `${s.name} ← ${other.name}`).toBe(false);
      }
    }
    expect(compileFilter(instanceSubscription(topology, 'school-1').filter!)({})).toBe(false);
  });
});
