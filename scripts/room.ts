import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PubSub } from '@google-cloud/pubsub';

/** The data dir of the local room (`--data-dir`, LDR_DATA_DIR, or .ldr/ of this checkout). */
export const defaultDataDir = () =>
  process.env.LDR_DATA_DIR ?? join(new URL('..', import.meta.url).pathname, '.ldr');

/**
 * The Pub/Sub client the operating commands use: a real project when `--project` names one, else the
 * running room's emulator (its suite.json), else the project of GOOGLE_CLOUD_PROJECT (application
 * default credentials, no emulator host). Says on stderr which one it uses.
 */
export function pubsubFor(dataDir: string, command: string, project?: string): PubSub {
  const suiteFile = join(dataDir, 'suite.json');
  const real = project ?? (existsSync(suiteFile) ? undefined : process.env.GOOGLE_CLOUD_PROJECT);
  if (real) {
    console.error(`${command}: project ${real}`);
    return new PubSub({ projectId: real });
  }
  process.env.METADATA_SERVER_DETECTION ??= 'none';
  if (!existsSync(suiteFile)) {
    console.error(
      `${command}: the room is not running (no ${suiteFile}); start it with \`npm start\`, or set GOOGLE_CLOUD_PROJECT for a real project`,
    );
    process.exit(2);
  }
  const suite = JSON.parse(readFileSync(suiteFile, 'utf8'));
  console.error(`${command}: the local room (${suite.env.PUBSUB_EMULATOR_HOST})`);
  return new PubSub({ projectId: suite.projectId, apiEndpoint: suite.env.PUBSUB_EMULATOR_HOST });
}
