import { z } from 'zod';

/**
 * Runtime configuration of every function: a pure function of the environment, validated once at
 * cold start. One error names every bad variable.
 */
const schema = z.object({
  GOOGLE_CLOUD_PROJECT: z.string().min(1).default('demo-ldr'),
  /** local / direct connections; in production CLOUD_SQL_INSTANCE + PGUSER + PGDATABASE instead */
  DATABASE_URL: z.string().url().optional(),
  /** `project:region:instance`: connect through the Cloud SQL Node connector (private IP, IAM database auth) */
  CLOUD_SQL_INSTANCE: z
    .string()
    .regex(/^[^:]+:[^:]+:[^:]+$/)
    .optional(),
  PGUSER: z.string().optional(),
  PGDATABASE: z.string().default('ldr'),
  UPSTASH_REDIS_REST_URL: z.string().url(),
  UPSTASH_REDIS_REST_TOKEN: z.string().min(1),
  JWKS_URL: z.string().url(),
  JWT_ISSUER: z.string().min(1),
  JWT_AUDIENCE: z.string().min(1),
  LFS_BUCKET: z.string().min(3).default('ldr-artifacts'),
  LFS_MAX_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(5 * 1024 ** 3),
  LFS_SIGNER: z.enum(['key', 'iam']).default('key'),
  RATE_STUDENT_PER_MIN: z.coerce.number().int().positive().default(100),
  RATE_STUDENT_EVENTS_PER_MIN: z.coerce.number().int().positive().default(1000),
  RATE_INSTANCE_EVENTS_PER_MIN: z.coerce.number().int().positive().default(6000),
  DEDUP_TTL_SECONDS: z.coerce.number().int().positive().default(86_400),
  /** one file per partner slug holding its HMAC secret (Secret Manager volume in production) */
  PARTNER_SECRETS_DIR: z.string().default('/secrets/partners'),
});

export type Config = z.infer<typeof schema>;

const checked = schema.superRefine((c, ctx) => {
  if (!c.DATABASE_URL && !(c.CLOUD_SQL_INSTANCE && c.PGUSER)) {
    ctx.addIssue({
      code: 'custom',
      path: ['DATABASE_URL'],
      message: 'set DATABASE_URL, or CLOUD_SQL_INSTANCE and PGUSER',
    });
  }
});

export function parseConfig(env: Record<string, string | undefined>): Config {
  const result = checked.safeParse(env);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration: ${problems.join('; ')}`);
  }
  return result.data;
}

/** The configuration with secrets redacted, for the one cold-start log line. */
export function redacted(config: Config): Record<string, unknown> {
  return {
    ...config,
    UPSTASH_REDIS_REST_TOKEN: '[redacted]',
    DATABASE_URL: config.DATABASE_URL?.replace(/\/\/[^@]*@/, '//[redacted]@'),
  };
}
