/**
 * zod schemas of what the HTTPS functions answer (SPEC §4). Requests are validated by the schemas next to
 * their handlers; these describe the responses, for the OpenAPI documents and the client SDK's generated
 * types (client/types.ts). Type-level checks in shared/openapi.test.ts tie them to the handlers' types.
 */
import { z } from 'zod';
import { KINDS } from './domain/interaction.ts';

const datetime = z.iso.datetime({ offset: true });

/** RFC 9457 problem details, as every error of the room is answered. */
export const problemSchema = z.object({
  type: z.string().describe('a URI naming the problem type'),
  title: z.string(),
  status: z.number().int(),
  detail: z.string().optional(),
  errors: z
    .array(
      z.object({
        path: z.string().describe('RFC 6901 JSON pointer of the offending field'),
        message: z.string(),
      }),
    )
    .optional()
    .describe('every offending field, for validation errors'),
});

export const healthSchema = z.object({
  status: z.enum(['ok', 'down']),
  dependencies: z.record(z.string(), z.enum(['ok', 'down', 'degraded'])),
});

// --- ingestInteraction ----------------------------------------------------------------------------

export const ingestResultSchema = z.object({
  accepted: z.number().int().min(0),
  duplicates: z.number().int().min(0),
  results: z.array(z.object({ id: z.string(), status: z.enum(['accepted', 'duplicate']) })),
});

// --- lfsProxy -------------------------------------------------------------------------------------

export const uploadTicketSchema = z.object({
  artifactId: z.string(),
  uri: z.string().describe('lfs://<artifactId>, to reference in events'),
  uploadUrl: z
    .string()
    .describe(
      'V4 signed URL, valid 15 min: a PUT of the bytes, or (method POST) the start of a resumable session',
    ),
  method: z
    .enum(['PUT', 'POST'])
    .describe(
      'PUT: send the bytes in one request. POST: start a resumable session (empty body; 201 with the session URI in Location), then PUT chunks to it with Content-Range',
    ),
  headers: z.record(z.string(), z.string()).describe('exactly the headers to send with that request'),
  expiresAt: datetime,
});

export const artifactInfoSchema = z.object({
  artifactId: z.string(),
  uri: z.string(),
  state: z.enum(['pending', 'stored', 'rejected']),
  filename: z.string(),
  contentType: z.string(),
  size: z.number().int(),
  sha256: z.string(),
  ownerId: z.string(),
  instanceId: z.string().optional(),
  createdAt: datetime,
  storedAt: datetime.optional(),
  rejectedAt: datetime.optional(),
  reason: z.string().optional(),
  downloadUrl: z.string().optional().describe('signed GET URL, once stored'),
  expiresAt: datetime.optional(),
});

// --- publishContent -------------------------------------------------------------------------------

export const publishResultSchema = z.object({
  id: z.string().describe('the ce-id: <contentId>@<version>'),
  contentId: z.string(),
  version: z.number().int(),
  audience: z.union([z.literal('all'), z.array(z.string())]),
  stored: z.boolean().describe('false when this version was stored before (a retry)'),
});

// --- progressApi ----------------------------------------------------------------------------------

export const levelSchema = z.enum(['beginner', 'learning', 'proficient', 'mastered']);

export const topicProgressSchema = z.object({
  topic: z.string(),
  mastery: z.number().min(0).max(100),
  level: levelSchema,
  components: z.object({
    exercise: z.number(),
    quiz: z.number(),
    quality: z.number(),
    consistency: z.number(),
  }),
  interactions: z.number().int().describe('how many interactions the mastery is based on'),
  updatedAt: datetime,
});

export const progressSchema = z.object({ studentId: z.string(), topics: z.array(topicProgressSchema) });

export const historyItemSchema = z.object({
  id: z.string(),
  kind: z.enum(KINDS),
  topic: z.string(),
  occurredAt: datetime,
  payload: z.record(z.string(), z.unknown()),
  artifacts: z.array(z.string()),
  masteryAfter: z.number(),
  sponsor: z.string().optional(),
});

export const historyPageSchema = z.object({
  items: z.array(historyItemSchema),
  nextCursor: z.string().optional().describe('pass as ?cursor= for the next page; absent on the last page'),
});

export const historyQuerySchema = z.strictObject({
  from: datetime.optional().describe('inclusive lower bound'),
  to: datetime.optional().describe('exclusive upper bound'),
  limit: z.coerce.number().int().min(1).max(500).optional().describe('page size, default 50'),
  cursor: z.string().optional(),
});

export const alertSchema = z.object({
  topic: z.string(),
  reason: z.string(),
  day: z.string().describe('YYYY-MM-DD'),
  detail: z.string(),
  detectedAt: datetime,
  interactionId: z.string(),
});

export const alertsSchema = z.object({ alerts: z.array(alertSchema) });

// --- partnerRoom ----------------------------------------------------------------------------------

export const manifestSchema = z.object({
  slug: z.string(),
  displayName: z.string(),
  subscription: z.string(),
  eventTypes: z.array(z.string()),
  shareContent: z.boolean(),
  schemas: z.record(z.string(), z.string()).describe('event type → JSON Schema URL of its data'),
  endpoints: z.record(z.string(), z.string()),
});

export const pulledSchema = z.object({
  messages: z.array(
    z.object({
      ackId: z.string(),
      event: z.record(z.string(), z.unknown()).describe('structured-mode CloudEvent'),
    }),
  ),
});
