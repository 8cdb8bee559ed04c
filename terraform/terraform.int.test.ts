/**
 * Offline checks of the Terraform code.
 *
 * The Google provider cannot be downloaded here, so `terraform init/validate/plan` cannot run.
 * Instead: `terraform fmt -check` (when terraform is on PATH) and structural assertions on every
 * `.tf` file parsed with @cdktf/hcl2json, checked against shared/topology.json.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '@cdktf/hcl2json';
import { beforeAll, describe, expect, it } from 'vitest';

const TF_ROOT = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(TF_ROOT, '..');
const TOPOLOGY_PATH = path.join(REPO_ROOT, 'shared', 'topology.json');

interface Topic {
  name: string;
  orderingKey: string | null;
  publishedBy: string;
  eventType?: string;
}
interface Fn {
  name: string;
  trigger: 'https' | 'pubsub';
  public?: boolean;
  topics?: string[];
}
interface Sub {
  name: string;
  topic: string;
  ordered: boolean;
  function?: string;
  consumer?: string;
  deadLetter?: boolean;
}
interface Topology {
  deadLetterTopic: string;
  defaults: Record<string, number>;
  topics: Topic[];
  functions: Fn[];
  subscriptions: Sub[];
  patterns: Record<string, unknown>;
}
const topology: Topology = JSON.parse(readFileSync(TOPOLOGY_PATH, 'utf8'));

type Body = Record<string, any>;
interface Block {
  dir: string; // relative to terraform/, e.g. "modules/function"
  file: string; // relative to terraform/
  kind: 'resource' | 'module' | 'variable' | 'output' | 'data';
  type: string; // resource/data type; '' for module/variable/output
  name: string;
  body: Body;
}
interface Parsed {
  file: string;
  dir: string;
  json: Body;
}

const files: Parsed[] = [];
const blocks: Block[] = [];
const localsByDir = new Map<string, Body>();

function listTfFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    if (entry === '.terraform' || entry === 'node_modules') continue;
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) out.push(...listTfFiles(full));
    else if (entry.endsWith('.tf')) out.push(full);
  }
  return out.sort();
}

function listDirs(dir: string): string[] {
  return readdirSync(dir)
    .filter((e) => statSync(path.join(dir, e)).isDirectory())
    .sort();
}

/** Whitespace-normalised text of an HCL value (expressions come back as "${...}" strings). */
function text(v: unknown): string {
  return (typeof v === 'string' ? v : JSON.stringify(v ?? null).replace(/\\"/g, '"'))
    .replace(/\s+/g, ' ')
    .trim();
}

/** Deep copy without validation blocks and prose, so rules quoted in error messages don't count. */
function withoutProse(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutProse);
  if (v && typeof v === 'object') {
    const out: Body = {};
    for (const [k, val] of Object.entries(v)) {
      if (k === 'validation' || k === 'description' || k === 'error_message') continue;
      out[k] = withoutProse(val);
    }
    return out;
  }
  return v;
}

function find(kind: Block['kind'], opts: { dir?: string; type?: string; name?: string } = {}): Block[] {
  return blocks.filter(
    (b) =>
      b.kind === kind &&
      (opts.dir === undefined || b.dir === opts.dir) &&
      (opts.type === undefined || b.type === opts.type) &&
      (opts.name === undefined || b.name === opts.name),
  );
}

function one(kind: Block['kind'], opts: { dir?: string; type?: string; name?: string }): Block {
  const found = find(kind, opts);
  expect(found, `expected exactly one ${kind} ${JSON.stringify(opts)}`).toHaveLength(1);
  return found[0]!;
}

/** Module calls whose source is the given module directory (resolved from the caller). */
function callsOf(moduleDir: string): Block[] {
  return find('module').filter(
    (m) => path.resolve(TF_ROOT, m.dir, String(m.body.source)) === path.join(TF_ROOT, moduleDir),
  );
}

const kebab = (name: string) => name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

beforeAll(async () => {
  for (const full of listTfFiles(TF_ROOT)) {
    const file = path.relative(TF_ROOT, full);
    const dir = path.dirname(file);
    const json = (await parse(file, readFileSync(full, 'utf8'))) as Body;
    files.push({ file, dir, json });
    for (const [type, byName] of Object.entries<Body>(json.resource ?? {}))
      for (const [name, list] of Object.entries<Body[]>(byName))
        blocks.push({ dir, file, kind: 'resource', type, name, body: list[0]! });
    for (const [type, byName] of Object.entries<Body>(json.data ?? {}))
      for (const [name, list] of Object.entries<Body[]>(byName))
        blocks.push({ dir, file, kind: 'data', type, name, body: list[0]! });
    for (const kind of ['module', 'variable', 'output'] as const)
      for (const [name, list] of Object.entries<Body[]>(json[kind] ?? {}))
        blocks.push({ dir, file, kind, type: '', name, body: list[0]! });
    for (const l of json.locals ?? []) localsByDir.set(dir, { ...(localsByDir.get(dir) ?? {}), ...l });
  }
});

// ---------------------------------------------------------------------------------------------

describe('terraform fmt', () => {
  const probe = spawnSync('terraform', ['version'], { encoding: 'utf8' });
  const hasTerraform = !probe.error && probe.status === 0;
  if (!hasTerraform)
    console.warn('terraform is not on PATH: skipping `terraform fmt -check -recursive terraform`');

  it.skipIf(!hasTerraform)(
    hasTerraform
      ? 'terraform fmt -check -recursive terraform reports nothing to change'
      : 'terraform fmt -check -recursive terraform (SKIPPED: terraform is not on PATH)',
    () => {
      const r = spawnSync('terraform', ['fmt', '-check', '-recursive', 'terraform'], {
        cwd: REPO_ROOT,
        encoding: 'utf8',
      });
      expect(r.stdout.trim(), `files needing terraform fmt:\n${r.stdout}`).toBe('');
      expect(r.status).toBe(0);
    },
  );
});

describe('module layout', () => {
  const moduleDirs = listDirs(path.join(TF_ROOT, 'modules'));

  it('has the expected modules', () => {
    for (const m of [
      'topic',
      'subscription',
      'function',
      'partner',
      'storage',
      'cloudsql',
      'firestore',
      'secrets',
    ])
      expect(moduleDirs).toContain(m);
  });

  it('every module has main.tf, variables.tf, outputs.tf, versions.tf and README.md', () => {
    const missing = moduleDirs.flatMap((m) =>
      ['main.tf', 'variables.tf', 'outputs.tf', 'versions.tf', 'README.md']
        .filter((f) => !existsSync(path.join(TF_ROOT, 'modules', m, f)))
        .map((f) => `modules/${m}/${f}`),
    );
    expect(missing).toEqual([]);
  });

  it('every module, the stack and both envs pin hashicorp/google as a version range', () => {
    const roots = [...moduleDirs.map((m) => `modules/${m}`), 'stack', 'envs/dev', 'envs/prod'];
    for (const dir of roots) {
      const f = files.find((p) => p.file === `${dir}/versions.tf`);
      expect(f, `${dir}/versions.tf`).toBeDefined();
      const google = f!.json.terraform?.[0]?.required_providers?.[0]?.google;
      expect(google?.source, dir).toBe('hashicorp/google');
      expect(String(google?.version), dir).toMatch(/^>=\s*\d+(\.\d+)*\s*,\s*<\s*\d+(\.\d+)*$/);
    }
  });

  it('every module names its main resource "main" in main.tf', () => {
    for (const m of moduleDirs) {
      const mains = find('resource', { dir: `modules/${m}`, name: 'main' }).filter(
        (b) => b.file === `modules/${m}/main.tf`,
      );
      expect(mains.length, `modules/${m}`).toBe(1);
    }
  });

  it('every variable is typed and described; every module validates its inputs with optional() defaults', () => {
    for (const m of moduleDirs) {
      const vars = find('variable', { dir: `modules/${m}` });
      expect(vars.length, m).toBeGreaterThan(0);
      for (const v of vars) {
        expect(v.body.type, `modules/${m} var.${v.name} type`).toBeDefined();
        expect(v.body.description, `modules/${m} var.${v.name} description`).toBeTruthy();
      }
      expect(
        vars.some((v) => (v.body.validation ?? []).length > 0),
        `modules/${m} has no validation block`,
      ).toBe(true);
      const objectVars = vars.filter((v) => text(v.body.type).includes('object('));
      if (objectVars.length > 0)
        expect(
          objectVars.some((v) => text(v.body.type).includes('optional(')),
          `modules/${m}: object variables use optional(type, default)`,
        ).toBe(true);
    }
  });

  it('collections use for_each; count is only a 0/1 switch', () => {
    for (const b of [...find('resource'), ...find('module')]) {
      if (b.body.count === undefined) continue;
      expect(text(b.body.count), `${b.file} ${b.type}.${b.name}`).toMatch(/\?\s*(1\s*:\s*0|0\s*:\s*1)\s*\}$/);
    }
  });
});

describe('topology drives topics and subscriptions', () => {
  const stackLocals = () => localsByDir.get('stack') ?? {};

  it('the stack reads shared/topology.json with jsondecode(file(...))', () => {
    const m = /^\$\{jsondecode\(file\("\$\{path\.module\}\/([^"]+)"\)\)\}$/.exec(
      text(stackLocals().topology),
    );
    expect(m, 'local.topology = jsondecode(file("${path.module}/…/shared/topology.json"))').not.toBeNull();
    expect(path.resolve(TF_ROOT, 'stack', m![1]!)).toBe(TOPOLOGY_PATH);
    expect(text(stackLocals().defaults)).toBe('${local.topology.defaults}');
  });

  it('every topology topic is a module.topic instance (for_each over all topics, keyed by name)', () => {
    const topic = one('module', { dir: 'stack', name: 'topic' });
    expect(callsOf('modules/topic').map((c) => `${c.dir}:${c.name}`)).toContain('stack:topic');
    expect(text(topic.body.for_each)).toMatch(
      /^\$\{\{ ?for (\w+) in local\.topology\.topics ?: ?\1\.name ?=> ?\1 ?\}\}$/,
    );
    expect(text(topic.body.name)).toBe('${each.key}');
    expect(text(topic.body.ordering_key)).toBe('${each.value.orderingKey}');
  });

  it('every topology subscription is a module.subscription instance (for_each over all, keyed by name)', () => {
    const sub = one('module', { dir: 'stack', name: 'subscription' });
    expect(path.resolve(TF_ROOT, 'stack', sub.body.source)).toBe(path.join(TF_ROOT, 'modules/subscription'));
    expect(text(sub.body.for_each)).toMatch(
      /^\$\{\{ ?for (\w+) in local\.topology\.subscriptions ?: ?\1\.name ?=> ?\1 ?\}\}$/,
    );
    expect(text(sub.body.name)).toBe('${each.key}');
    expect(text(sub.body.topic)).toBe('${module.topic[each.value.topic].id}');
    expect(text(sub.body.ordered)).toBe('${each.value.ordered}');
  });

  it('topics and subscriptions are only ever created by the topic / subscription modules', () => {
    const topicRes = find('resource', { type: 'google_pubsub_topic' });
    const subRes = find('resource', { type: 'google_pubsub_subscription' });
    expect(topicRes.map((b) => `${b.dir}:${b.name}`)).toEqual(['modules/topic:main']);
    expect(subRes.map((b) => `${b.dir}:${b.name}`)).toEqual(['modules/subscription:main']);
  });

  it('the partner pattern names partner.<slug>.events / partner.<slug>.pull from the topology', () => {
    const partner = one('module', { dir: 'stack', name: 'partner' });
    expect(path.resolve(TF_ROOT, 'stack', partner.body.source)).toBe(path.join(TF_ROOT, 'modules/partner'));
    expect(text(partner.body.for_each)).toBe('${var.partners}');
    expect(text(partner.body.slug)).toBe('${each.key}');
    expect(text(partner.body.topic_name)).toBe(
      '${replace(local.topology.patterns.partner.topic, "{slug}", each.key)}',
    );
    expect(text(partner.body.subscription_name)).toBe(
      '${replace(local.topology.patterns.partner.subscription.name, "{slug}", each.key)}',
    );
    expect(text(partner.body.ordering_key)).toBe('${local.topology.patterns.partner.orderingKey}');
    expect(text(partner.body.delivery.exactly_once)).toBe(
      '${try(local.topology.patterns.partner.subscription.exactlyOnce, true)}',
    );
    expect(text(partner.body.delivery.ordered)).toBe(
      '${local.topology.patterns.partner.subscription.ordered}',
    );
    // and the partner module builds them with the shared modules
    const inPartner = find('module', { dir: 'modules/partner' });
    expect(inPartner.map((m) => `${m.name}:${m.body.source}`).sort()).toEqual([
      'subscription:../subscription',
      'topic:../topic',
    ]);
    expect(text(one('module', { dir: 'modules/partner', name: 'topic' }).body.name)).toBe(
      '${var.topic_name}',
    );
    expect(text(one('module', { dir: 'modules/partner', name: 'subscription' }).body.name)).toBe(
      '${var.subscription_name}',
    );
  });

  it('the instance pattern creates instance.<id>.content on the content topic with its filter', () => {
    const inst = one('module', { dir: 'stack', name: 'instance_subscription' });
    expect(path.resolve(TF_ROOT, 'stack', inst.body.source)).toBe(path.join(TF_ROOT, 'modules/subscription'));
    expect(text(inst.body.for_each)).toBe('${var.app_instances}');
    expect(text(inst.body.name)).toBe(
      '${replace(local.topology.patterns.instance.subscription.name, "{id}", each.key)}',
    );
    expect(text(inst.body.topic)).toBe(
      '${module.topic[local.topology.patterns.instance.subscription.topic].id}',
    );
    expect(text(inst.body.filter)).toBe(
      '${replace(local.topology.patterns.instance.subscription.filter, "{id}", each.key)}',
    );
    expect(text(inst.body.exactly_once)).toContain('patterns.instance.subscription.exactlyOnce');
  });
});

describe('Pub/Sub functions are triggered by their topics', () => {
  const pubsubFns = topology.functions.filter((f) => f.trigger === 'pubsub');

  it('the topology has one fn.* subscription per (Pub/Sub function, topic) and no stray ones', () => {
    const wanted = pubsubFns.flatMap((f) => (f.topics ?? []).map((t) => `${f.name} <- ${t}`)).sort();
    const declared = topology.subscriptions
      .filter((s) => s.function)
      .map((s) => `${s.function} <- ${s.topic}`)
      .sort();
    expect(declared).toEqual(wanted);
    expect(pubsubFns.length).toBeGreaterThan(0);
  });

  it('every topology function is a module.function instance keyed by name', () => {
    const fn = one('module', { dir: 'stack', name: 'function' });
    expect(path.resolve(TF_ROOT, 'stack', fn.body.source)).toBe(path.join(TF_ROOT, 'modules/function'));
    expect(text(fn.body.for_each)).toMatch(
      /^\$\{\{ ?for (\w+) in local\.topology\.functions ?: ?\1\.name ?=> ?\1 ?\}\}$/,
    );
    expect(text(fn.body.entry_point)).toBe('${each.key}');
    expect(text(fn.body.trigger)).toBe('${each.value.trigger}');
  });

  it('fn.* subscriptions push to their function URL, on their topic, as the push identity', () => {
    const locals = localsByDir.get('stack')!;
    expect(text(locals.subscription_function)).toMatch(
      /^\$\{\{ ?for (\w+) in local\.topology\.subscriptions ?: ?\1\.name ?=> ?\1\.function if try\(\1\.function, null\) != null ?\}\}$/,
    );
    const push = text(locals.push);
    expect(push).toMatch(/for (\w+), (\w+) in local\.subscription_function/);
    const fnVar = /for \w+, (\w+) in local\.subscription_function/.exec(push)![1]!;
    const targets = [...push.matchAll(/module\.function\[([^\]]+)\]/g)].map((m) => m[1]);
    expect(targets.length).toBeGreaterThan(0);
    expect(new Set(targets), "every push endpoint/audience targets the subscription's own function").toEqual(
      new Set([fnVar]),
    );
    expect(push).toContain('topics%2F${local.subscriptions[name].topic}');
    expect(push).toContain('service_account_email = google_service_account.pubsub_push.email');
    const sub = one('module', { dir: 'stack', name: 'subscription' });
    expect(text(sub.body.push)).toBe('${try(local.push[each.key], null)}');
  });

  it('event functions are invokable only by the push identity and never through an Eventarc-managed subscription', () => {
    const fn = one('module', { dir: 'stack', name: 'function' });
    expect(text(fn.body.invokers)).toBe(
      '${{ for k, m in { pubsub-push = google_service_account.pubsub_push.member } : k => m if each.value.trigger == "pubsub" }}',
    );
    const inv = one('resource', {
      dir: 'modules/function',
      type: 'google_cloud_run_service_iam_member',
      name: 'invoker',
    });
    expect(inv.body.role).toBe('roles/run.invoker');
    expect(text(inv.body.for_each)).toBe('${var.invokers}');
    for (const call of callsOf('modules/function'))
      expect(call.body.event_trigger, call.file).toBeUndefined();
  });

  it('the function module keeps retries on for an (optional) Eventarc trigger', () => {
    const f = one('resource', { dir: 'modules/function', type: 'google_cloudfunctions2_function' });
    const trig = f.body.dynamic?.event_trigger?.[0];
    expect(trig, 'dynamic "event_trigger"').toBeDefined();
    expect(trig.content[0].retry_policy).toBe('RETRY_POLICY_RETRY');
    expect(trig.content[0].event_type).toBe('google.cloud.pubsub.topic.v1.messagePublished');
  });

  it('plan fails when the topology and the fn.* subscriptions disagree (precondition)', () => {
    const checks = one('resource', { dir: 'stack', type: 'terraform_data', name: 'topology_checks' });
    const conditions = (checks.body.lifecycle[0].precondition as Body[]).map((p) => text(p.condition));
    expect(conditions).toContain('${local.wanted_triggers == local.declared_triggers}');
  });
});

describe('retry policy and dead-lettering', () => {
  it('every subscription resource has a retry policy and a dead-letter policy', () => {
    const subs = find('resource', { type: 'google_pubsub_subscription' });
    expect(subs.length).toBeGreaterThan(0);
    for (const s of subs) {
      const retry = s.body.retry_policy?.[0];
      expect(retry?.minimum_backoff, `${s.file} retry_policy`).toBeTruthy();
      expect(retry?.maximum_backoff, `${s.file} retry_policy`).toBeTruthy();
      const dl = s.body.dynamic?.dead_letter_policy?.[0] ?? s.body.dead_letter_policy?.[0];
      expect(dl, `${s.file} dead_letter_policy`).toBeDefined();
      const content = dl.content?.[0] ?? dl;
      expect(content.dead_letter_topic, `${s.file} dead_letter_topic`).toBeTruthy();
      expect(content.max_delivery_attempts, `${s.file} max_delivery_attempts`).toBeTruthy();
      if (dl.for_each) expect(text(dl.for_each)).toBe('${var.dead_letter == null ? [] : [var.dead_letter]}');
    }
  });

  it('callers must decide on dead-lettering: the variable has no default and every call sets it', () => {
    const v = one('variable', { dir: 'modules/subscription', name: 'dead_letter' });
    expect('default' in v.body).toBe(false);
    const calls = callsOf('modules/subscription');
    expect(calls.length).toBeGreaterThanOrEqual(3);
    for (const c of calls) {
      expect(c.body.dead_letter, `${c.file} module.${c.name} dead_letter`).toBeDefined();
      expect(c.body.retry, `${c.file} module.${c.name} retry`).toBeDefined();
      const dl = text(c.body.dead_letter);
      // null only for the dead-letter topic's own subscription (topology "deadLetter": false)
      if (/\bnull\b/.test(dl))
        expect(dl).toBe('${try(each.value.deadLetter, true) ? local.dead_letter : null}');
    }
  });

  it('dead-lettering goes to the topology dead-letter topic after defaults.maxDeliveryAttempts', () => {
    const stack = localsByDir.get('stack')!;
    expect(stack.dead_letter.topic).toBe('${module.topic[local.topology.deadLetterTopic].id}');
    expect(stack.dead_letter.max_delivery_attempts).toBe('${local.defaults.maxDeliveryAttempts}');
    expect(topology.defaults.maxDeliveryAttempts).toBe(5);
    expect(stack.retry.minimum_backoff_seconds).toBe('${local.defaults.minimumBackoffSeconds}');
    expect(stack.retry.maximum_backoff_seconds).toBe('${local.defaults.maximumBackoffSeconds}');
    const partner = one('module', { dir: 'stack', name: 'partner' });
    expect(text(partner.body.dead_letter_topic)).toBe('${local.dead_letter.topic}');
    expect(partner.body.delivery.max_delivery_attempts).toBe('${local.defaults.maxDeliveryAttempts}');
    const inPartner = one('module', { dir: 'modules/partner', name: 'subscription' });
    expect(inPartner.body.dead_letter.topic).toBe('${var.dead_letter_topic}');
    expect(inPartner.body.dead_letter.max_delivery_attempts).toBe('${var.delivery.max_delivery_attempts}');
  });

  it('only the dead-letter topic’s own subscription opts out of dead-lettering', () => {
    for (const s of topology.subscriptions)
      expect(s.deadLetter === false, s.name).toBe(s.topic === topology.deadLetterTopic);
  });

  it('the Pub/Sub service agent may publish to the dead-letter topic and subscribe to each source subscription', () => {
    const fwd = one('resource', {
      dir: 'modules/subscription',
      type: 'google_pubsub_subscription_iam_member',
      name: 'dead_letter_forwarder',
    });
    expect(fwd.body.role).toBe('roles/pubsub.subscriber');
    expect(text(fwd.body.subscription)).toBe('${google_pubsub_subscription.main.name}');
    expect(text(fwd.body.member)).toContain('var.pubsub_service_agent');
    expect(text(fwd.body.count)).toBe('${var.dead_letter == null ? 0 : 1}');

    expect(topology.topics.find((t) => t.name === topology.deadLetterTopic)?.publishedBy).toBe(
      'pubsub-dead-letter-policy',
    );
    const topic = one('module', { dir: 'stack', name: 'topic' });
    expect(text(topic.body.publishers)).toBe(
      '${{ for k, m in { pubsub-service-agent = "serviceAccount:${local.pubsub_service_agent}" } : k => m if each.value.publishedBy == "pubsub-dead-letter-policy" }}',
    );
    const pub = one('resource', { dir: 'modules/topic', type: 'google_pubsub_topic_iam_member' });
    expect(pub.body.role).toBe('roles/pubsub.publisher');
    expect(text(pub.body.topic)).toBe('${google_pubsub_topic.main.name}');
  });

  it('exactly-once delivery is on where a subscription is pulled, off for push', () => {
    const s = one('resource', { dir: 'modules/subscription', type: 'google_pubsub_subscription' });
    expect(text(s.body.enable_exactly_once_delivery)).toBe('${var.push == null ? var.exactly_once : false}');
    const call = one('module', { dir: 'stack', name: 'subscription' });
    expect(text(call.body.exactly_once)).toBe(
      '${contains(keys(local.push), each.key) ? false : try(each.value.exactlyOnce, true)}',
    );
  });
});

describe('functions and least privilege', () => {
  it('one google_cloudfunctions2_function, in the function module, runs as the module’s own service account', () => {
    const fns = find('resource', { type: 'google_cloudfunctions2_function' });
    expect(fns.map((f) => `${f.dir}:${f.name}`)).toEqual(['modules/function:main']);
    const sas = find('resource', { dir: 'modules/function', type: 'google_service_account' });
    expect(sas).toHaveLength(1);
    expect(sas[0]!.body.count).toBeUndefined();
    expect(sas[0]!.body.for_each).toBeUndefined();
    expect(text(fns[0]!.body.service_config[0].service_account_email)).toBe(
      `\${google_service_account.${sas[0]!.name}.email}`,
    );
    expect(text(sas[0]!.body.account_id)).toBe('${var.service_account.account_id}');
  });

  it('every topology function gets a distinct service account id', () => {
    const call = one('module', { dir: 'stack', name: 'function' });
    expect(call.body.service_account).toEqual({ account_id: '${local.function_sa_ids[each.key]}' });
    const locals = localsByDir.get('stack')!;
    expect(text(locals.function_sa_ids)).toContain('"fn-${id}"');
    expect(text(locals.function_ids)).toContain('replace(name, "/([a-z0-9])([A-Z])/", "$1-$2")');
    const ids = topology.functions.map((f) => `fn-${kebab(f.name)}`);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[a-z]([-a-z0-9]{4,28}[a-z0-9])$/);
  });

  it('no primitive role (owner, editor, viewer) is granted anywhere', () => {
    const offenders: string[] = [];
    const primitive = /roles\/(owner|editor|viewer)(?![\w.])/;
    for (const f of files) if (primitive.test(JSON.stringify(withoutProse(f.json)))) offenders.push(f.file);
    for (const env of ['dev', 'prod'])
      for (const ex of ['terraform.tfvars.example', 'backend.hcl.example']) {
        const p = path.join(TF_ROOT, 'envs', env, ex);
        if (existsSync(p) && primitive.test(readFileSync(p, 'utf8'))) offenders.push(`envs/${env}/${ex}`);
      }
    expect(offenders).toEqual([]);
    for (const t of ['google_project_iam_binding', 'google_project_iam_policy'])
      expect(find('resource', { type: t }), `${t} is authoritative`).toEqual([]);
  });

  it('allUsers is granted only by the function module, only to public HTTPS functions', () => {
    const holders = [...find('resource'), ...find('module'), ...find('data')]
      .filter((b) => /allUsers|allAuthenticatedUsers/.test(JSON.stringify(withoutProse(b.body))))
      .map((b) => `${b.dir}:${b.type}.${b.name}`);
    expect(holders).toEqual(['modules/function:google_cloud_run_service_iam_member.public']);
    for (const [dir, l] of localsByDir) expect(JSON.stringify(l), `locals in ${dir}`).not.toMatch(/allUsers/);

    const pub = one('resource', {
      dir: 'modules/function',
      type: 'google_cloud_run_service_iam_member',
      name: 'public',
    });
    expect(pub.body.role).toBe('roles/run.invoker');
    expect(text(pub.body.count)).toBe('${var.public ? 1 : 0}');
    expect(text(pub.body.lifecycle[0].precondition[0].condition)).toBe('${var.trigger == "https"}');

    const call = one('module', { dir: 'stack', name: 'function' });
    expect(text(call.body.public)).toBe('${each.value.trigger == "https" && try(each.value.public, false)}');
    for (const f of topology.functions) if (f.public) expect(f.trigger, f.name).toBe('https');
  });

  it('each function gets only what the access table lists', () => {
    const access = localsByDir.get('stack')!.function_access as Record<string, Body>;
    expect(Object.keys(access).sort()).toEqual(topology.functions.map((f) => f.name).sort());
    const having = (k: string) =>
      Object.entries(access)
        .filter(([, a]) => a[k] === true)
        .map(([n]) => n)
        .sort();
    expect(having('partner_hmac')).toEqual(['mirrorToPartners']);
    expect(having('sign_blob')).toEqual(['lfsProxy']);
    expect(having('cloudsql')).toEqual(['progressApi', 'publishContent', 'updateProgress']);
    for (const [n, a] of Object.entries(access)) {
      for (const role of [a.firestore, ...a.bucket_roles].filter(Boolean))
        expect(String(role), n).toMatch(
          /^roles\/(datastore\.(user|viewer)|storage\.object(Viewer|Creator|User))$/,
        );
    }
    const call = one('module', { dir: 'stack', name: 'function' });
    expect(text(call.body.publish_topics)).toContain('t.publishedBy == each.key');
    expect(text(call.body.sign_blob_self)).toBe('${local.function_access[each.key].sign_blob}');
    const roles = text(call.body.project_roles);
    expect(roles).toContain('condition = local.firestore_condition');
    expect(roles).toContain('condition = local.cloudsql_condition');
  });

  it('lfsProxy signs with Token Creator on its own service account only', () => {
    const sb = one('resource', {
      dir: 'modules/function',
      type: 'google_service_account_iam_member',
      name: 'sign_blob',
    });
    expect(sb.body.role).toBe('roles/iam.serviceAccountTokenCreator');
    expect(text(sb.body.service_account_id)).toBe('${google_service_account.runtime.name}');
    expect(text(sb.body.member)).toBe('${google_service_account.runtime.member}');
    expect(text(sb.body.count)).toBe('${var.sign_blob_self ? 1 : 0}');
    const projectTokenCreator = find('resource', { type: 'google_project_iam_member' }).filter((b) =>
      text(b.body).includes('serviceAccountTokenCreator'),
    );
    expect(projectTokenCreator).toEqual([]);
  });

  it('secrets are readable only by the functions wired to them (per secret, never project-wide)', () => {
    const grants = [...find('resource'), ...find('module')].filter((b) =>
      JSON.stringify(withoutProse(b.body)).includes('secretAccessor'),
    );
    expect(grants.map((g) => `${g.dir}:${g.type}.${g.name}`)).toEqual([
      'modules/function:google_secret_manager_secret_iam_member.accessor',
    ]);
    expect(text(grants[0]!.body.for_each)).toBe('${local.secret_ids}');
    expect(text(localsByDir.get('modules/function')!.secret_ids)).toContain('values(var.secret_env_vars)');
    expect(text(localsByDir.get('modules/function')!.secret_ids)).toContain('values(var.secret_volumes)');
    const fn = one('resource', { dir: 'modules/function', type: 'google_cloudfunctions2_function' });
    expect(fn.body.depends_on).toContain('${google_secret_manager_secret_iam_member.accessor}');
  });

  it('functions take concurrency, min instances, env vars and a source object named by its hash', () => {
    const fn = one('resource', { dir: 'modules/function', type: 'google_cloudfunctions2_function' });
    const svc = fn.body.service_config[0];
    expect(text(svc.max_instance_request_concurrency)).toBe('${var.runtime_config.concurrency}');
    expect(text(svc.min_instance_count)).toBe('${var.runtime_config.min_instances}');
    expect(text(svc.environment_variables)).toBe('${var.env_vars}');
    expect(text(localsByDir.get('modules/function')!.source_hash)).toContain(
      'filesha256(var.source_archive.path)',
    );
    const obj = one('resource', { dir: 'modules/function', type: 'google_storage_bucket_object' });
    expect(text(obj.body.name)).toBe('${local.source_object}');
    expect(text(localsByDir.get('modules/function')!.source_object)).toContain('${local.source_hash}');
    const call = one('module', { dir: 'stack', name: 'function' });
    for (const mod of ['storage', 'cloudsql'])
      expect(text(localsByDir.get('stack')!.function_env)).toContain(`module.${mod}.env_vars`);
    // The Firestore client takes only the project (the `(default)` database): nothing to pass.
    expect(find('output', { dir: 'modules/firestore', name: 'env_vars' })).toEqual([]);
    expect(one('module', { dir: 'stack', name: 'firestore' }).body.name).toBeUndefined();
    expect(one('variable', { dir: 'modules/firestore', name: 'name' }).body.default).toBe('(default)');
    expect(text(call.body.env_vars)).toBe('${local.function_env[each.key]}');
  });
});

// ---------------------------------------------------------------------------------------------
// The functions' environment against the code's configuration contract (shared/config.ts).

const CONFIG_TS = readFileSync(path.join(REPO_ROOT, 'shared', 'config.ts'), 'utf8');

/** Keys of `const schema = z.object({...})` in shared/config.ts, and which of them are required. */
function configSchema(): { keys: string[]; required: string[] } {
  const start = CONFIG_TS.indexOf('const schema = z.object({');
  const end = CONFIG_TS.indexOf('\n});', start);
  expect(start, 'shared/config.ts: const schema = z.object({').toBeGreaterThan(-1);
  const body = CONFIG_TS.slice(start, end)
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '');
  const matches = [...body.matchAll(/^\s+([A-Z][A-Z0-9_]+):/gm)];
  const keys = matches.map((m) => m[1]!);
  const required = matches
    .filter((m, i) => {
      const def = body.slice(m.index!, matches[i + 1]?.index ?? body.length);
      return !/\.optional\(\)|\.default\(/.test(def);
    })
    .map((m) => m[1]!);
  return { keys, required };
}

/**
 * Read outside shared/config.ts but still by the code: the logger's level. Each such name must be
 * read as process.env.<NAME> in the file given here.
 */
const READ_OUTSIDE_CONFIG: Record<string, string> = { LOG_LEVEL: 'shared/log.ts' };

/** Top-level comma-separated parts of an HCL argument list (brackets and strings respected). */
function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      if (c === '\\') {
        cur += c + s[++i];
        continue;
      }
      if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth--;
    if (c === ',' && depth === 0 && !quoted) {
      out.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** The text between `open` (ending in an opening bracket) and its matching closing bracket. */
function inside(s: string, open: string): string {
  const at = s.indexOf(open);
  expect(at, `"${open}" in ${s.slice(0, 80)}…`).toBeGreaterThan(-1);
  let depth = 0;
  for (let i = at + open.length - 1; i < s.length; i++) {
    if ('([{'.includes(s[i]!)) depth++;
    else if (')]}'.includes(s[i]!) && --depth === 0) return s.slice(at + open.length, i);
  }
  throw new Error(`unbalanced ${open}`);
}

type Access = Record<string, Body>;

/** Evaluates the few condition shapes the stack uses on local.function_access; anything else fails. */
function holds(cond: string, a: Body): boolean {
  let m = /^(!?)local\.function_access\[name\]\.(\w+)$/.exec(cond);
  if (m) {
    expect(typeof a[m[2]!], `function_access.${m[2]} is a bool`).toBe('boolean');
    return m[1] ? !a[m[2]!] : a[m[2]!];
  }
  m = /^length\(local\.function_access\[name\]\.(\w+)\) > 0$/.exec(cond);
  if (m) return (a[m[1]!] as unknown[]).length > 0;
  m = /^local\.function_access\[name\]\.(\w+) != null$/.exec(cond);
  if (m) return a[m[1]!] != null;
  throw new Error(`condition not understood by the test: ${cond}`);
}

/** Keys of a module's `env_vars` output, from the stack's call of that module. */
function moduleEnvKeys(moduleName: string): string[] {
  const call = one('module', { dir: 'stack', name: moduleName });
  const dir = path.relative(TF_ROOT, path.resolve(TF_ROOT, 'stack', String(call.body.source)));
  const out = one('output', { dir, name: 'env_vars' });
  expect(typeof out.body.value, `${dir} output env_vars is an object literal`).toBe('object');
  return Object.keys(out.body.value);
}

/** One merge() argument of local.function_env (or a function_secret_env value): keys and when. */
function envPart(arg: string, fn: string, locals: Body, access: Access): string[] {
  const a = access[fn]!;
  const t = arg.replace(/\s+/g, ' ').trim();
  if (t === 'local.env_common') return Object.keys(locals.env_common);
  let m = /^module\.(\w+)\.env_vars$/.exec(t);
  if (m) return moduleEnvKeys(m[1]!);
  m = /^\{ for k, v in module\.(\w+)\.env_vars : k => v if (.+) \}$/.exec(t);
  if (m) return holds(m[2]!, a) ? moduleEnvKeys(m[1]!) : [];
  if (t === '{ for k in local.function_settings[name] : k => local.setting_values[k] }') {
    const keys = locals.function_settings[fn] as string[];
    for (const k of keys) expect(Object.keys(locals.setting_values), `setting_values.${k}`).toContain(k);
    return keys;
  }
  m = /^\{ for k, v in \{ ([A-Z][A-Z0-9_]*) = .+ \} : k => v if (.+) \}$/.exec(t);
  if (m) return holds(m[2]!, a) ? [m[1]!] : [];
  m = /^\{ ([A-Z][A-Z0-9_]*) = [^{}]+ \}$/.exec(t);
  if (m) return [m[1]!];
  throw new Error(`function_env part not understood by the test: ${t}`);
}

/** Per function: the plain and the Secret Manager environment variable names the stack sets. */
function functionEnvironment(): Map<string, { env: string[]; secret: string[] }> {
  const locals = localsByDir.get('stack')!;
  const access = locals.function_access as Access;
  const envText = text(locals.function_env);
  expect(envText).toMatch(/^\$\{\{ for name, f in local\.functions : name => merge\(/);
  const envArgs = splitTopLevel(inside(envText, 'merge('));
  const secretText = text(locals.function_secret_env);
  const secretBody = /^\$\{\{ for name, f in local\.functions : name => (\{.*\}) \}\}$/.exec(secretText)?.[1];
  expect(
    secretBody,
    'local.function_secret_env = { for name, f in local.functions : name => {…} }',
  ).toBeDefined();
  const result = new Map<string, { env: string[]; secret: string[] }>();
  for (const f of topology.functions) {
    const env = envArgs.flatMap((arg) => envPart(arg, f.name, locals, access));
    const secret = envPart(secretBody!, f.name, locals, access);
    result.set(f.name, { env: [...new Set(env)].sort(), secret: secret.sort() });
  }
  return result;
}

/** Non-test TypeScript of one function's directory. */
function functionSource(name: string): string {
  const dir = path.join(REPO_ROOT, 'functions', name);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .map((f) => readFileSync(path.join(dir, f), 'utf8'))
    .join('\n');
}

describe('function environment = the code’s configuration (shared/config.ts)', () => {
  const schema = configSchema();
  const access = () => localsByDir.get('stack')!.function_access as Access;

  it('the schema parses: keys, required keys and the database rule are what this test expects', () => {
    expect(schema.keys).toContain('UPSTASH_REDIS_REST_TOKEN');
    expect(schema.keys.length).toBeGreaterThanOrEqual(15);
    expect(schema.required.sort()).toEqual(
      ['JWKS_URL', 'JWT_AUDIENCE', 'JWT_ISSUER', 'UPSTASH_REDIS_REST_TOKEN', 'UPSTASH_REDIS_REST_URL'].sort(),
    );
    // superRefine: DATABASE_URL, or CLOUD_SQL_INSTANCE and PGUSER (production uses the latter)
    expect(CONFIG_TS).toContain('!c.DATABASE_URL && !(c.CLOUD_SQL_INSTANCE && c.PGUSER)');
    for (const [name, file] of Object.entries(READ_OUTSIDE_CONFIG)) {
      expect(schema.keys, `${name} is not (yet) in the schema`).not.toContain(name);
      expect(readFileSync(path.join(REPO_ROOT, file), 'utf8'), `${file} reads ${name}`).toContain(
        `process.env.${name}`,
      );
    }
  });

  it('every env var name set on a function is a key of the config schema (or read by shared/log.ts)', () => {
    const known = new Set([...schema.keys, ...Object.keys(READ_OUTSIDE_CONFIG)]);
    const unknown: string[] = [];
    for (const [fn, { env, secret }] of functionEnvironment())
      for (const k of [...env, ...secret]) if (!known.has(k)) unknown.push(`${fn}: ${k}`);
    expect(unknown).toEqual([]);
    // and nothing else defines function environment: the module passes exactly these maps
    const call = one('module', { dir: 'stack', name: 'function' });
    expect(text(call.body.env_vars)).toBe('${local.function_env[each.key]}');
    expect(text(call.body.secret_env_vars)).toBe('${local.function_secret_env[each.key]}');
    const fn = one('resource', { dir: 'modules/function', type: 'google_cloudfunctions2_function' });
    expect(text(fn.body.service_config[0].environment_variables)).toBe('${var.env_vars}');
    expect(fn.body.service_config[0].dynamic.secret_environment_variables[0].for_each).toBe(
      '${var.secret_env_vars}',
    );
  });

  it('every function gets every required config key, once (plain or from Secret Manager)', () => {
    const required = [...schema.required, 'CLOUD_SQL_INSTANCE', 'PGUSER'];
    const env = functionEnvironment();
    expect([...env.keys()].sort()).toEqual(topology.functions.map((f) => f.name).sort());
    for (const [fn, { env: plain, secret }] of env) {
      for (const k of required) expect([...plain, ...secret], `${fn} lacks ${k}`).toContain(k);
      expect(
        plain.filter((k) => secret.includes(k)),
        `${fn}: both plain and secret`,
      ).toEqual([]);
      expect(plain, `${fn}: production connects through the Cloud SQL connector`).not.toContain(
        'DATABASE_URL',
      );
    }
    const locals = localsByDir.get('stack')!;
    expect(text(locals.function_env)).toContain(
      'PGUSER = trimsuffix(local.function_sa_emails[name], ".gserviceaccount.com")',
    );
  });

  it('optional settings go exactly to the functions whose code reads them', () => {
    const always = new Set([
      ...schema.required,
      'CLOUD_SQL_INSTANCE',
      'PGUSER',
      'PGDATABASE',
      'GOOGLE_CLOUD_PROJECT',
    ]);
    for (const [fn, { env }] of functionEnvironment()) {
      const read = new Set(
        [...functionSource(fn).matchAll(/\bconfig\.([A-Z][A-Z0-9_]+)/g)].map((m) => m[1]!),
      );
      const extra = env.filter((k) => !always.has(k) && !(k in READ_OUTSIDE_CONFIG) && !read.has(k));
      expect(extra, `${fn} gets settings its code does not read`).toEqual([]);
      const missing = [...read].filter((k) => !env.includes(k));
      expect(missing, `${fn} reads settings Terraform does not set`).toEqual([]);
    }
    const values = localsByDir.get('stack')!.setting_values as Body;
    expect(values.LFS_SIGNER).toBe('iam');
    expect(functionEnvironment().get('lfsProxy')!.env).toContain('LFS_SIGNER');
    expect(access().lfsProxy!.sign_blob).toBe(true);
  });

  it('access follows the runtime clients each function uses (rt.pg, rt.redis/rt.verifier, rt.firestore)', () => {
    for (const f of topology.functions) {
      const src = readFileSync(path.join(REPO_ROOT, 'functions', f.name, 'index.ts'), 'utf8');
      const uses = (client: string) => new RegExp(`\\brt\\s*\\.\\s*${client}\\s*\\(`).test(src);
      const a = access()[f.name]!;
      expect(a.cloudsql, `${f.name}: cloudsql iff rt.pg()`).toBe(uses('pg'));
      // the verifier checks the jti revocation list in Redis
      expect(a.redis, `${f.name}: redis iff rt.redis() or rt.verifier()`).toBe(
        uses('redis') || uses('verifier'),
      );
      expect(a.firestore !== null, `${f.name}: firestore iff rt.firestore()`).toBe(uses('firestore'));
    }
  });

  it('the Upstash token is the Secret Manager secret only where Redis is used, a placeholder elsewhere', () => {
    const locals = localsByDir.get('stack')!;
    for (const [fn, { env, secret }] of functionEnvironment()) {
      if (access()[fn]!.redis) {
        expect(secret, fn).toEqual(['UPSTASH_REDIS_REST_TOKEN']);
      } else {
        expect(secret, fn).toEqual([]);
        expect(env, fn).toContain('UPSTASH_REDIS_REST_TOKEN');
      }
    }
    expect(text(locals.function_secret_env)).toContain('secret = module.secrets.ids[local.upstash_secret]');
    expect(text(locals.function_env)).toContain('UPSTASH_REDIS_REST_TOKEN = local.upstash_token_placeholder');
    expect(locals.upstash_token_placeholder).toMatch(/^unused/);
  });

  it('PARTNER_SECRETS_DIR is a Secret Manager volume, mounted only on mirrorToPartners, one file per partner slug', () => {
    const locals = localsByDir.get('stack')!;
    expect(locals.partner_secrets_dir).toBe('/secrets/partners');
    expect((locals.setting_values as Body).PARTNER_SECRETS_DIR).toBe('${local.partner_secrets_dir}');
    const withDir = [...functionEnvironment()]
      .filter(([, e]) => e.env.includes('PARTNER_SECRETS_DIR'))
      .map(([n]) => n);
    const withHmac = Object.entries(access())
      .filter(([, a]) => a.partner_hmac)
      .map(([n]) => n);
    expect(withDir).toEqual(['mirrorToPartners']);
    expect(withHmac).toEqual(['mirrorToPartners']);
    // shared/partner-secrets.ts reads <dir>/<slug>
    expect(readFileSync(path.join(REPO_ROOT, 'shared', 'partner-secrets.ts'), 'utf8')).toContain(
      'join(dir, slug)',
    );

    const vols = text(locals.function_secret_volumes);
    expect(vols).toContain('(local.partner_secrets_dir) = {');
    expect(vols).toContain('secret = module.secrets.ids[local.partner_hmac_secret]');
    expect(vols).toContain(
      'versions = { for slug, p in var.partners : slug => tostring(p.hmac_version) if p.hmac_version != null }',
    );
    expect(vols).toContain('if local.function_access[name].partner_hmac');
    const call = one('module', { dir: 'stack', name: 'function' });
    expect(text(call.body.secret_volumes)).toBe('${local.function_secret_volumes[each.key]}');

    const fn = one('resource', { dir: 'modules/function', type: 'google_cloudfunctions2_function' });
    const vol = fn.body.service_config[0].dynamic.secret_volumes[0];
    expect(vol.for_each).toBe('${var.secret_volumes}');
    expect(vol.content[0].mount_path).toBe('${secret_volumes.key}');
    const versions = vol.content[0].dynamic.versions[0];
    expect(versions.content[0]).toEqual({ path: '${versions.key}', version: '${versions.value}' });

    // partners' versions are pinned, distinct, and required before a full plan
    const checks = one('resource', { dir: 'stack', type: 'terraform_data', name: 'topology_checks' });
    const conditions = (checks.body.lifecycle[0].precondition as Body[]).map((p) => text(p.condition));
    expect(conditions).toContain('${alltrue([for p in values(var.partners) : p.hmac_version != null])}');
    const partners = one('variable', { dir: 'stack', name: 'partners' });
    expect(text(partners.body.type)).toContain('hmac_version = optional(number)');
    expect(text(partners.body.validation)).toContain('distinct(');
  });

  it('no old variable names are left in the Terraform code', () => {
    const old =
      /JWT_JWKS_URL|PARTNER_HMAC_KEY|LFS_SIGNER_SERVICE_ACCOUNT|ARTIFACTS_BUCKET|ARTIFACTS_UPLOAD_PREFIX|CLOUD_SQL_CONNECTION_NAME|FIRESTORE_DATABASE_ID|"pending\/"/;
    expect(files.filter((f) => old.test(JSON.stringify(f.json))).map((f) => f.file)).toEqual([]);
  });

  it('the env var table in docs/terraform.md names only variables the code reads, and all of them', () => {
    const doc = readFileSync(path.join(REPO_ROOT, 'docs', 'terraform.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### Environment variables'), doc.indexOf('### Variables ('));
    expect(section.length).toBeGreaterThan(100);
    const table = section
      .split('\n')
      .filter((l) => l.startsWith('|'))
      .join('\n');
    const names = [...table.matchAll(/`([A-Z][A-Z0-9_]{2,})(?:=[^`]*)?`/g)].map((m) => m[1]!);
    const known = new Set([...schema.keys, ...Object.keys(READ_OUTSIDE_CONFIG)]);
    expect(names.filter((n) => !known.has(n))).toEqual([]);
    for (const k of schema.keys.filter((k) => k !== 'DATABASE_URL'))
      expect(names, `docs table: ${k}`).toContain(k);
  });
});

describe('partner module', () => {
  it('binds its principal (and partnerRoom) as subscriber on its own subscription only', () => {
    const iam = find('resource', { dir: 'modules/partner' }).filter((b) => /_iam_/.test(b.type));
    expect(iam.map((b) => b.type)).toEqual(['google_pubsub_subscription_iam_member']);
    const b = iam[0]!;
    expect(b.body.role).toBe('roles/pubsub.subscriber');
    expect(text(b.body.subscription)).toMatch(/^\$\{module\.subscription\.(name|id)\}$/);
    expect(text(b.body.member)).toBe('${each.value}');
    const members = text(b.body.for_each);
    const refs = [...members.matchAll(/var\.(\w+)/g)].map((m) => m[1]).sort();
    expect(refs).toEqual(['principal', 'room_service_account']);
    const sub = one('module', { dir: 'modules/partner', name: 'subscription' });
    expect(sub.body.subscribers).toBeUndefined();
    expect(text(sub.body.topic)).toBe('${module.topic.id}');
    const topic = one('module', { dir: 'modules/partner', name: 'topic' });
    expect(topic.body.publishers).toEqual({ 'mirror-to-partners': '${var.mirror_service_account}' });
  });

  it('keeps the partner record and the custom domain with the partner', () => {
    const doc = one('resource', { dir: 'modules/partner', type: 'google_firestore_document' });
    expect(doc.body.collection).toBe('partners');
    expect(text(doc.body.document_id)).toBe('${var.slug}');
    const cert = one('resource', { dir: 'modules/partner', type: 'google_certificate_manager_certificate' });
    expect(text(cert.body.count)).toBe('${var.domain == null ? 0 : 1}');
    const url = one('resource', {
      dir: 'modules/partner-gateway',
      type: 'google_compute_url_map',
      name: 'main',
    });
    expect(text(url.body.dynamic.path_matcher[0].content)).toContain('/p/${path_matcher.key}/');
  });
});

describe('storage, Cloud SQL, Firestore', () => {
  it('artifacts bucket: uniform access, CORS PUT, lifecycle deletes, finalize notification with GCS publisher', () => {
    const b = one('resource', { dir: 'modules/storage', type: 'google_storage_bucket', name: 'main' });
    expect(b.body.uniform_bucket_level_access).toBe(true);
    expect(b.body.public_access_prevention).toBe('enforced');
    expect(b.body.cors[0].method).toContain('PUT');
    const rule = b.body.dynamic.lifecycle_rule[0];
    expect(rule.content[0].action[0].type).toBe('Delete');
    // Stored and unverified uploads share artifacts/<id>/: no age-based delete by default, and
    // none may cover the upload prefix (a precondition refuses it).
    const prefixes = one('variable', { dir: 'modules/storage', name: 'delete_after_days' }).body.default;
    expect(prefixes).toEqual({});
    const guards = (b.body.lifecycle?.[0]?.precondition ?? []) as Body[];
    expect(guards.map((g) => text(g.condition)).join(' ')).toContain(
      '!startswith(p, var.finalize_notification.object_name_prefix) && !startswith(var.finalize_notification.object_name_prefix, p)',
    );
    expect(b.body.lifecycle_rule.map((r: Body) => r.action[0].type)).toEqual([
      'AbortIncompleteMultipartUpload',
    ]);

    // lfsProxy uploads to OBJECT_PREFIX (shared/artifacts.ts); the notification is limited to it.
    const objectPrefix = /export const OBJECT_PREFIX = '([^']+)'/.exec(
      readFileSync(path.join(REPO_ROOT, 'shared', 'artifacts.ts'), 'utf8'),
    )?.[1];
    expect(objectPrefix).toBe('artifacts/');
    const notify = one('variable', { dir: 'modules/storage', name: 'finalize_notification' });
    expect(text(notify.body.type)).toContain(`object_name_prefix = optional(string, "${objectPrefix}")`);

    const n = one('resource', { dir: 'modules/storage', type: 'google_storage_notification' });
    expect(n.body.event_types).toEqual(['OBJECT_FINALIZE']);
    expect(text(n.body.object_name_prefix)).toBe('${var.finalize_notification.object_name_prefix}');
    expect(text(one('module', { dir: 'stack', name: 'storage' }).body.finalize_notification)).not.toContain(
      'object_name_prefix',
    );
    expect(n.body.depends_on).toContain('${google_pubsub_topic_iam_member.gcs_publisher}');
    const pub = one('resource', { dir: 'modules/storage', type: 'google_pubsub_topic_iam_member' });
    expect(pub.body.role).toBe('roles/pubsub.publisher');
    expect(text(pub.body.member)).toContain('var.gcs_service_agent');
    expect(text(pub.body.topic)).toBe(text(n.body.topic));

    const call = one('module', { dir: 'stack', name: 'storage' });
    expect(text(call.body.finalize_notification.topic)).toContain('t.publishedBy == "cloud-storage"');
    expect(topology.topics.filter((t) => t.publishedBy === 'cloud-storage').map((t) => t.name)).toEqual([
      'learnflow.storage.finalized',
    ]);
  });

  it('Cloud SQL: PostgreSQL 15, private IP, IAM auth, backups + PITR, IAM users, connection name env', () => {
    const i = one('resource', {
      dir: 'modules/cloudsql',
      type: 'google_sql_database_instance',
      name: 'main',
    });
    expect(i.body.database_version).toBe('POSTGRES_15');
    const s = i.body.settings[0];
    expect(s.ip_configuration[0].ipv4_enabled).toBe(false);
    expect(s.ip_configuration[0].private_network).toBeTruthy();
    expect(s.database_flags).toContainEqual({ name: 'cloudsql.iam_authentication', value: 'on' });
    expect(s.backup_configuration[0].enabled).toBe(true);
    expect(s.backup_configuration[0].point_in_time_recovery_enabled).toBe(true);
    const u = one('resource', { dir: 'modules/cloudsql', type: 'google_sql_user' });
    expect(u.body.type).toBe('CLOUD_IAM_SERVICE_ACCOUNT');
    const env = one('output', { dir: 'modules/cloudsql', name: 'env_vars' });
    expect(Object.keys(env.body.value).sort()).toEqual(['CLOUD_SQL_INSTANCE', 'PGDATABASE']);
    expect(text(env.body.value.CLOUD_SQL_INSTANCE)).toBe(
      '${google_sql_database_instance.main.connection_name}',
    );
  });

  it('Firestore is a native-mode database', () => {
    const f = one('resource', { dir: 'modules/firestore', type: 'google_firestore_database', name: 'main' });
    expect(f.body.type).toBe('FIRESTORE_NATIVE');
  });
});

describe('environments', () => {
  const envs = ['dev', 'prod'];

  it('dev and prod are root modules with a gcs backend, examples and the shared stack', () => {
    for (const env of envs) {
      for (const f of [
        'main.tf',
        'variables.tf',
        'outputs.tf',
        'versions.tf',
        'terraform.tfvars.example',
        'backend.hcl.example',
      ])
        expect(existsSync(path.join(TF_ROOT, 'envs', env, f)), `envs/${env}/${f}`).toBe(true);
      const versions = files.find((f) => f.file === `envs/${env}/versions.tf`)!;
      expect(versions.json.terraform[0].backend.gcs).toBeDefined();
      const stack = one('module', { dir: `envs/${env}`, name: 'stack' });
      expect(stack.body.source).toBe('../../stack');
    }
  });

  it('dev and prod cannot drift: identical variables and the same stack arguments', () => {
    const vars = envs.map((env) => files.find((f) => f.file === `envs/${env}/variables.tf`)!.json);
    expect(vars[0]).toEqual(vars[1]);
    const args = envs.map((env) =>
      Object.keys(one('module', { dir: `envs/${env}`, name: 'stack' }).body).sort(),
    );
    expect(args[0]).toEqual(args[1]);
  });

  it('variables are typed and validated (project_id, region default, partners, app-instances)', () => {
    const v = (name: string) => one('variable', { dir: 'envs/dev', name });
    expect((v('project_id').body.validation ?? []).length).toBeGreaterThan(0);
    expect(v('region').body.default).toBe('europe-west3');
    const partners = text(v('partners').body.type);
    expect(partners).toMatch(/^\$\{map\(object\(/);
    for (const field of [
      'display_name',
      'principal',
      'instances',
      'sponsors',
      'event_types',
      'share_content',
      'domain',
    ])
      expect(partners).toContain(`${field} =`);
    expect((v('partners').body.validation ?? []).length).toBeGreaterThan(0);
    expect(text(v('app_instances').body.type)).toMatch(/^\$\{map\(object\(/);
    expect((v('app_instances').body.validation ?? []).length).toBeGreaterThan(0);
  });

  it('the tfvars examples parse and fill the required variables', async () => {
    for (const env of envs) {
      const p = path.join(TF_ROOT, 'envs', env, 'terraform.tfvars.example');
      const vars = (await parse(`${env}.tfvars`, readFileSync(p, 'utf8'))) as Body;
      const required = find('variable', { dir: `envs/${env}` })
        .filter((b) => !('default' in b.body))
        .map((b) => b.name);
      for (const name of required) expect(vars[name], `${env}: ${name}`).toBeDefined();
      for (const [slug, partner] of Object.entries<Body>(vars.partners ?? {}))
        for (const i of partner.instances ?? [])
          expect(Object.keys(vars.app_instances ?? {}), `${env}/${slug}`).toContain(i);
    }
  });
});
