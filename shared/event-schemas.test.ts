import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { artifactStoredEvent } from '../functions/finalizeArtifact/handler.ts';
import { createPublishContent } from '../functions/publishContent/handler.ts';
import { createRouteTriage } from '../functions/routeTriage/handler.ts';
import { progressData, struggleData } from '../functions/updateProgress/ledger.ts';
import type { Principal } from './auth.ts';
import type { Bus } from './clients.ts';
import type { LdrEvent } from './cloudevents.ts';
import { type Interaction, validateBatch } from './domain/interaction.ts';
import { apply, emptyState, mastery } from './domain/mastery.ts';
import { loadRules } from './domain/triage.ts';
import { type EventType, eventDataSchemas, eventJsonSchema, partnerEventSchema } from './event-schemas.ts';
import { interactionEvent, TYPES } from './events.ts';
import { scopedCopy } from './partner-scope.ts';
import { mirroredTypes, partnerSchema } from './registry.ts';

const NOW = new Date('2025-03-10T12:00:00Z');
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false }); // formats: zod checks them;
const fakeBus = () => {
  const published: LdrEvent[] = [];
  const bus: Bus = {
    async publish(_t, ev) {
      published.push(ev);
      return '1';
    },
    async publishRaw() {
      return '1';
    },
  };
  return { bus, published };
};

function interaction(raw: Record<string, unknown>): Interaction {
  const r = validateBatch(
    { studentId: 'stu-1', instanceId: 'app-1', occurredAt: NOW.toISOString(), ...raw },
    { now: NOW, newId: () => 'evt-1' },
  );
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.events[0]!;
}

/** What each function publishes, built by the functions' own code. */
async function published(): Promise<Array<[EventType, LdrEvent]>> {
  const help = interaction({
    kind: 'help_request',
    payload: { text: "I'm stuck with loops" },
    sponsor: 'acme',
  });
  const quiz = interaction({
    kind: 'quiz_answer',
    topic: 'python.loops',
    payload: { quizId: 'q', correct: false, score: 0.1 },
  });
  const out: Array<[EventType, LdrEvent]> = [];
  for (const i of [help, quiz]) out.push([TYPES.interaction, interactionEvent(i, NOW)]);

  const triage = fakeBus();
  const rules = loadRules(
    JSON.parse(readFileSync(new URL('./domain/triage-rules.json', import.meta.url), 'utf8')),
  );
  await createRouteTriage({ bus: triage.bus, rules })(interactionEvent(help, NOW));
  out.push(...triage.published.map((e) => [TYPES.triage, e] as [EventType, LdrEvent]));

  const { state, struggles } = apply(emptyState(), help);
  expect(struggles.length).toBeGreaterThan(0);
  const ev = (type: EventType, data: unknown): LdrEvent => ({
    id: 'x',
    source: 's',
    type,
    time: NOW.toISOString(),
    subject: 'students/stu-1',
    data,
    extensions: { 'ldr-instance': 'app-1' },
  });
  out.push([TYPES.progress, ev(TYPES.progress, progressData(help, mastery(state), 0, 1))]);
  for (const s of struggles)
    out.push([TYPES.struggle, ev(TYPES.struggle, struggleData(help, s, '2025-03-10'))]);

  const content = fakeBus();
  const platform: Principal = { sub: 'engine', role: 'platform', permissions: ['content:publish'], exp: 2e9 };
  const publish = createPublishContent({
    verifier: { verify: async () => platform },
    bus: content.bus,
    store: {
      record: async (c) => ({ state: 'new' as const, publishedAt: c.publishedAt }),
      markSent: async () => {},
    },
    instances: { known: async (ids) => new Set(ids) },
    learners: { instancesOf: async () => ['app-1'] },
    artifacts: { get: async () => undefined },
    now: () => NOW,
  });
  const req = (body: unknown) =>
    ({
      ctx: {
        req: {
          headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
          body,
          rawBody: Buffer.from(JSON.stringify(body)),
        },
        params: {},
        query: new URLSearchParams(),
      },
    }) as any;
  await publish(
    req({
      contentId: 'c1',
      version: 1,
      kind: 'lesson',
      title: 'Loops',
      topic: 'python.loops',
      sponsor: 'acme',
      body: { text: 'hi' },
    }).ctx,
  );
  await publish(
    req({
      contentId: 's1',
      version: 1,
      kind: 'signal',
      title: 'Hint',
      topic: 'python.loops',
      studentId: 'stu-1',
      instances: ['app-1'],
    }).ctx,
  );
  expect(content.published).toHaveLength(2);
  out.push(...content.published.map((e) => [TYPES.content, e] as [EventType, LdrEvent]));

  out.push([
    TYPES.artifact,
    artifactStoredEvent(
      'art-1',
      {
        state: 'stored',
        ownerId: 'stu-1',
        ownerKind: 'student',
        instanceId: 'app-1',
        uploaderSub: 'stu-1',
        uploaderRole: 'student',
        bucket: 'b',
        objectName: 'artifacts/art-1/clip.mp4',
        contentType: 'video/mp4',
        size: 10,
        sha256: 'a'.repeat(64),
        filename: 'clip.mp4',
        createdAt: NOW.toISOString(),
      },
      NOW.toISOString(),
    ),
  ]);
  return out;
}

describe('event data schemas', () => {
  it('cover the six event types', () => {
    expect(Object.keys(eventDataSchemas).sort()).toEqual(Object.values(TYPES).sort());
  });

  it('what the functions publish validates against the zod schema and its JSON Schema', {
    timeout: 30_000,
  }, async () => {
    const events = await published();
    expect(new Set(events.map(([t]) => t)).size).toBe(6);
    for (const [type, ev] of events) {
      const parsed = eventDataSchemas[type].safeParse(ev.data);
      expect(parsed.error?.issues ?? [], type).toEqual([]);
      const validate = ajv.compile(eventJsonSchema(type));
      expect(validate(ev.data) ? [] : validate.errors, type).toEqual([]);
    }
  });

  it('partner copies validate against the partner schema, with and without shareContent', async () => {
    const secret = Buffer.alloc(32, 1);
    for (const shareContent of [false, true]) {
      const p = partnerSchema.parse({
        slug: 'acme-co',
        displayName: 'Acme',
        instances: ['app-1'],
        sponsors: ['acme'],
        shareContent,
      });
      for (const [type, ev] of await published()) {
        if (!mirroredTypes.includes(type as never)) continue;
        const copy = scopedCopy(p, secret, ev).event.data;
        const validate = ajv.compile(
          partnerEventSchema(type as (typeof mirroredTypes)[number], shareContent),
        );
        expect(validate(copy) ? [] : validate.errors, `${type} shareContent=${shareContent}`).toEqual([]);
      }
    }
  });

  it('the partner schema names learnerRef, not studentId, and drops free text without shareContent', () => {
    const s = JSON.stringify(partnerEventSchema(TYPES.interaction, false));
    expect(s).toContain('learnerRef');
    expect(s).not.toContain('"studentId"');
    expect(s).not.toContain('"text"');
    expect(JSON.stringify(partnerEventSchema(TYPES.interaction, true))).toContain('"text"');
  });

  it('a schema refuses data that is not what is published (the check can fail)', () => {
    const validate = ajv.compile(eventJsonSchema(TYPES.progress));
    expect(validate({ studentId: 'stu-1', mastery: 'high' })).toBe(false);
  });
});
