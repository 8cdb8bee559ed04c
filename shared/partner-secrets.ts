import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Port: per-partner HMAC secrets. Read from files named by slug in one directory: locally
 * `.ldr/secrets/partners/`, in production the Secret Manager secrets mounted as a volume.
 */
export interface PartnerSecrets {
  get(slug: string): Promise<Buffer>;
}

export function dirPartnerSecrets(dir: string): PartnerSecrets {
  const cache = new Map<string, Buffer>();
  return {
    async get(slug) {
      let s = cache.get(slug);
      if (!s) {
        s = Buffer.from(readFileSync(join(dir, slug), 'utf8').trim(), 'base64url');
        if (s.length < 32) throw new Error(`the secret of partner ${slug} is too short`);
        cache.set(slug, s);
      }
      return s;
    },
  };
}

/** Creates the partner's secret once (32 random bytes, file mode 0600); returns nothing secret. */
export function ensurePartnerSecret(dir: string, slug: string) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, slug);
  if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('base64url'), { mode: 0o600 });
}

/** learnerRef: keyed HMAC-SHA256 of the student id — stable per partner, unlinkable across partners. */
export const learnerRef = (secret: Buffer, studentId: string) =>
  createHmac('sha256', secret).update(studentId, 'utf8').digest('base64url');
