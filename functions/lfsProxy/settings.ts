import { z } from 'zod';
import type { Config } from '../../shared/config.ts';
import type { UploadPolicy } from './schema.ts';
import { type SignerChoice, signerChoice } from './storage.ts';

/** The allow-list when LFS_CONTENT_TYPES is not set. */
export const DEFAULT_CONTENT_TYPES = [
  'video/mp4',
  'video/webm',
  'video/quicktime',
  'audio/mpeg',
  'audio/webm',
  'image/png',
  'image/jpeg',
  'image/webp',
  'image/heic',
  'image/heif',
  'application/pdf',
  'text/plain',
  'application/zip',
  'application/json',
] as const;

/** 8 MiB, Cloud Storage's recommended minimum chunk size: anything smaller goes in one PUT. */
export const DEFAULT_RESUMABLE_FROM_BYTES = 8 * 1024 * 1024;

const MEDIA_TYPE_RE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;

const schema = z.object({
  /** comma-separated media types, e.g. "video/mp4,application/pdf" */
  LFS_CONTENT_TYPES: z
    .string()
    .optional()
    .transform((s) =>
      s === undefined || s.trim() === ''
        ? [...DEFAULT_CONTENT_TYPES]
        : s
            .split(',')
            .map((t) => t.trim().toLowerCase())
            .filter(Boolean),
    )
    .refine(
      (types) => types.every((t) => MEDIA_TYPE_RE.test(t)),
      'must be a comma-separated list of type/subtype',
    ),
  /** lifetime of signed upload and download URLs */
  LFS_URL_TTL_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .max(7 * 24 * 3600)
    .default(15 * 60),
  /** from this size on, `POST /uploads` hands out a signed resumable session instead of one PUT */
  LFS_RESUMABLE_FROM_BYTES: z.coerce.number().int().min(1).default(DEFAULT_RESUMABLE_FROM_BYTES),
});

export interface LfsSettings {
  bucket: string;
  policy: UploadPolicy;
  urlTtlSeconds: number;
  signer: SignerChoice;
}

/**
 * lfsProxy's settings: a pure function of the room's configuration (LFS_BUCKET, LFS_MAX_BYTES,
 * LFS_SIGNER) and a few variables of its own. One error names every bad variable.
 */
export function parseLfsSettings(
  config: Pick<Config, 'LFS_BUCKET' | 'LFS_MAX_BYTES' | 'LFS_SIGNER'>,
  env: Record<string, string | undefined>,
): LfsSettings {
  const problems: string[] = [];
  const parsed = schema.safeParse(env);
  if (!parsed.success) problems.push(...parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  let signer: SignerChoice | undefined;
  try {
    signer = signerChoice(config, env);
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (!parsed.success || !signer) throw new Error(`invalid lfs configuration: ${problems.join('; ')}`);
  return {
    bucket: config.LFS_BUCKET,
    policy: {
      contentTypes: new Set(parsed.data.LFS_CONTENT_TYPES),
      maxBytes: config.LFS_MAX_BYTES,
      resumableFromBytes: parsed.data.LFS_RESUMABLE_FROM_BYTES,
    },
    urlTtlSeconds: parsed.data.LFS_URL_TTL_SECONDS,
    signer,
  };
}
