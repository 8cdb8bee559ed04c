/**
 * zod schemas of the `data` of the six event types (SPEC §3), as the functions publish it:
 * interaction (ingestInteraction), triage decision (routeTriage), progress and struggle (updateProgress's
 * ledger), content (publishContent), artifact stored (finalizeArtifact). event-schemas.test.ts checks what
 * the code builds against them. The AsyncAPI document (scripts/asyncapi.ts) and partnerRoom's schema links
 * are generated from here.
 */
import { z } from 'zod';
import { levelSchema } from './api-schemas.ts';
import { contentSchema } from './content.ts';
import { interactionSchema, KINDS } from './domain/interaction.ts';
import { AGENTS } from './domain/triage.ts';
import { TYPES } from './events.ts';
import { scopedSchema } from './partner-scope.ts';
import { mirroredTypes } from './registry.ts';

const datetime = z.iso.datetime({ offset: true });
const studentId = z.string().regex(/^[A-Za-z0-9._:@-]{1,128}$/);

/** As published: the client's interaction with `id` and `topic` always set. */
export const interactionData = interactionSchema.and(z.object({ id: z.string(), topic: z.string() }));

export const triageData = z.strictObject({
  agent: z.enum(AGENTS),
  reason: z.string(),
  confidence: z.number().min(0).max(1),
  ruleId: z.string(),
  interactionId: z.string(),
  studentId,
  instanceId: z.string(),
  topic: z.string(),
  kind: z.enum(KINDS),
  occurredAt: datetime,
});

const components = z.strictObject({
  exercise: z.number(),
  quiz: z.number(),
  quality: z.number(),
  consistency: z.number(),
});

export const progressData = z.strictObject({
  studentId,
  instanceId: z.string(),
  topic: z.string(),
  mastery: z.number().min(0).max(100),
  previousMastery: z.number().min(0).max(100),
  level: levelSchema,
  components,
  interactionId: z.string(),
  version: z.number().int().min(1),
});

export const struggleData = z.strictObject({
  studentId,
  instanceId: z.string(),
  topic: z.string(),
  reason: z.enum(['repeated_error', 'failed_executions', 'low_quiz_score', 'stuck', 'exercise_time']),
  detail: z.string(),
  day: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  interactionId: z.string(),
});

export const contentData = contentSchema.extend({
  audience: z.union([z.literal('all'), z.array(z.string())]),
});

export const artifactData = z.strictObject({
  artifactId: z.string(),
  uri: z.string().regex(/^lfs:\/\/[A-Za-z0-9_-]{1,64}$/),
  ownerId: z.string(),
  instanceId: z.string().optional(),
  filename: z.string(),
  contentType: z.string(),
  size: z.number().int().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  storedAt: datetime,
});

export type EventType = (typeof TYPES)[keyof typeof TYPES];

export const eventDataSchemas: Record<EventType, z.ZodType> = {
  [TYPES.interaction]: interactionData,
  [TYPES.triage]: triageData,
  [TYPES.progress]: progressData,
  [TYPES.struggle]: struggleData,
  [TYPES.content]: contentData,
  [TYPES.artifact]: artifactData,
};

export type SchemaTarget = 'draft-2020-12' | 'draft-7';

/** JSON Schema of an event type's data (what is published, so `output`). */
export function eventJsonSchema(
  type: EventType,
  target: SchemaTarget = 'draft-2020-12',
): Record<string, unknown> {
  const { $schema: _, ...schema } = z.toJSONSchema(eventDataSchemas[type], {
    io: 'output',
    unrepresentable: 'any',
    reused: 'inline',
    target,
  }) as Record<string, unknown>;
  return schema;
}

/**
 * The data as a partner receives it (shared/partner-scope.ts `scopedCopy`): `learnerRef` instead of
 * `studentId`, free text and code dropped unless the partner has `shareContent`. For partnerRoom's
 * `GET /p/<slug>/schemas/<type>`.
 */
export function partnerEventSchema(
  type: (typeof mirroredTypes)[number],
  shareContent: boolean,
  target: SchemaTarget = 'draft-2020-12',
): Record<string, unknown> {
  return {
    ...(target === 'draft-2020-12' ? { $schema: 'https://json-schema.org/draft/2020-12/schema' } : {}),
    ...(scopedSchema(eventJsonSchema(type, target), shareContent) as Record<string, unknown>),
  };
}

export { mirroredTypes };
