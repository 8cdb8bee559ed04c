/**
 * `npm run deadletters -- list [--json]`
 * `npm run deadletters -- replay [--all | --id <messageId|ce-id>] [--subscription <name>]`
 * Against the running room (.ldr/suite.json), or a real project with `--project <id>` (or
 * GOOGLE_CLOUD_PROJECT when no room runs): application default credentials, no emulator host. See scripts/dead-letters.ts.
 */
import { parseArgs } from 'node:util';
import { loadTopology } from '../shared/topology.ts';
import { pullAll, replay } from './dead-letters.ts';
import { defaultDataDir, pubsubFor } from './room.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    all: { type: 'boolean' },
    id: { type: 'string' },
    subscription: { type: 'string' },
    json: { type: 'boolean' },
    'data-dir': { type: 'string' },
    project: { type: 'string' },
  },
});
const fail = (msg: string, code = 2): never => {
  console.error(`deadletters: ${msg}`);
  process.exit(code);
};
const [action] = positionals;
if (action !== 'list' && action !== 'replay')
  fail('usage: deadletters list | replay [--all | --id <messageId>] [--subscription <name>]');
if (action === 'replay' && !values.all && !values.id && !values.subscription)
  fail('replay needs --all, --id <messageId> or --subscription <name>');

const pubsub = pubsubFor(values['data-dir'] ?? defaultDataDir(), 'deadletters', values.project);
try {
  if (action === 'list') {
    const pulled = await pullAll(pubsub);
    await pulled.release(pulled.messages.map((m) => m.ackId));
    await pulled.close();
    const rows = pulled.messages.filter((m) => !values.subscription || m.source === values.subscription);
    if (values.json) {
      console.log(JSON.stringify(rows.map(({ data, ackId, ...r }) => ({ ...r, data: data.toString() }))));
    } else {
      for (const m of rows) {
        console.log(
          [
            m.id,
            m.time,
            `from=${m.source || '?'}`,
            `attempts=${m.attempts ?? '-'}`,
            `ce-id=${m.ceId ?? '-'}`,
            `type=${m.type ?? '-'}`,
            `reason=${m.reason ?? '(delivery attempts exhausted; see the function log)'}`,
          ].join('  '),
        );
      }
      console.log(`${rows.length} dead letter(s)`);
    }
  } else {
    const { replayed, failed } = await replay(
      pubsub,
      loadTopology(),
      { all: values.all, id: values.id, subscription: values.subscription },
      console.log,
    );
    console.log(`${replayed.length} replayed, ${failed.length} failed`);
    if (failed.length) process.exitCode = 1;
  }
} catch (err) {
  console.error(`deadletters: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  await pubsub.close();
}
