import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Firestore } from '@google-cloud/firestore';
import type { Message, PubSub, Subscription } from '@google-cloud/pubsub';
import { ensurePartnerSecret } from '../shared/partner-secrets.ts';
import {
  INSTANCES,
  type Instance,
  instanceSchema,
  PARTNERS,
  type Partner,
  partnerSchema,
} from '../shared/registry.ts';
import {
  instanceSubscription,
  partnerNames,
  type SubscriptionSpec,
  type Topology,
} from '../shared/topology.ts';
import { compileFilter } from './filter.ts';
import { ensureSubscription, ensureTopic } from './provision.ts';

/**
 * The local registry of partners and app-instances: `<dataDir>/registry.json` is what survives a
 * restart of the in-memory emulators; `applyRegistry` writes the records to Firestore, provisions each
 * partner's topic and pull subscription and each instance's content subscription, and creates the
 * partner's HMAC secret under `<dataDir>/secrets/partners/`.
 */
export interface RegistryFile {
  partners: Record<string, Partner>;
  instances: Record<string, Instance>;
}

export const registryPath = (dataDir: string) => join(dataDir, 'registry.json');
export const partnerSecretsDir = (dataDir: string) => join(dataDir, 'secrets', 'partners');

export function readRegistry(dataDir: string): RegistryFile {
  const p = registryPath(dataDir);
  if (!existsSync(p)) return { partners: {}, instances: {} };
  return JSON.parse(readFileSync(p, 'utf8'));
}

export function writeRegistry(dataDir: string, reg: RegistryFile) {
  writeFileSync(registryPath(dataDir), `${JSON.stringify(reg, null, 2)}\n`);
}

export function upsertPartner(dataDir: string, input: unknown): Partner {
  const partner = partnerSchema.parse(input);
  const reg = readRegistry(dataDir);
  reg.partners[partner.slug] = partner;
  writeRegistry(dataDir, reg);
  ensurePartnerSecret(partnerSecretsDir(dataDir), partner.slug);
  return partner;
}

export function upsertInstance(dataDir: string, input: unknown): Instance {
  const instance = instanceSchema.parse(input);
  const reg = readRegistry(dataDir);
  reg.instances[instance.id] = instance;
  writeRegistry(dataDir, reg);
  return instance;
}

export function removeEntry(dataDir: string, kind: 'partners' | 'instances', key: string): boolean {
  const reg = readRegistry(dataDir);
  if (!reg[kind][key]) return false;
  delete reg[kind][key];
  writeRegistry(dataDir, reg);
  return true;
}

/** Filtered subscriptions, evaluated here because the emulator ignores filters (LOCAL-STACK.md). */
export class FilterRelays {
  private relays = new Map<string, Subscription>();
  constructor(private pubsub: PubSub) {}

  static visibleTopic = (name: string) => `local-filtered.${name}`;

  async ensure(topology: Topology, spec: SubscriptionSpec) {
    if (!spec.filter) return ensureSubscription(this.pubsub, topology, spec);
    const target = FilterRelays.visibleTopic(spec.name);
    await ensureTopic(this.pubsub, target);
    await ensureSubscription(this.pubsub, topology, { ...spec, topic: target, filter: undefined });
    const hidden = `local-relay.${spec.name}`;
    await ensureSubscription(this.pubsub, topology, {
      name: hidden,
      topic: spec.topic,
      ordered: true,
      filter: spec.filter,
    });
    if (this.relays.has(spec.name)) return;
    const matches = compileFilter(spec.filter);
    const out = this.pubsub.topic(target, { messageOrdering: true });
    const sub = this.pubsub.subscription(hidden);
    sub.on('message', (m: Message) => {
      if (!matches(m.attributes)) return m.ack();
      out
        .publishMessage({
          data: m.data,
          attributes: m.attributes,
          ...(m.orderingKey ? { orderingKey: m.orderingKey } : {}),
        })
        .then(
          () => m.ack(),
          () => {
            if (m.orderingKey) out.resumePublishing(m.orderingKey);
            m.nack();
          },
        );
    });
    sub.on('error', () => {});
    this.relays.set(spec.name, sub);
  }

  async remove(name: string) {
    const sub = this.relays.get(name);
    this.relays.delete(name);
    await sub?.close();
    await this.pubsub
      .subscription(`local-relay.${name}`)
      .delete()
      .catch(() => {});
    await this.pubsub
      .subscription(name)
      .delete()
      .catch(() => {});
  }

  async closeAll() {
    await Promise.all([...this.relays.values()].map((s) => s.close().catch(() => {})));
    this.relays.clear();
  }
}

export async function applyRegistry(opts: {
  dataDir: string;
  topology: Topology;
  pubsub: PubSub;
  firestore: Firestore;
  relays: FilterRelays;
}) {
  const { dataDir, topology, pubsub, firestore, relays } = opts;
  const reg = readRegistry(dataDir);
  for (const p of Object.values(reg.partners)) {
    ensurePartnerSecret(partnerSecretsDir(dataDir), p.slug);
    const names = partnerNames(topology, p.slug);
    await ensureTopic(pubsub, names.topic);
    await ensureSubscription(pubsub, topology, names.subscription);
    await firestore.collection(PARTNERS).doc(p.slug).set(p);
  }
  for (const i of Object.values(reg.instances)) {
    await relays.ensure(topology, instanceSubscription(topology, i.id));
    await firestore.collection(INSTANCES).doc(i.id).set(i);
  }
  // what was removed from the registry leaves Firestore and the emulator too
  for (const doc of (await firestore.collection(PARTNERS).get()).docs) {
    if (reg.partners[doc.id]) continue;
    await doc.ref.delete();
    const names = partnerNames(topology, doc.id);
    await pubsub
      .subscription(names.subscription.name)
      .delete()
      .catch(() => {});
    await pubsub
      .topic(names.topic)
      .delete()
      .catch(() => {});
  }
  for (const doc of (await firestore.collection(INSTANCES).get()).docs) {
    if (reg.instances[doc.id]) continue;
    await doc.ref.delete();
    await relays.remove(instanceSubscription(topology, doc.id).name);
  }
  return reg;
}
