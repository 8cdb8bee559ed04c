/** `npm run token -- --sub <id> --role <role> [--instance <id>] [--partner <slug>] [--permission <p>]… [--ttl <s>]` */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureIdentity, mintToken } from '../emulators/identity.ts';
import { type Role, roles } from '../shared/auth.ts';

const { values } = parseArgs({
  options: {
    sub: { type: 'string' },
    role: { type: 'string' },
    instance: { type: 'string' },
    partner: { type: 'string' },
    permission: { type: 'string', multiple: true },
    ttl: { type: 'string' },
    'data-dir': { type: 'string' },
  },
});

const fail = (msg: string): never => {
  console.error(`token: ${msg}`);
  process.exit(2);
};
if (!values.sub) fail('--sub <id> is required');
if (!values.role || !roles.includes(values.role as Role)) fail(`--role must be one of ${roles.join(', ')}`);
if ((values.role === 'app' || values.role === 'teacher') && !values.instance)
  fail(`--instance is required for ${values.role} tokens`);
if (values.role === 'partner' && !values.partner) fail('--partner <slug> is required for partner tokens');

const dataDir = values['data-dir'] ?? join(new URL('..', import.meta.url).pathname, '.ldr');
const identity = await ensureIdentity(dataDir);
console.log(
  await mintToken(identity, {
    sub: values.sub!,
    role: values.role as Role,
    instance: values.instance,
    partner: values.partner,
    permissions: values.permission,
    ttlSeconds: values.ttl ? Number(values.ttl) : undefined,
  }),
);
