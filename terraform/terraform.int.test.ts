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

  it('every module, the stack and both envs pin hashicorp/google >= 7.21, < 8.0 (Direct VPC egress); envs pin google-beta alike', () => {
    const roots = [...moduleDirs.map((m) => `modules/${m}`), 'stack', 'envs/dev', 'envs/prod'];
    for (const dir of roots) {
      const f = files.find((p) => p.file === `${dir}/versions.tf`);
      expect(f, `${dir}/versions.tf`).toBeDefined();
      const providers = f!.json.terraform?.[0]?.required_providers?.[0];
      expect(providers?.google?.source, dir).toBe('hashicorp/google');
      expect(String(providers?.google?.version), dir).toBe('>= 7.21, < 8.0');
      if (dir.startsWith('envs/')) {
        expect(providers?.['google-beta']?.source, dir).toBe('hashicorp/google-beta');
        expect(String(providers?.['google-beta']?.version), dir).toBe('>= 7.21, < 8.0');
      }
      if (dir === 'stack' || dir.startsWith('envs/'))
        expect(String(providers?.archive?.version), `${dir} archive (output_sha256)`).toMatch(
          /^>= 2\.4, < 3\.0$/,
        );
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

  it('fn.* subscriptions POST the documented push body to the plain function URL (no query, no no_wrapper), as the push identity', () => {
    const locals = localsByDir.get('stack')!;
    expect(text(locals.subscription_function)).toMatch(
      /^\$\{\{ ?for (\w+) in local\.topology\.subscriptions ?: ?\1\.name ?=> ?\1\.function if try\(\1\.function, null\) != null ?\}\}$/,
    );
    const push = locals.push as string;
    expect(text(push)).toBe(
      '${{ for name, fn in local.subscription_function : name => { endpoint = module.function[fn].uri audience = module.function[fn].uri service_account_email = google_service_account.pubsub_push.email } }}',
    );
    // nothing undocumented between Pub/Sub and the handler
    const all = JSON.stringify(files.map((f) => withoutProse(f.json)));
    expect(all).not.toContain('__GCP_CloudEventsMode');
    expect(all).not.toContain('no_wrapper');
    expect(find('variable', { name: 'push_cloudevents_mode' })).toEqual([]);
    const res = one('resource', { dir: 'modules/subscription', type: 'google_pubsub_subscription' });
    const pc = res.body.dynamic.push_config[0].content[0];
    expect(Object.keys(pc).sort()).toEqual(['oidc_token', 'push_endpoint']);
    expect(text(pc.oidc_token[0].audience)).toBe(
      '${coalesce(push_config.value.audience, push_config.value.endpoint)}',
    );
    const v = one('variable', { dir: 'modules/subscription', name: 'push' });
    expect(text(v.body.validation)).toContain('!strcontains(try(var.push.endpoint, ""), "?")');
    const sub = one('module', { dir: 'stack', name: 'subscription' });
    expect(text(sub.body.push)).toBe('${try(local.push[each.key], null)}');
  });
  it('event functions are invokable only by the push identity (and the scheduler where scheduled), never through Eventarc', () => {
    const fn = one('module', { dir: 'stack', name: 'function' });
    expect(text(fn.body.invokers)).toBe(
      '${merge( { for k, m in { pubsub-push = google_service_account.pubsub_push.member } : k => m if each.value.trigger == "pubsub" }, { for k, m in { scheduler = google_service_account.scheduler.member } : k => m if contains(local.scheduled_functions, each.key) }, )}',
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
  it('functions are plain HTTP functions: the function module has no Eventarc trigger at all', () => {
    const f = one('resource', { dir: 'modules/function', type: 'google_cloudfunctions2_function' });
    expect(f.body.event_trigger).toBeUndefined();
    expect(f.body.dynamic?.event_trigger).toBeUndefined();
    expect(find('variable', { dir: 'modules/function', name: 'event_trigger' })).toEqual([]);
    expect(find('resource', { type: 'google_eventarc_trigger' })).toEqual([]);
  });

  it('the push ack deadline (600 s) exceeds every pushed function’s timeout by 30 s or more (plan precondition)', () => {
    const locals = localsByDir.get('stack')!;
    const ack = locals.push_ack_deadline_seconds as number;
    expect(ack).toBe(600);
    expect(text(locals.subscription_ack_deadline)).toContain(
      'contains(keys(local.subscription_function), name) ? local.push_ack_deadline_seconds : local.defaults.ackDeadlineSeconds',
    );
    const defaults = locals.function_runtime_defaults as Record<string, Body>;
    const profiles = locals.function_profiles as Record<string, Body>;
    for (const s of topology.subscriptions.filter((x) => x.function)) {
      const f = topology.functions.find((x) => x.name === s.function)!;
      const timeout = profiles[f.name]?.timeout_seconds ?? defaults[f.trigger]!.timeout_seconds;
      expect(timeout + 30, `${s.name} -> ${f.name}`).toBeLessThanOrEqual(ack);
    }
    const checks = one('resource', { dir: 'stack', type: 'terraform_data', name: 'topology_checks' });
    const conditions = (checks.body.lifecycle[0].precondition as Body[]).map((p) => text(p.condition));
    expect(conditions).toContain('${length(local.ack_too_short) == 0}');
    expect(text(localsByDir.get('stack')!.ack_too_short)).toContain(
      'local.function_runtime[fn].timeout_seconds + 30 > local.subscription_ack_deadline[name]',
    );
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
    expect(stack.retry.minimum_backoff_seconds).toBe('${local.defaults.minimumBackoffSeconds}');
    expect(stack.retry.maximum_backoff_seconds).toBe('${local.defaults.maximumBackoffSeconds}');
    const partner = one('module', { dir: 'stack', name: 'partner' });
    expect(text(partner.body.dead_letter_topic)).toBe('${local.dead_letter.topic}');
    expect(partner.body.delivery.max_delivery_attempts).toBe('${local.defaults.maxDeliveryAttempts}');
    const inPartner = one('module', { dir: 'modules/partner', name: 'subscription' });
    expect(inPartner.body.dead_letter.topic).toBe('${var.dead_letter_topic}');
    expect(inPartner.body.dead_letter.max_delivery_attempts).toBe('${var.delivery.max_delivery_attempts}');
  });

  it('retries outlast a 2-minute cold-start or quota episode within the 5 attempts of SPEC §2', () => {
    const d = topology.defaults;
    expect(d.minimumBackoffSeconds).toBeGreaterThanOrEqual(10);
    expect(d.maximumBackoffSeconds).toBe(600);
    expect(d.maxDeliveryAttempts).toBe(5);
    // Pub/Sub's back-off roughly doubles from the minimum up to the maximum (best effort).
    let window = 0;
    for (let i = 0, delay = d.minimumBackoffSeconds; i < d.maxDeliveryAttempts - 1; i++) {
      window += Math.min(delay, d.maximumBackoffSeconds);
      delay *= 2;
    }
    expect(window, 'seconds of retries before the last attempt').toBeGreaterThanOrEqual(180);
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

  it('functions take concurrency, min instances, env vars and the build artifact named by its hash (archive_file at plan time)', () => {
    const fn = one('resource', { dir: 'modules/function', type: 'google_cloudfunctions2_function' });
    const svc = fn.body.service_config[0];
    expect(text(svc.max_instance_request_concurrency)).toBe('${var.runtime_config.concurrency}');
    expect(text(svc.min_instance_count)).toBe('${var.runtime_config.min_instances}');
    expect(text(svc.environment_variables)).toBe('${var.env_vars}');
    expect(text(fn.body.build_config[0].runtime)).toBe('${var.runtime}');
    expect(one('variable', { dir: 'modules/function', name: 'runtime' }).body.default).toBe('nodejs22');
    expect(fn.body.build_config[0].source[0].storage_source[0]).toEqual({
      bucket: '${var.source_object.bucket}',
      object: '${var.source_object.object}',
    });
    // filesha256() of a zip that does not exist at plan time is gone: archive_file zips
    // package.json, package-lock.json and dist/ during plan and names the object by its hash.
    expect(JSON.stringify(files.map((f) => f.json))).not.toContain('filesha256(');
    const zip = one('data', { dir: 'stack', type: 'archive_file', name: 'functions' });
    expect(zip.body.type).toBe('zip');
    expect(text(zip.body.dynamic.source[0].for_each)).toBe('${local.source_files}');
    expect(text(localsByDir.get('stack')!.source_files)).toBe(
      '${setunion(["package.json", "package-lock.json"], fileset(local.repo_root, "dist/**"))}',
    );
    expect(text(zip.body.lifecycle[0].precondition[0].condition)).toContain('dist/index.js');
    expect(text(zip.body.output_path)).not.toContain('dist/');
    const obj = one('resource', {
      dir: 'stack',
      type: 'google_storage_bucket_object',
      name: 'functions_source',
    });
    expect(text(obj.body.name)).toBe('functions/${data.archive_file.functions.output_sha256}.zip');
    expect(text(obj.body.source)).toBe('${data.archive_file.functions.output_path}');
    const call = one('module', { dir: 'stack', name: 'function' });
    expect(text(call.body.source_object.object)).toBe(
      '${google_storage_bucket_object.functions_source.name}',
    );
    expect(text(call.body.entry_point)).toBe('${each.key}');
    // The Firestore client takes only the project (the `(default)` database): nothing to pass.
    expect(one('module', { dir: 'stack', name: 'firestore' }).body.name).toBeUndefined();
    expect(one('variable', { dir: 'modules/firestore', name: 'name' }).body.default).toBe('(default)');
    expect(text(call.body.env_vars)).toBe('${local.function_env[each.key]}');
  });

  it('Cloud SQL functions use Direct VPC egress; there is no Serverless VPC Access connector', () => {
    expect(find('resource', { type: 'google_vpc_access_connector' })).toEqual([]);
    const fn = one('resource', { dir: 'modules/function', type: 'google_cloudfunctions2_function' });
    const svc = fn.body.service_config[0];
    expect(svc.vpc_connector).toBeUndefined();
    expect(text(svc.direct_vpc_egress)).toBe('${try(var.vpc.egress, null)}');
    expect(svc.dynamic.direct_vpc_network_interface[0].content[0]).toEqual({
      network: '${direct_vpc_network_interface.value.network}',
      subnetwork: '${direct_vpc_network_interface.value.subnetwork}',
    });
    const call = one('module', { dir: 'stack', name: 'function' });
    expect(text(call.body.vpc)).toBe(
      '${local.function_access[each.key].cloudsql ? { network = module.network.network_id, subnetwork = module.network.functions_subnet_id } : null}',
    );
    expect(localsByDir.get('stack')!.required_apis).not.toContain('vpcaccess.googleapis.com');
  });

  it('the build service account is Storage Object Admin on the source bucket', () => {
    const b = one('resource', {
      dir: 'stack',
      type: 'google_storage_bucket_iam_member',
      name: 'build_sources',
    });
    expect(text(b.body.bucket)).toBe('${google_storage_bucket.sources.name}');
    expect(b.body.role).toBe('roles/storage.objectAdmin');
    expect(text(b.body.member)).toBe('${google_service_account.build.member}');
    const call = one('module', { dir: 'stack', name: 'function' });
    expect(call.body.depends_on).toContain('${google_storage_bucket_iam_member.build_sources}');
  });
});

// ---------------------------------------------------------------------------------------------
// The functions' environment against each function's `env` list in shared/topology.json (the one
// source of truth read by Terraform, the config code and the production boot test).

/** Set in production whenever a function lists them (a missing one would fail its cold start). */
const PRODUCTION_REQUIRED = [
  'GOOGLE_CLOUD_PROJECT',
  'LOG_LEVEL',
  'JWKS_URL',
  'JWT_ISSUER',
  'JWT_AUDIENCE',
  'UPSTASH_REDIS_REST_URL',
  'UPSTASH_REDIS_REST_TOKEN',
  'CLOUD_SQL_INSTANCE',
  'PGUSER',
  'PGDATABASE',
  'LFS_BUCKET',
  'LFS_SIGNER',
  'PARTNER_SECRETS_DIR',
  'CORS_ORIGINS',
  'PUBLIC_BASE_URL',
];
/** Never set in production (local-only, or refused there). */
const NEVER_IN_PRODUCTION = [
  'DATABASE_URL',
  'GOOGLE_APPLICATION_CREDENTIALS',
  'LFS_SIGNING_ENDPOINT',
  'TRIAGE_RULES_FILE',
];
/** Set only when the environment sets runtime_settings; otherwise the code's default applies. */
const OPTIONAL_SETTINGS = [
  'LFS_MAX_BYTES',
  'LFS_URL_TTL_SECONDS',
  'LFS_CONTENT_TYPES',
  'LFS_RESUMABLE_FROM_BYTES',
  'RATE_STUDENT_PER_MIN',
  'RATE_STUDENT_EVENTS_PER_MIN',
  'RATE_INSTANCE_EVENTS_PER_MIN',
  'DEDUP_TTL_SECONDS',
  'PG_STATEMENT_TIMEOUT_MS',
];

interface TopologyFn extends Fn {
  env: string[];
}
const topologyFns = topology.functions as TopologyFn[];

const isNull = (v: unknown) => v === null || text(v) === '${null}';

/**
 * Per function: the plain and the Secret Manager variable names the stack sets, evaluated from
 * local.env_values / function_env_values / secret_env_values the way local.function_env does
 * (whose exact expression is asserted first).
 */
function functionEnvironment(): Map<string, { env: string[]; secret: string[]; values: Body }> {
  const locals = localsByDir.get('stack')!;
  expect(text(locals.function_env)).toBe(
    '${{ for name, f in local.functions : name => { for k in f.env : k => local.function_env_values[name][k] if !contains(keys(local.secret_env_values), k) && try(local.function_env_values[name][k], null) != null } }}',
  );
  expect(text(locals.function_secret_env)).toBe(
    '${{ for name, f in local.functions : name => { for k in f.env : k => { secret = local.secret_env_values[k] } if contains(keys(local.secret_env_values), k) } }}',
  );
  expect(text(locals.function_env_values)).toBe(
    '${{ for name, f in local.functions : name => merge(local.env_values, { PGUSER = trimsuffix(local.function_sa_emails[name], ".gserviceaccount.com") }) }}',
  );
  const values: Body = { ...(locals.env_values as Body), PGUSER: 'per function' };
  const secrets = Object.keys(locals.secret_env_values as Body);
  const result = new Map<string, { env: string[]; secret: string[]; values: Body }>();
  for (const f of topologyFns) {
    const env = f.env.filter((k) => !secrets.includes(k) && k in values && !isNull(values[k])).sort();
    const secret = f.env.filter((k) => secrets.includes(k)).sort();
    result.set(f.name, { env, secret, values });
  }
  return result;
}

describe('function environment = the topology’s env list of each function', () => {
  const access = () => localsByDir.get('stack')!.function_access as Record<string, Body>;

  it('every function lists its variables in the topology, and every listed name has a decided class', () => {
    const classified = new Set([...PRODUCTION_REQUIRED, ...NEVER_IN_PRODUCTION, ...OPTIONAL_SETTINGS]);
    for (const f of topologyFns) {
      expect(Array.isArray(f.env), `${f.name}.env`).toBe(true);
      expect(
        f.env.filter((k) => !classified.has(k)),
        `${f.name}: classify new names in this test`,
      ).toEqual([]);
    }
  });

  it('the set Terraform gives each function ⊆ its topology env list, and the required ones are present', () => {
    const env = functionEnvironment();
    expect([...env.keys()].sort()).toEqual(topologyFns.map((f) => f.name).sort());
    for (const f of topologyFns) {
      const { env: plain, secret } = env.get(f.name)!;
      const set = [...plain, ...secret];
      expect(
        set.filter((k) => !f.env.includes(k)),
        `${f.name}: set but not in its list`,
      ).toEqual([]);
      for (const k of f.env.filter((k) => PRODUCTION_REQUIRED.includes(k)))
        expect(set, `${f.name} lacks ${k}`).toContain(k);
      for (const k of NEVER_IN_PRODUCTION) expect(set, `${f.name} must not get ${k}`).not.toContain(k);
      expect(
        plain.filter((k) => secret.includes(k)),
        `${f.name}: both plain and secret`,
      ).toEqual([]);
    }
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

  it('values: CORS_ORIGINS from cors_origins, PUBLIC_BASE_URL for partnerRoom, IAM signing, optional settings null when unset', () => {
    const values = localsByDir.get('stack')!.env_values as Body;
    expect(text(values.CORS_ORIGINS)).toBe('${join(",", var.cors_origins)}');
    expect(text(values.PUBLIC_BASE_URL)).toBe('${local.public_base_url}');
    expect(text(localsByDir.get('stack')!.public_base_url)).toContain(
      'coalesce(var.public_base_url, "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.function_ids["partnerRoom"]}")',
    );
    expect(values.LFS_SIGNER).toBe('iam');
    for (const k of NEVER_IN_PRODUCTION) expect(isNull(values[k]), k).toBe(true);
    for (const k of OPTIONAL_SETTINGS) expect(text(values[k]), k).toMatch(/var\.runtime_settings\.[a-z_]+/);
    // every https function that lists CORS_ORIGINS gets it; partnerRoom gets PUBLIC_BASE_URL
    const env = functionEnvironment();
    for (const f of topologyFns.filter((f) => f.trigger === 'https'))
      expect(env.get(f.name)!.env, f.name).toContain('CORS_ORIGINS');
    expect(env.get('partnerRoom')!.env).toContain('PUBLIC_BASE_URL');
    expect(env.get('lfsProxy')!.env).toContain('LFS_SIGNER');
    expect(access().lfsProxy!.sign_blob).toBe(true);
    // routeTriage reads no Redis, JWT or database settings, so it gets none
    expect(env.get('routeTriage')!.env).toEqual(['GOOGLE_CLOUD_PROJECT', 'LOG_LEVEL']);
    // a listed name without a value in env_values fails the plan
    const checks = one('resource', { dir: 'stack', type: 'terraform_data', name: 'topology_checks' });
    const conditions = (checks.body.lifecycle[0].precondition as Body[]).map((p) => text(p.condition));
    expect(conditions).toContain('${length(local.unknown_env) == 0}');
    for (const f of topologyFns)
      for (const k of f.env)
        expect(
          [
            ...Object.keys(values),
            ...Object.keys(localsByDir.get('stack')!.secret_env_values as Body),
            'PGUSER',
          ],
          `${f.name}: ${k}`,
        ).toContain(k);
  });

  it('access follows the env list: cloudsql <-> CLOUD_SQL_INSTANCE, redis <-> UPSTASH token, partner_hmac <-> PARTNER_SECRETS_DIR', () => {
    for (const f of topologyFns) {
      const a = access()[f.name]!;
      expect(a.cloudsql, `${f.name}.cloudsql`).toBe(f.env.includes('CLOUD_SQL_INSTANCE'));
      expect(a.redis, `${f.name}.redis`).toBe(f.env.includes('UPSTASH_REDIS_REST_TOKEN'));
      expect(a.partner_hmac, `${f.name}.partner_hmac`).toBe(f.env.includes('PARTNER_SECRETS_DIR'));
      expect(a.bucket_roles.length > 0, `${f.name}.bucket_roles`).toBe(f.env.includes('LFS_BUCKET'));
    }
    const checks = one('resource', { dir: 'stack', type: 'terraform_data', name: 'topology_checks' });
    const conditions = (checks.body.lifecycle[0].precondition as Body[]).map((p) => text(p.condition));
    expect(conditions).toContain('${length(local.access_vs_env) == 0}');
  });

  it('the Upstash token is the Secret Manager secret exactly where the topology lists it, never plain', () => {
    const locals = localsByDir.get('stack')!;
    expect(text((locals.secret_env_values as Body).UPSTASH_REDIS_REST_TOKEN)).toBe(
      '${module.secrets.ids[local.upstash_secret]}',
    );
    for (const [fn, { env, secret }] of functionEnvironment()) {
      const listed = topologyFns.find((f) => f.name === fn)!.env.includes('UPSTASH_REDIS_REST_TOKEN');
      expect(secret, fn).toEqual(listed ? ['UPSTASH_REDIS_REST_TOKEN'] : []);
      expect(env, fn).not.toContain('UPSTASH_REDIS_REST_TOKEN');
    }
    expect(JSON.stringify(locals)).not.toContain('upstash_token_placeholder');
  });

  it('PARTNER_SECRETS_DIR is a Secret Manager volume, mounted only on mirrorToPartners, one file per partner slug', () => {
    const locals = localsByDir.get('stack')!;
    expect(locals.partner_secrets_dir).toBe('/secrets/partners');
    expect((locals.env_values as Body).PARTNER_SECRETS_DIR).toBe('${local.partner_secrets_dir}');
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

  it('the env var table in docs/terraform.md names only topology-listed variables, and every one Terraform sets', () => {
    const doc = readFileSync(path.join(REPO_ROOT, 'docs', 'terraform.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### Environment variables'), doc.indexOf('### Variables ('));
    expect(section.length).toBeGreaterThan(100);
    const table = section
      .split('\n')
      .filter((l) => l.startsWith('|'))
      .join('\n');
    const names = [...table.matchAll(/`([A-Z][A-Z0-9_]{2,})(?:=[^`]*)?`/g)].map((m) => m[1]!);
    const listed = new Set(topologyFns.flatMap((f) => f.env));
    expect(names.filter((n) => !listed.has(n))).toEqual([]);
    const set = new Set([...functionEnvironment().values()].flatMap((e) => [...e.env, ...e.secret]));
    for (const k of [...set, ...OPTIONAL_SETTINGS]) expect(names, `docs table: ${k}`).toContain(k);
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

  it('the partner record has the fields of the Partner type the code reads, slug included', () => {
    // keys of partnerSchema in shared/registry.ts, and which are required (no default, not optional)
    const registry = readFileSync(path.join(REPO_ROOT, 'shared', 'registry.ts'), 'utf8');
    const body = registry.slice(
      registry.indexOf('export const partnerSchema = z.strictObject({'),
      registry.indexOf('});', registry.indexOf('export const partnerSchema')),
    );
    const keys = [...body.matchAll(/^ {2}(\w+):/gm)].map((m) => m[1]!);
    expect(keys).toContain('slug');
    const locals = localsByDir.get('modules/partner')!;
    const fields = text(locals.record_fields);
    const written = [...fields.matchAll(/(?:^|[{,] |\s)(\w+) = \{ (?:stringValue|booleanValue)/g)].map(
      (m) => m[1]!,
    );
    const lists = Object.keys(locals.lists as Body);
    const domain = fields.includes('"domain" => { stringValue = d }') ? ['domain'] : [];
    const all = [...written, ...lists, ...domain].sort();
    expect(all).toEqual([...keys].sort());
    expect(fields).toContain('slug = { stringValue = var.slug }');
    // slugs Terraform accepts are slugs the code accepts (3-30 here, 3-42 there)
    const slugRe = new RegExp(/SLUG_RE = \/(.+)\/;/.exec(registry)![1]!);
    const tfRe = /regex\("([^"]+)", var\.slug\)/
      .exec(text(one('variable', { dir: 'modules/partner', name: 'slug' }).body.validation))![1]!
      .replace(/\\\\/g, '\\');
    for (const slug of ['ab', 'abc', 'a-b', 'acme', 'tutor-co', `a${'b'.repeat(29)}`])
      if (new RegExp(tfRe).test(slug)) expect(slugRe.test(slug), slug).toBe(true);
  });

  it('partners wait for the API enablement (module.partner depends_on google_project_service.main)', () => {
    const partner = one('module', { dir: 'stack', name: 'partner' });
    expect(partner.body.depends_on).toContain('${google_project_service.main}');
  });
});

describe('storage, Cloud SQL, Firestore', () => {
  it('artifacts bucket: uniform access, CORS PUT, lifecycle deletes, finalize notification with GCS publisher', () => {
    const b = one('resource', { dir: 'modules/storage', type: 'google_storage_bucket', name: 'main' });
    expect(b.body.uniform_bucket_level_access).toBe(true);
    expect(b.body.public_access_prevention).toBe('enforced');
    expect(b.body.cors).toBeUndefined();
    expect(text(b.body.dynamic.cors[0].for_each)).toBe('${local.cors_rules}');
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

  it('Cloud SQL: PostgreSQL 15, private IP, IAM auth, backups + PITR, IAM users', () => {
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
    const u = one('resource', { dir: 'modules/cloudsql', type: 'google_sql_user', name: 'iam' });
    expect(u.body.type).toBe('CLOUD_IAM_SERVICE_ACCOUNT');
    expect(u.body.database_roles).toBeUndefined();
    expect(text(localsByDir.get('stack')!.env_values.CLOUD_SQL_INSTANCE)).toBe(
      '${module.cloudsql.connection_name}',
    );
  });

  it('bucket CORS comes from shared/bucket-cors.json and allows every header lfsProxy signs into an upload', () => {
    const rules = JSON.parse(readFileSync(path.join(REPO_ROOT, 'shared', 'bucket-cors.json'), 'utf8'))
      .cors as Body[];
    expect(text(localsByDir.get('modules/storage')!.cors_rules)).toBe(
      '${jsondecode(file(var.cors.rules_file)).cors}',
    );
    const call = one('module', { dir: 'stack', name: 'storage' });
    expect(
      path.resolve(TF_ROOT, 'stack', /^\$\{path\.module\}\/(.+)$/.exec(call.body.cors.rules_file)![1]!),
    ).toBe(path.join(REPO_ROOT, 'shared', 'bucket-cors.json'));
    expect(call.body.cors.origins).toBe('${var.cors_origins}');
    const b = one('resource', { dir: 'modules/storage', type: 'google_storage_bucket', name: 'main' });
    expect(b.body.dynamic.cors[0].content[0]).toEqual({
      origin: '${var.cors.origins}',
      method: '${cors.value.method}',
      response_header: '${cors.value.responseHeader}',
      max_age_seconds: '${cors.value.maxAgeSeconds}',
    });
    // the headers the signed PUT and the signed resumable start carry (functions/lfsProxy/storage.ts)
    const storage = readFileSync(path.join(REPO_ROOT, 'functions', 'lfsProxy', 'storage.ts'), 'utf8');
    const signedIn = (literal: string) => {
      const ext = storage.slice(storage.indexOf(literal), storage.indexOf('};', storage.indexOf(literal)));
      return [...ext.matchAll(/'(x-goog-[a-z-]+)':/g)].map((m) => m[1]!);
    };
    const signed = signedIn('const extensionHeaders = {');
    const resumable = signedIn('const resumableHeaders = {');
    expect(signed).toContain('x-goog-if-generation-match');
    expect(resumable).toContain('x-goog-if-generation-match');
    for (const rule of rules) {
      const allowed = (rule.responseHeader as string[]).map((h) => h.toLowerCase());
      for (const h of [...signed, ...resumable, 'content-type']) expect(allowed, h).toContain(h);
      expect(rule.method).toEqual(expect.arrayContaining(['PUT', 'GET']));
      // a resumable session from a page: the POST start (x-goog-resumable, the session URI in Location),
      // chunk PUTs with Content-Range, and the offset a 308 names in Range
      expect(rule.method).toContain('POST');
      for (const h of ['x-goog-resumable', 'content-range', 'location', 'range'])
        expect(allowed, h).toContain(h);
      expect(rule.origin, 'origins are per environment').toBeUndefined();
    }
  });

  it('migrations: a Cloud Run job in the VPC runs node dist/migrate.js as an admin IAM database user', () => {
    const admin = one('resource', { dir: 'modules/cloudsql', type: 'google_sql_user', name: 'admin' });
    expect(admin.body.type).toBe('CLOUD_IAM_SERVICE_ACCOUNT');
    expect(admin.body.database_roles).toEqual(['cloudsqlsuperuser']);
    const sql = one('module', { dir: 'stack', name: 'cloudsql' });
    expect(sql.body.admin_service_accounts).toEqual({ migrate: '${google_service_account.migrate.email}' });
    const grants = find('resource', { dir: 'stack', type: 'google_project_iam_member', name: 'migrate' })[0]!;
    expect(text(grants.body.for_each)).toBe(
      '${toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])}',
    );
    expect(grants.body.condition).toBeDefined();
    const job = one('resource', { dir: 'stack', type: 'google_cloud_run_v2_job', name: 'migrate' });
    const task = job.body.template[0].template[0];
    expect(text(task.service_account)).toBe('${google_service_account.migrate.email}');
    expect(task.vpc_access[0].egress).toBe('PRIVATE_RANGES_ONLY');
    expect(task.vpc_access[0].network_interfaces[0]).toEqual({
      network: '${module.network.network_id}',
      subnetwork: '${module.network.functions_subnet_id}',
    });
    const c = task.containers[0];
    expect(c.args).toEqual(['node', 'dist/migrate.js']);
    expect(text(c.image)).toBe(
      '${data.google_cloud_run_v2_service.migrate_image.template[0].containers[0].image}',
    );
    const env = localsByDir.get('stack')!.migrate_env as Body;
    expect(Object.keys(env).sort()).toEqual(
      ['CLOUD_SQL_INSTANCE', 'GOOGLE_CLOUD_PROJECT', 'LOG_LEVEL', 'PGDATABASE', 'PGUSER', 'PG_GRANTS'].sort(),
    );
    expect(text(env.PGUSER)).toBe('${module.cloudsql.admin_users["migrate"]}');
    const dbGrants = localsByDir.get('stack')!.database_grants as Body;
    const withSql = Object.entries(localsByDir.get('stack')!.function_access as Record<string, Body>)
      .filter(([, a]) => a.cloudsql)
      .map(([n]) => n)
      .sort();
    expect(Object.keys(dbGrants).sort()).toEqual(withSql);
    expect(dbGrants.updateProgress).toBe('readwrite');
  });

  it('the outbox relay: a topology schedule becomes a Cloud Scheduler job POSTing with OIDC to <function URL><path>', () => {
    const schedules = (topology as unknown as { schedules: Body[] }).schedules;
    expect(schedules).toContainEqual(
      expect.objectContaining({ function: 'updateProgress', path: '/outbox/relay', schedule: '* * * * *' }),
    );
    const job = one('resource', { dir: 'stack', type: 'google_cloud_scheduler_job', name: 'main' });
    expect(text(job.body.for_each)).toBe('${{ for s in try(local.topology.schedules, []) : s.name => s }}');
    const t = job.body.http_target[0];
    expect(t.http_method).toBe('POST');
    expect(text(t.uri)).toBe('${module.function[each.value.function].uri}${each.value.path}');
    expect(text(t.oidc_token[0].service_account_email)).toBe('${google_service_account.scheduler.email}');
    expect(text(t.oidc_token[0].audience)).toBe('${module.function[each.value.function].uri}');
    expect(localsByDir.get('stack')!.required_apis).toContain('cloudscheduler.googleapis.com');
    expect(text(localsByDir.get('stack')!.scheduled_functions)).toBe(
      '${toset([for s in try(local.topology.schedules, []) : s.function])}',
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
