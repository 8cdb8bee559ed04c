import { readFileSync } from 'node:fs';
import { z } from 'zod';
import topologyJson from './topology.json' with { type: 'json' };

const subscription = z.object({
  name: z.string(),
  topic: z.string(),
  ordered: z.boolean(),
  function: z.string().optional(),
  consumer: z.string().optional(),
  deadLetter: z.boolean().optional(),
  exactlyOnce: z.boolean().optional(),
  filter: z.string().optional(),
  /** this subscription's own retry back-off [min, max] seconds instead of the defaults */
  backoffSeconds: z.tuple([z.number().min(0).max(600), z.number().min(0).max(600)]).optional(),
});

const topologySchema = z.object({
  project: z.string(),
  region: z.string(),
  deadLetterTopic: z.string(),
  defaults: z.object({
    ackDeadlineSeconds: z.number().int(),
    maxDeliveryAttempts: z.number().int().min(5).max(100),
    minimumBackoffSeconds: z.number(),
    maximumBackoffSeconds: z.number(),
    messageRetentionSeconds: z.number().int(),
  }),
  topics: z.array(
    z
      .object({
        name: z.string(),
        orderingKey: z.string().nullable(),
        /** publish with shard(orderingKey, N) instead of the key itself, everywhere (see shared/ordering.ts) */
        orderingKeyShards: z.number().int().min(1).max(100_000).optional(),
        /** the same, only when publishing to the Pub/Sub emulator (it keeps a thread per distinct key) */
        emulatorOrderingKeyShards: z.number().int().min(1).max(100_000).optional(),
      })
      .passthrough(),
  ),
  functions: z.array(
    z.object({
      name: z.string(),
      trigger: z.enum(['https', 'pubsub']),
      public: z.boolean().optional(),
      topics: z.array(z.string()).optional(),
      /** every environment variable the function reads: Terraform sets these, the boot test gives exactly these */
      env: z.array(z.string().regex(/^[A-Z][A-Z0-9_]*$/)),
    }),
  ),
  subscriptions: z.array(subscription),
  /** scheduled calls of a function's route (Cloud Scheduler in production, a timer in the local suite) */
  schedules: z
    .array(z.object({ name: z.string(), function: z.string(), path: z.string(), schedule: z.string() }))
    .default([]),
  patterns: z.object({
    partner: z.object({
      topic: z.string(),
      orderingKey: z.string(),
      subscription: subscription.omit({ topic: true, name: true }).extend({ name: z.string() }),
    }),
    instance: z.object({ subscription }),
  }),
});

export type Topology = z.infer<typeof topologySchema>;
export type SubscriptionSpec = z.infer<typeof subscription>;

export const topologyPath = new URL('./topology.json', import.meta.url);

let bundled: Topology | undefined;

/** The topology: the one bundled with the code (no file read), or a file given explicitly (tests, tools). */
export function loadTopology(path?: URL | string): Topology {
  if (path) return topologySchema.parse(JSON.parse(readFileSync(path, 'utf8')));
  bundled ??= topologySchema.parse(topologyJson);
  return bundled;
}

export function functionSpec(name: string) {
  const spec = loadTopology().functions.find((f) => f.name === name);
  if (!spec) throw new Error(`no function ${name} in shared/topology.json`);
  return spec;
}

const fill = (pattern: string, vars: Record<string, string>) =>
  pattern.replace(/\{(\w+)\}/g, (_, k: string) => vars[k] ?? `{${k}}`);

export function partnerNames(t: Topology, slug: string) {
  const p = t.patterns.partner;
  return {
    topic: fill(p.topic, { slug }),
    subscription: {
      ...p.subscription,
      name: fill(p.subscription.name, { slug }),
      topic: fill(p.topic, { slug }),
    },
  };
}

export function instanceSubscription(t: Topology, id: string): SubscriptionSpec {
  const s = t.patterns.instance.subscription;
  return { ...s, name: fill(s.name, { id }), filter: s.filter ? fill(s.filter, { id }) : undefined };
}
