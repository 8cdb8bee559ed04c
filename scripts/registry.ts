/**
 * `npm run partner -- add <slug> --name <display name> [--instances a,b] [--sponsors s,t] [--event-types t,…] [--share-content] [--principal <member>] [--domain <host>]`
 * `npm run partner -- list | remove <slug>`
 * `npm run instance -- add <id> [--name <display name>] | list | remove <id>`
 * Writes the local registry (.ldr/registry.json; the partner's HMAC secret under .ldr/secrets/, never printed)
 * and, when the room is running, provisions the topic, subscription and records at once.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readRegistry, removeEntry, upsertInstance, upsertPartner } from '../emulators/registry.ts';

const [kind, ...argv] = process.argv.slice(2);
const { values, positionals } = parseArgs({
  args: argv,
  allowPositionals: true,
  options: {
    name: { type: 'string' },
    instances: { type: 'string' },
    sponsors: { type: 'string' },
    'event-types': { type: 'string' },
    'share-content': { type: 'boolean' },
    principal: { type: 'string' },
    domain: { type: 'string' },
    'data-dir': { type: 'string' },
  },
});
const [action, key] = positionals;
const dataDir = values['data-dir'] ?? join(new URL('..', import.meta.url).pathname, '.ldr');
const list = (s?: string) =>
  s
    ? s
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean)
    : undefined;
const fail = (msg: string): never => {
  console.error(`${kind}: ${msg}`);
  process.exit(2);
};

async function applyToRunningRoom() {
  const file = join(dataDir, 'suite.json');
  if (!existsSync(file)) return console.log('the room is not running: applied at the next npm start');
  const { ports, env } = JSON.parse(readFileSync(file, 'utf8'));
  const res = await fetch(`http://127.0.0.1:${ports.functions}/_ldr/registry/apply`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.LDR_ADMIN_TOKEN}` },
  }).catch(() => undefined);
  if (!res?.ok) return console.log('the room did not answer: applied at the next npm start');
  console.log('provisioned in the running room');
}

try {
  if (kind !== 'partner' && kind !== 'instance')
    fail('usage: registry.ts partner|instance add|list|remove …');
  const reg = readRegistry(dataDir);
  if (action === 'list') {
    const rows = kind === 'partner' ? Object.values(reg.partners) : Object.values(reg.instances);
    console.log(JSON.stringify(rows, null, 2));
  } else if (action === 'add') {
    if (!key) fail(`add needs the ${kind === 'partner' ? 'slug' : 'instance id'}`);
    if (kind === 'partner') {
      const p = upsertPartner(dataDir, {
        slug: key,
        displayName: values.name ?? key,
        instances: list(values.instances),
        sponsors: list(values.sponsors),
        eventTypes: list(values['event-types']),
        shareContent: values['share-content'] ?? false,
        principal: values.principal,
        domain: values.domain,
      });
      console.log(
        `partner ${p.slug}: topic partner.${p.slug}.events, subscription partner.${p.slug}.pull, secret stored`,
      );
    } else {
      const i = upsertInstance(dataDir, { id: key, displayName: values.name });
      console.log(`instance ${i.id}: subscription instance.${i.id}.content`);
    }
    await applyToRunningRoom();
  } else if (action === 'remove') {
    if (!key) fail('remove needs a key');
    if (!removeEntry(dataDir, kind === 'partner' ? 'partners' : 'instances', key!)) fail(`no ${kind} ${key}`);
    console.log(`${kind} ${key} removed`);
    await applyToRunningRoom();
  } else fail('usage: add | list | remove');
} catch (err) {
  const issues = (err as { issues?: Array<{ path: unknown[]; message: string }> }).issues;
  fail(issues ? issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : (err as Error).message);
}
