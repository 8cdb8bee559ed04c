import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A local service-account key, so `new Storage({ keyFilename, apiEndpoint })` can make V4 signed URLs
 * offline, and the storage emulator can verify them with the public half. Generated once per directory.
 * (In production, signing goes through IAM signBlob instead; there is no key file.)
 */

export interface ServiceAccountKey {
  clientEmail: string;
  privateKeyPem: string;
  publicKeyPem: string;
  /** Path of the service-account JSON (`keyFilename` for the Google clients). */
  keyFile: string;
}

export interface KeyOptions {
  projectId?: string;
  /** Account id, the part of the email before `@`. */
  accountId?: string;
}

const KEY_FILE = 'storage-sa.json';

export async function ensureServiceAccountKey(
  dir: string,
  options: KeyOptions = {},
): Promise<ServiceAccountKey> {
  const keyFile = join(dir, KEY_FILE);
  await mkdir(dir, { recursive: true });
  const existing = await readKeyFile(keyFile);
  if (existing) return existing;
  await createKeyFile(keyFile, options);
  // Re-read: if another process won the race, its key is the one on disk.
  return (await readKeyFile(keyFile))!;
}

async function readKeyFile(keyFile: string): Promise<ServiceAccountKey | undefined> {
  let raw: string;
  try {
    raw = await readFile(keyFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const json = JSON.parse(raw) as { client_email?: string; private_key?: string };
  if (!json.client_email || !json.private_key)
    throw new Error(`${keyFile} is not a service-account key file`);
  const publicKeyPem = createPublicKey(createPrivateKey(json.private_key)).export({
    type: 'spki',
    format: 'pem',
  });
  return {
    clientEmail: json.client_email,
    privateKeyPem: json.private_key,
    publicKeyPem: String(publicKeyPem),
    keyFile,
  };
}

/** Writes the key under a temp name and links it into place, so the file appears whole or not at all. */
async function createKeyFile(keyFile: string, options: KeyOptions) {
  const projectId = options.projectId ?? 'demo-ldr';
  const clientEmail = `${options.accountId ?? 'ldr-local-signer'}@${projectId}.iam.gserviceaccount.com`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const json = {
    type: 'service_account',
    project_id: projectId,
    private_key_id: randomBytes(20).toString('hex'),
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: clientEmail,
    client_id: String(BigInt(`0x${randomBytes(8).toString('hex')}`)),
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: 'https://oauth2.googleapis.com/token',
  };
  const temp = `${keyFile}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temp, `${JSON.stringify(json, null, 2)}\n`, { mode: 0o600 });
  try {
    await link(temp, keyFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    await unlink(temp);
  }
}
