import { createHash } from 'node:crypto';
import { Storage, type StorageOptions } from '@google-cloud/storage';
import type { Config } from '../../shared/config.ts';

/**
 * The one Cloud Storage factory of lfsProxy and finalizeArtifact, and the two ports built on it.
 *
 * How V4 URLs get signed (`File#getSignedUrl` → `URLSigner` → google-auth-library `GoogleAuth#sign`):
 * - `LFS_SIGNER=key`: the client is built with `keyFilename`; `sign()` finds a JWT client with a private
 *   key and signs locally (RSA-SHA256). Locally that is the suite's generated key, whose public half the
 *   storage emulator verifies.
 * - `LFS_SIGNER=iam`: the client is built with no credentials at all. Application Default Credentials
 *   resolve to the function's attached service account (metadata server); `sign()` finds no private key,
 *   asks `getCredentials()` for the account's email (from the metadata server) and POSTs the blob to
 *   `https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/<email>:signBlob`. Neither a
 *   `signingEndpoint` nor a client email has to be passed; the account needs
 *   `roles/iam.serviceAccountTokenCreator` on itself. A key file must not be configured in this mode
 *   (ADC would pick it up and sign with it), so that combination is refused at boot.
 * Both modes run the same `getSignedUrl` code.
 */

export type SignerChoice =
  | { kind: 'key'; keyFile: string }
  | {
      kind: 'iam';
      /** override of the IAM Credentials endpoint (tests, private endpoints); must end with `/` */
      signingEndpoint?: string;
    };

/** Pure: which signer the configuration asks for; throws one error naming the offending variables. */
export function signerChoice(
  config: Pick<Config, 'LFS_SIGNER'>,
  env: Record<string, string | undefined>,
): SignerChoice {
  const keyFile = env.GOOGLE_APPLICATION_CREDENTIALS?.trim() || undefined;
  if (config.LFS_SIGNER === 'key') {
    if (!keyFile) {
      throw new Error(
        'LFS_SIGNER=key needs GOOGLE_APPLICATION_CREDENTIALS: the service-account key file that signs URLs',
      );
    }
    return { kind: 'key', keyFile };
  }
  if (keyFile) {
    throw new Error(
      "LFS_SIGNER=iam signs through IAM signBlob with the function's own service account: unset GOOGLE_APPLICATION_CREDENTIALS, whose key would be used instead",
    );
  }
  const endpoint = env.LFS_SIGNING_ENDPOINT?.trim();
  if (!endpoint) return { kind: 'iam' };
  if (!URL.canParse(endpoint)) throw new Error('LFS_SIGNING_ENDPOINT: must be a URL');
  return { kind: 'iam', signingEndpoint: endpoint.endsWith('/') ? endpoint : `${endpoint}/` };
}

/** Pure: the client options for a signer choice. No choice (finalizeArtifact only reads and deletes): ADC. */
export function storageClientOptions(projectId: string, signer?: SignerChoice): StorageOptions {
  // credentials also for a custom endpoint (STORAGE_EMULATOR_HOST): the local storage emulator requires
  // them as Cloud Storage does; against Google's endpoint this changes nothing
  const common = { projectId, useAuthWithCustomEndpoint: true };
  if (signer?.kind === 'key') return { ...common, keyFilename: signer.keyFile };
  return common;
}

/** `STORAGE_EMULATOR_HOST` points the client at the emulator, as the other Google clients do. */
export const createStorage = (projectId: string, signer?: SignerChoice) =>
  new Storage(storageClientOptions(projectId, signer));

// -------------------------------------------------------------------------------------------------
// Port: signed URLs
// -------------------------------------------------------------------------------------------------

export interface SignedUpload {
  url: string;
  /** PUT: the bytes in one request; POST: starts a resumable session (`x-goog-resumable: start`) */
  method: 'PUT' | 'POST';
  /** exactly the headers the client must send with the request (they are part of the signature) */
  headers: Record<string, string>;
}

export interface UrlSigner {
  upload(o: {
    objectName: string;
    contentType: string;
    size: number;
    expiresAt: Date;
    /** a signed resumable session start instead of a single PUT */
    resumable?: boolean;
  }): Promise<SignedUpload>;
  download(o: { objectName: string; expiresAt: Date }): Promise<string>;
}

export function gcsUrlSigner(storage: Storage, bucket: string, signer: SignerChoice): UrlSigner {
  const endpoint =
    signer.kind === 'iam' && signer.signingEndpoint ? { signingEndpoint: signer.signingEndpoint } : {};
  return {
    async upload({ objectName, contentType, size, expiresAt, resumable }) {
      if (resumable) {
        // Cloud Storage applies x-goog-content-length-range to PUT Object only, not to a resumable
        // session, so the size is not bound here: finalizeArtifact's size + SHA-256 check is the guard
        // (a wrong size or digest is rejected and deleted). Content type and create-only are bound.
        const resumableHeaders = { 'x-goog-if-generation-match': '0' };
        const [url] = await storage
          .bucket(bucket)
          .file(objectName)
          .getSignedUrl({
            version: 'v4',
            action: 'resumable', // POST; the client library adds and signs `x-goog-resumable: start`
            contentType,
            expires: expiresAt,
            extensionHeaders: resumableHeaders,
            ...endpoint,
          });
        return {
          url,
          method: 'POST',
          headers: { 'content-type': contentType, 'x-goog-resumable': 'start', ...resumableHeaders },
        };
      }
      const extensionHeaders = {
        // the exact size: larger or smaller bodies are refused before anything is stored
        'x-goog-content-length-range': `${size},${size}`,
        // create only: a verified artifact cannot be overwritten while the URL is still valid
        'x-goog-if-generation-match': '0',
      };
      const [url] = await storage
        .bucket(bucket)
        .file(objectName)
        .getSignedUrl({
          version: 'v4',
          action: 'write',
          contentType,
          expires: expiresAt,
          extensionHeaders,
          ...endpoint,
        });
      return { url, method: 'PUT', headers: { 'content-type': contentType, ...extensionHeaders } };
    },
    async download({ objectName, expiresAt }) {
      const [url] = await storage
        .bucket(bucket)
        .file(objectName)
        .getSignedUrl({ version: 'v4', action: 'read', expires: expiresAt, ...endpoint });
      return url;
    },
  };
}

// -------------------------------------------------------------------------------------------------
// Port: the uploaded bytes, for finalizeArtifact
// -------------------------------------------------------------------------------------------------

export interface ObjectDigest {
  sha256: string;
  size: number;
}

export interface ArtifactObjects {
  /** Streams one generation of an object through SHA-256; 'missing' when it no longer exists. */
  digest(bucket: string, name: string, generation?: string): Promise<ObjectDigest | 'missing'>;
  /** Deletes one generation; an object already gone is fine. */
  remove(bucket: string, name: string, generation?: string): Promise<void>;
}

const isNotFound = (err: unknown) => (err as { code?: unknown }).code === 404;

export function gcsArtifactObjects(storage: Storage): ArtifactObjects {
  const file = (bucket: string, name: string, generation?: string) =>
    storage.bucket(bucket).file(name, generation ? { generation } : {});
  return {
    async digest(bucket, name, generation) {
      const hash = createHash('sha256');
      let size = 0;
      try {
        // Streamed chunk by chunk, never held whole. The client's own CRC32C/MD5 validation is off:
        // SHA-256 against the declared digest is the stronger check and is done here anyway.
        for await (const chunk of file(bucket, name, generation).createReadStream({ validation: false })) {
          hash.update(chunk as Buffer);
          size += (chunk as Buffer).length;
        }
      } catch (err) {
        if (isNotFound(err)) return 'missing';
        throw err;
      }
      return { sha256: hash.digest('hex'), size };
    },
    async remove(bucket, name, generation) {
      try {
        await file(bucket, name, generation).delete(generation ? { ifGenerationMatch: generation } : {});
      } catch (err) {
        if (isNotFound(err) || (err as { code?: unknown }).code === 412) return;
        throw err;
      }
    },
  };
}
