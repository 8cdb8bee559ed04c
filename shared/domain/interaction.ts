/**
 * The interaction event of SPEC §3: zod schemas (strict: unknown fields are rejected) and
 * `validateBatch`, which turns an untrusted request body into normalised interactions or a
 * list of field errors naming every offending field. Pure: time and ids are injected.
 */
import { z } from 'zod';
import type { FieldError } from '../errors.ts';

export const KINDS = [
  'exercise_attempt',
  'quiz_answer',
  'code_submission',
  'code_execution',
  'dialogue_turn',
  'help_request',
  'reflection',
  'vuca_progress',
  'content_view',
  'session',
] as const;
export type Kind = (typeof KINDS)[number];

export const LIMITS = {
  payloadBytes: 32 * 1024,
  textBytes: 16 * 1024,
  codeBytes: 32 * 1024,
  artifacts: 20,
  batch: 500,
  futureSkewMs: 5 * 60 * 1000,
} as const;

/**
 * The earliest `occurredAt` (SPEC §3: year 2000 or later), as an instant. With the offset bound below and
 * the "not more than 5 min in the future" rule, every accepted timestamp is one PostgreSQL stores.
 */
export const EARLIEST_OCCURRED_AT = Date.UTC(2000, 0, 1);
/** Real zones lie between -12:00 and +14:00; PostgreSQL refuses offsets beyond ±15:59. */
function offsetInRange(s: string): boolean {
  const m = /([+-])(\d{2}):(\d{2})$/.exec(s);
  if (!m) return true; // `Z`, or a format error reported by the datetime check
  const minutes = (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
  return minutes >= -12 * 60 && minutes <= 14 * 60;
}

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const PRINCIPAL_RE = /^[A-Za-z0-9._:@-]{1,128}$/;
const TOPIC_RE = /^[a-z0-9][a-z0-9._-]{0,127}$/;
const SLUG_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const LFS_RE = /^lfs:\/\/(?!__.*__$)[A-Za-z0-9_-]{1,64}$/;

export const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

const boundedText = (maxBytes: number) =>
  z
    .string()
    .min(1, 'must not be empty')
    .refine((s) => utf8Bytes(s) <= maxBytes, `must be at most ${maxBytes} bytes (UTF-8)`);
const ref = z.string().min(1, 'must not be empty').max(128, 'must be at most 128 characters');
const unit = z.number().min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1');

export const payloadSchemas = {
  exercise_attempt: z.strictObject({ exerciseId: ref, passed: z.boolean(), score: unit.optional() }),
  quiz_answer: z.strictObject({ quizId: ref, questionId: ref.optional(), correct: z.boolean(), score: unit }),
  code_submission: z.strictObject({
    exerciseId: ref.optional(),
    code: boundedText(LIMITS.codeBytes).optional(),
    codeQuality: unit.optional(),
  }),
  code_execution: z.strictObject({
    ok: z.boolean(),
    errorType: ref.optional(),
    errorMessage: boundedText(LIMITS.textBytes).optional(),
  }),
  dialogue_turn: z.strictObject({ text: boundedText(LIMITS.textBytes), role: z.enum(['student', 'tutor']) }),
  help_request: z.strictObject({ text: boundedText(LIMITS.textBytes) }),
  reflection: z.strictObject({ text: boundedText(LIMITS.textBytes) }),
  vuca_progress: z.strictObject({
    dimension: z.enum(['volatility', 'uncertainty', 'complexity', 'ambiguity']),
    value: unit,
  }),
  content_view: z.strictObject({
    contentId: ref,
    durationMs: z.number().int('must be an integer').min(0, 'must not be negative'),
  }),
  session: z.strictObject({ action: z.enum(['start', 'end']) }),
} satisfies Record<Kind, z.ZodType>;

/** Envelope fields shared by every kind (`kind` and `payload` are added per kind). */
const envelope = {
  id: z.string().regex(ID_RE, 'must be 1–64 characters of A–Z, a–z, 0–9, _ or -').optional(),
  studentId: z
    .string()
    .regex(PRINCIPAL_RE, 'must be 1–128 characters of A–Z, a–z, 0–9, . _ : @ or -')
    // the id names a Firestore document: '.', '..' and '__…__' are reserved there
    .refine(
      (s) => s !== '.' && s !== '..' && !/^__.*__$/.test(s),
      'must not be ".", ".." or of the form __name__',
    ),
  instanceId: z.string().regex(PRINCIPAL_RE, 'must be 1–128 characters of A–Z, a–z, 0–9, . _ : @ or -'),
  occurredAt: z.iso
    .datetime({
      offset: true,
      error: 'must be an RFC 3339 timestamp with seconds and a time zone (Z or ±hh:mm)',
    })
    .refine(offsetInRange, 'the time zone offset must be between -12:00 and +14:00')
    .refine(
      (s) => !(Date.parse(s) < EARLIEST_OCCURRED_AT),
      'must be in the year 2000 or later (2000-01-01T00:00:00Z)',
    ),
  topic: z
    .string()
    .regex(TOPIC_RE, 'must match ^[a-z0-9][a-z0-9._-]{0,127}$, e.g. "python.loops"')
    .default('general'),
  sponsor: z.string().regex(SLUG_RE, 'must be a sponsor slug matching ^[a-z0-9][a-z0-9-]{0,62}$').optional(),
  artifacts: z
    .array(z.string().regex(LFS_RE, 'must be an lfs://<artifactId> URI'))
    .max(LIMITS.artifacts, `at most ${LIMITS.artifacts} artifacts`)
    .optional(),
};

const variant = <K extends Kind>(kind: K) =>
  z.strictObject({ ...envelope, kind: z.literal(kind), payload: payloadSchemas[kind] });

const variants = {
  exercise_attempt: variant('exercise_attempt'),
  quiz_answer: variant('quiz_answer'),
  code_submission: variant('code_submission'),
  code_execution: variant('code_execution'),
  dialogue_turn: variant('dialogue_turn'),
  help_request: variant('help_request'),
  reflection: variant('reflection'),
  vuca_progress: variant('vuca_progress'),
  content_view: variant('content_view'),
  session: variant('session'),
};

/**
 * One interaction as sent by a client (id optional, topic defaulted on parse). Bus consumers may
 * parse published data with it too. The "not in the future" rule needs a clock and lives in
 * `validateBatch`.
 */
export const interactionSchema = z.discriminatedUnion('kind', [
  variants.exercise_attempt,
  variants.quiz_answer,
  variants.code_submission,
  variants.code_execution,
  variants.dialogue_turn,
  variants.help_request,
  variants.reflection,
  variants.vuca_progress,
  variants.content_view,
  variants.session,
]);

/** Used when `kind` itself is missing or unknown: checks the envelope, not the payload's fields. */
const unknownKind = z.strictObject({
  ...envelope,
  kind: z.enum(KINDS),
  payload: z.record(z.string(), z.unknown()),
});

type Parsed = z.output<typeof interactionSchema>;
type WithId<T> = T extends unknown ? Omit<T, 'id'> & { id: string } : never;
/** A validated, normalised interaction: `id` filled (client id or UUIDv7), `topic` defaulted. */
export type Interaction = WithId<Parsed>;
export type InteractionOf<K extends Kind> = Extract<Interaction, { kind: K }>;

export type BatchResult =
  | { ok: true; events: Interaction[]; isBatch: boolean }
  | { ok: false; errors: FieldError[]; tooLarge: boolean };

export interface ValidateOptions {
  now: Date;
  newId: () => string;
  /** Maximum events per batch; defaults to 500. */
  maxBatch?: number;
}

/** RFC 6901 JSON pointer for a zod path below `prefix`. */
const pointer = (prefix: string, path: readonly PropertyKey[]): string =>
  prefix + path.map((p) => `/${String(p).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');

const errorMap = (iss: { code?: string; input?: unknown }) =>
  iss.code === 'invalid_type' && iss.input === undefined ? 'is required' : undefined;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** True when the serialised payload exceeds 32 KiB (UTF-8); the HTTP layer answers 413 for it. */
export const payloadTooLarge = (payload: unknown): boolean =>
  isObject(payload) && utf8Bytes(JSON.stringify(payload)) > LIMITS.payloadBytes;

interface EventCheck {
  errors: FieldError[];
  tooLarge: boolean;
  value?: Parsed;
}

function checkEvent(raw: unknown, prefix: string, now: Date): EventCheck {
  if (!isObject(raw))
    return { errors: [{ path: prefix, message: 'must be an interaction object' }], tooLarge: false };
  const errors: FieldError[] = [];
  const tooLarge = payloadTooLarge(raw.payload);
  const kind = KINDS.find((k) => k === raw.kind);
  // An oversize payload is not inspected field by field: the answer is 413 anyway.
  const schema = kind && !tooLarge ? variants[kind] : unknownKind;
  const result = schema.safeParse(raw, { error: errorMap });
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys)
          errors.push({ path: pointer(prefix, [...issue.path, key]), message: 'unknown field' });
      } else {
        errors.push({ path: pointer(prefix, issue.path), message: issue.message });
      }
    }
  }
  if (tooLarge) {
    errors.push({
      path: `${prefix}/payload`,
      message: `payload is larger than ${LIMITS.payloadBytes} bytes; upload large content via lfsProxy and reference it in artifacts`,
    });
  }
  const at = typeof raw.occurredAt === 'string' ? Date.parse(raw.occurredAt) : Number.NaN;
  if (!errors.some((e) => e.path === `${prefix}/occurredAt`) && at > now.getTime() + LIMITS.futureSkewMs) {
    errors.push({ path: `${prefix}/occurredAt`, message: 'must not be more than 5 minutes in the future' });
  }
  return errors.length || !result.success
    ? { errors, tooLarge }
    : { errors, tooLarge, value: result.data as Parsed };
}

/**
 * Validates a request body: one interaction, or `{"events": [...]}` with 1..maxBatch interactions.
 * All-or-nothing: any error rejects the whole body, and every offending field of every event is
 * listed. `tooLarge` is true when at least one payload exceeds 32 KiB (→ 413 rather than 400).
 */
export function validateBatch(body: unknown, opts: ValidateOptions): BatchResult {
  const maxBatch = opts.maxBatch ?? LIMITS.batch;
  if (!isObject(body)) {
    return {
      ok: false,
      errors: [{ path: '', message: 'body must be an interaction object or {"events": [...]}' }],
      tooLarge: false,
    };
  }
  const isBatch = Object.hasOwn(body, 'events');

  let raws: unknown[];
  let prefixOf: (i: number) => string;
  const errors: FieldError[] = [];
  if (isBatch) {
    for (const key of Object.keys(body)) {
      if (key !== 'events')
        errors.push({ path: pointer('', [key]), message: 'unknown field; a batch has only "events"' });
    }
    const events = body.events;
    if (!Array.isArray(events) || events.length === 0 || events.length > maxBatch) {
      errors.push({ path: '/events', message: `must be an array of 1 to ${maxBatch} interactions` });
      return { ok: false, errors, tooLarge: false };
    }
    raws = events;
    prefixOf = (i) => `/events/${i}`;
  } else {
    raws = [body];
    prefixOf = () => '';
  }

  let tooLarge = false;
  const parsed: Parsed[] = [];
  const firstIndexOfId = new Map<string, number>();
  raws.forEach((raw, i) => {
    const check = checkEvent(raw, prefixOf(i), opts.now);
    errors.push(...check.errors);
    tooLarge ||= check.tooLarge;
    if (check.value) parsed.push(check.value);
    // ids are scoped to the learner (SPEC §3): the same id for two learners names two events
    const id = isObject(raw) ? raw.id : undefined;
    if (typeof id === 'string' && ID_RE.test(id)) {
      // JSON.stringify, not String(): an unvalidated studentId may be any JSON value (an object whose
      // toString is not a function would throw)
      const key = `${JSON.stringify((raw as { studentId?: unknown }).studentId) ?? ''}/${id}`;
      const first = firstIndexOfId.get(key);
      if (first === undefined) firstIndexOfId.set(key, i);
      else
        errors.push({
          path: `${prefixOf(i)}/id`,
          message: `duplicate id for this learner; already used by /events/${first}`,
        });
    }
  });

  if (errors.length) return { ok: false, errors, tooLarge };
  const events = parsed.map((e) => ({ ...e, id: e.id ?? opts.newId() }) as Interaction);
  return { ok: true, events, isBatch };
}
