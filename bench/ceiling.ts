/**
 * The bus ceiling (issue 14): one bundle that serves every function name of the topology (by
 * FUNCTION_TARGET) the way the real functions are served — `serveHttp` for HTTPS, `registerEventFunction`
 * for Pub/Sub-triggered ones, reading the same push body — and publishes exactly what the real function
 * would (bench/ceiling-events.ts) through the same `createBus` publisher, with no store, Redis,
 * authentication or validation. The suite runs it instead of dist/ when started with `functionSource`
 * (bench/suite-process.ts, LDR_BENCH_FUNCTION_SOURCE); bench/ceiling-run.ts builds and measures it.
 *
 * mirrorToPartners reads the partner records from the local registry file (registry.json, two levels
 * above PARTNER_SECRETS_DIR: the file the suite writes Firestore `partners` from), re-read at most once a
 * second as the real function re-reads Firestore; the secrets from PARTNER_SECRETS_DIR as the real one.
 * Functions the bench does not drive answer 404 (HTTPS) or acknowledge (Pub/Sub).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRules } from '../shared/domain/triage.ts';
import defaultRules from '../shared/domain/triage-rules.json' with { type: 'json' };
import { registerEventFunction } from '../shared/event-function.ts';
import { httpFunction, route } from '../shared/http.ts';
import { dirPartnerSecrets } from '../shared/partner-secrets.ts';
import type { Partner } from '../shared/registry.ts';
import { createRuntime } from '../shared/runtime.ts';
import { serveHttp } from '../shared/serve.ts';
import { loadTopology, partnerNames } from '../shared/topology.ts';
import {
  createProgressState,
  ingestPublications,
  mirrorPublications,
  type Publication,
  triagePublications,
} from './ceiling-events.ts';

const name = process.env.FUNCTION_TARGET ?? '';
const spec = loadTopology().functions.find((f) => f.name === name);
if (!spec) throw new Error(`the ceiling serves the topology's functions; no function ${name}`);
const rt = createRuntime(name);
const publishAll = (ps: Publication[]) =>
  Promise.all(ps.map((p) => rt.bus().publish(p.topic, p.event, p.orderingKey)));

if (name === 'ingestInteraction') {
  serveHttp(
    name,
    httpFunction({
      log: rt.log,
      health: rt.health(['pubsub']),
      routes: [
        route('POST', '/', async ({ req }) => {
          const ps = ingestPublications(req.body, new Date());
          await publishAll(ps);
          const results = ps.map((p) => ({ id: (p.event.data as { id: string }).id, status: 'accepted' }));
          return { status: 202, body: { accepted: results.length, duplicates: 0, results } };
        }),
      ],
    }),
  );
} else if (name === 'routeTriage') {
  const rules = loadRules(defaultRules);
  registerEventFunction(rt, async (ev) => {
    await publishAll(triagePublications(ev, rules));
  });
} else if (name === 'updateProgress') {
  const progress = createProgressState();
  registerEventFunction(
    rt,
    async (ev) => {
      // one after another, as the real function publishes its outbox
      for (const p of progress(ev)) await rt.bus().publish(p.topic, p.event, p.orderingKey);
    },
    // the schedule's relay: nothing is ever left unsent here
    { routes: [route('POST', '/outbox/relay', async () => ({ status: 200, body: { published: 0 } }))] },
  );
} else if (name === 'mirrorToPartners') {
  const secretsDir = rt.config.PARTNER_SECRETS_DIR ?? '';
  const registryFile = join(secretsDir, '..', '..', 'registry.json');
  const secrets = dirPartnerSecrets(secretsDir);
  const topology = loadTopology();
  let cached:
    | { at: number; list: Promise<Array<{ partner: Partner; secret: Buffer; topic: string }>> }
    | undefined;
  const partners = () => {
    if (!cached || Date.now() - cached.at > 1000) {
      const records = existsSync(registryFile)
        ? Object.values(
            (JSON.parse(readFileSync(registryFile, 'utf8')) as { partners?: Record<string, Partner> })
              .partners ?? {},
          )
        : [];
      const list = Promise.all(
        records.map(async (partner) => ({
          partner,
          secret: await secrets.get(partner.slug),
          topic: partnerNames(topology, partner.slug).topic,
        })),
      );
      cached = { at: Date.now(), list };
    }
    return cached.list;
  };
  registerEventFunction(rt, async (ev) => {
    await publishAll(mirrorPublications(ev, await partners()));
  });
} else if (spec.trigger === 'pubsub') {
  registerEventFunction(rt, async () => {});
} else {
  serveHttp(name, httpFunction({ log: rt.log, health: rt.health([]), routes: [] }));
}
