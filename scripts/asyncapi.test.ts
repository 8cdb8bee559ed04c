import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';
import { describe, expect, it } from 'vitest';
import { TYPES } from '../shared/events.ts';
import { loadTopology } from '../shared/topology.ts';
import { asyncApiPath, buildAsyncApi, renderAsyncApi } from './asyncapi.ts';

describe('docs/asyncapi.json', () => {
  it('is what `npm run asyncapi` generates (no drift)', () => {
    expect(readFileSync(asyncApiPath, 'utf8')).toBe(renderAsyncApi());
  });

  it('parses with @asyncapi/parser without errors', { timeout: 30_000 }, async () => {
    const { document, diagnostics } = await new Parser().parse(readFileSync(asyncApiPath, 'utf8'));
    expect(diagnostics.filter((d) => d.severity === 0)).toEqual([]);
    expect(document).toBeDefined();
    expect(document!.channels().length).toBe(loadTopology().topics.length + 1);
  });

  it('a broken document is reported (the check can fail)', { timeout: 30_000 }, async () => {
    const doc = buildAsyncApi() as any;
    doc.operations.publish_learnflow_interaction_received.action = 'publish';
    const { diagnostics } = await new Parser().parse(JSON.stringify(doc));
    expect(diagnostics.filter((d) => d.severity === 0).length).toBeGreaterThan(0);
  });

  it('describes every topic, its ordering key and subscriptions, and every event type with a real schema', () => {
    const doc = buildAsyncApi() as any;
    const t = loadTopology();
    for (const topic of t.topics) {
      const ch = doc.channels[topic.name.replace(/[^A-Za-z0-9_-]/g, '_')];
      expect(ch.address).toBe(topic.name);
      expect(ch['x-ordering-key']).toBe(topic.orderingKey);
    }
    const subs = Object.values(doc.operations)
      .filter((o: any) => o.action === 'receive')
      .map((o: any) => o.title);
    for (const s of t.subscriptions) expect(subs).toContain(s.name);
    expect(subs).toContain('partner.{slug}.pull');
    expect(subs).toContain('instance.{id}.content');
    const types = Object.values(doc.components.messages).map((m: any) => m.name);
    for (const type of Object.values(TYPES)) expect(types).toContain(type);
    const interaction = doc.components.messages.interaction;
    expect(interaction.headers.properties['ce-type'].const).toBe(TYPES.interaction);
    expect(interaction.payload.oneOf).toHaveLength(10);
    expect(JSON.stringify(doc.components.messages.interactionPartner.payload)).toContain('learnerRef');
  });
});
