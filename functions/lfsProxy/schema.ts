import { z } from 'zod';
import type { FieldError } from '../../shared/errors.ts';
import { sanitizeFilename } from './filename.ts';

/** What lfsProxy accepts: the allowed content types and the largest size, from the configuration. */
export interface UploadPolicy {
  contentTypes: ReadonlySet<string>;
  maxBytes: number;
  /** from this size on, uploads get a resumable session unless the request says `resumable: false` */
  resumableFromBytes: number;
}

const STUDENT_ID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;
const SHA256_RE = /^[0-9a-fA-F]{64}$/;
/** A client may send a long path; only its last segment is kept, so this bound is generous. */
const MAX_RAW_FILENAME = 1024;

export interface UploadRequest {
  /** sanitised: the last segment of the object name */
  filename: string;
  /** lower-cased, one of the allow-list */
  contentType: string;
  size: number;
  /** lower-case hex */
  sha256: string;
  studentId?: string;
  /** true: a resumable session; false: one PUT; absent: by size (`resumableFromBytes`) */
  resumable?: boolean;
}

const errorMap = (iss: { code?: string; input?: unknown }) =>
  iss.code === 'invalid_type' && iss.input === undefined ? 'is required' : undefined;

/** `POST /uploads` body: strict (unknown fields are errors), normalised on success. */
export function uploadRequestSchema(policy: UploadPolicy) {
  const allowed = [...policy.contentTypes].join(', ');
  return z.strictObject({
    filename: z
      .string()
      .min(1, 'must not be empty')
      .max(MAX_RAW_FILENAME, `must be at most ${MAX_RAW_FILENAME} characters`)
      .transform((s) => sanitizeFilename(s)),
    contentType: z
      .string()
      .transform((s) => s.trim().toLowerCase())
      .refine((s) => policy.contentTypes.has(s), `must be one of ${allowed}`),
    size: z
      .number()
      .int('must be an integer number of bytes')
      .min(1, 'must be at least 1 byte')
      .max(policy.maxBytes, `must be at most ${policy.maxBytes} bytes`),
    sha256: z
      .string()
      .regex(SHA256_RE, 'must be 64 hexadecimal characters (the SHA-256 of the file)')
      .transform((s) => s.toLowerCase()),
    studentId: z.string().regex(STUDENT_ID_RE, 'must be 1–128 characters of [A-Za-z0-9._:@-]').optional(),
    resumable: z
      .boolean()
      .optional()
      .describe(
        `true: a signed resumable session (method POST); false: one signed PUT; absent: resumable from ${policy.resumableFromBytes} bytes on`,
      ),
  });
}

const pointer = (path: readonly PropertyKey[]) =>
  path.map((p) => `/${String(p).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('') || '/';

export type Parsed<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

/** Validates an untrusted body; every offending field is named (RFC 6901 pointers). */
export function parseUploadRequest(body: unknown, policy: UploadPolicy): Parsed<UploadRequest> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, errors: [{ path: '/', message: 'must be a JSON object' }] };
  }
  const result = uploadRequestSchema(policy).safeParse(body, { error: errorMap });
  if (result.success) {
    const { studentId, resumable, ...rest } = result.data;
    return {
      ok: true,
      value: {
        ...rest,
        ...(studentId !== undefined ? { studentId } : {}),
        ...(resumable !== undefined ? { resumable } : {}),
      },
    };
  }
  const errors: FieldError[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys)
        errors.push({ path: pointer([...issue.path, key]), message: 'unknown field' });
    } else {
      errors.push({ path: pointer(issue.path), message: issue.message });
    }
  }
  return { ok: false, errors };
}
