import { z } from 'zod';
import { functionSpec } from './topology.ts';

/**
 * Runtime configuration: a pure function of the environment, validated once per function at cold start.
 * Every variable the room reads is declared here once; each function reads exactly the variables its
 * `env` list in shared/topology.json names (the list Terraform sets and the boot test gives), and one
 * error names every missing or bad variable. Nothing here defaults to a local value: the local suite
 * sets every variable explicitly, as Terraform does in production.
 */
const vars = z.object({
  GOOGLE_CLOUD_PROJECT: z.string().min(1),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** direct connections (local suite, tests); in production CLOUD_SQL_INSTANCE + PGUSER + PGDATABASE instead */
  DATABASE_URL: z.string().url().optional(),
  /** `project:region:instance`: connect through the Cloud SQL Node connector (private IP, IAM database auth) */
  CLOUD_SQL_INSTANCE: z
    .string()
    .regex(/^[^:]+:[^:]+:[^:]+$/, 'must be project:region:instance')
    .optional(),
  PGUSER: z.string().min(1).optional(),
  PGDATABASE: z.string().min(1).default('ldr'),
  /** every PostgreSQL session runs with this statement_timeout */
  PG_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  UPSTASH_REDIS_REST_URL: z.string().url(),
  UPSTASH_REDIS_REST_TOKEN: z.string().min(1),
  JWKS_URL: z.string().url(),
  JWT_ISSUER: z.string().min(1),
  JWT_AUDIENCE: z.string().min(1),
  LFS_BUCKET: z.string().min(3),
  LFS_MAX_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(5 * 1024 ** 3),
  LFS_SIGNER: z.enum(['key', 'iam']),
  RATE_STUDENT_PER_MIN: z.coerce.number().int().positive().default(100),
  RATE_STUDENT_EVENTS_PER_MIN: z.coerce.number().int().positive().default(1000),
  RATE_INSTANCE_EVENTS_PER_MIN: z.coerce.number().int().positive().default(6000),
  DEDUP_TTL_SECONDS: z.coerce.number().int().positive().default(86_400),
  /** one file per partner slug holding its HMAC secret (Secret Manager volume in production) */
  PARTNER_SECRETS_DIR: z.string().min(1),
  /** browser origins allowed by CORS, comma-separated; `*` as the port matches any port (`http://localhost:*`) */
  CORS_ORIGINS: z
    .string()
    .default('')
    .transform((s) =>
      s
        .split(',')
        .map((o) => o.trim())
        .filter(Boolean),
    )
    .refine(
      (list) => list.every((o) => /^https?:\/\/[^/\s]+$/.test(o)),
      'must be a comma-separated list of origins (scheme://host[:port|:*])',
    ),
  /** the public base URL partners reach partnerRoom at (absolute schema links in the manifest) */
  PUBLIC_BASE_URL: z.string().url().optional(),
  TRIAGE_RULES_FILE: z.string().min(1).optional(),
  /** read by the lfsProxy settings (functions/lfsProxy/settings.ts) */
  LFS_SIGNING_ENDPOINT: z.string().optional(),
  LFS_CONTENT_TYPES: z.string().optional(),
  LFS_URL_TTL_SECONDS: z.string().optional(),
  LFS_RESUMABLE_FROM_BYTES: z.string().optional(),
  GOOGLE_APPLICATION_CREDENTIALS: z.string().optional(),
});

export type Config = z.infer<typeof vars>;
export type ConfigVar = keyof Config;
export const CONFIG_VARS = Object.keys(vars.shape) as ConfigVar[];

/** The configuration of one function: only the variables it declares, each checked, one error for all. */
export function parseConfig(fn: string, env: Record<string, string | undefined>): Config {
  const spec = functionSpec(fn);
  const unknown = spec.env.filter((v) => !(v in vars.shape));
  if (unknown.length)
    throw new Error(`${fn} declares unknown configuration variables: ${unknown.join(', ')}`);
  const picked = vars.pick(Object.fromEntries(spec.env.map((k) => [k, true])) as Record<ConfigVar, true>);
  const usesDatabase = spec.env.includes('DATABASE_URL');
  const checked = picked.superRefine((c: Partial<Config>, ctx) => {
    if (usesDatabase && !c.DATABASE_URL && !(c.CLOUD_SQL_INSTANCE && c.PGUSER)) {
      ctx.addIssue({
        code: 'custom',
        path: ['DATABASE_URL'],
        message: 'set DATABASE_URL, or CLOUD_SQL_INSTANCE and PGUSER',
      });
    }
  });
  // empty strings count as unset, as in a Terraform map with an optional value
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = checked.safeParse(present);
  if (!result.success) {
    const problems = result.error.issues.map((i) => {
      const name = i.path.join('.');
      const missing = i.code !== 'custom' && i.path.length === 1 && present[name] === undefined;
      return `${name}: ${missing ? 'required' : i.message}`;
    });
    throw new Error(`invalid configuration of ${fn}: ${problems.join('; ')}`);
  }
  return result.data as Config;
}

/** The configuration with secrets redacted, for the one cold-start log line. */
export function redacted(config: Partial<Config>): Record<string, unknown> {
  return {
    ...config,
    ...(config.UPSTASH_REDIS_REST_TOKEN ? { UPSTASH_REDIS_REST_TOKEN: '[redacted]' } : {}),
    ...(config.DATABASE_URL
      ? { DATABASE_URL: config.DATABASE_URL.replace(/\/\/[^@]*@/, '//[redacted]@') }
      : {}),
  };
}
