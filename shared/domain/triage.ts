/**
 * SPEC §6 triage as a data table (triage-rules.json): ordered rules, first match wins.
 * `loadRules` validates the table and compiles its regexes once; `triage` is a pure lookup.
 */
import { z } from 'zod';
import { KINDS, type Kind } from './interaction.ts';

export const AGENTS = ['concepts', 'code-review', 'debug', 'exercise', 'progress', 'none'] as const;
export type Agent = (typeof AGENTS)[number];

export interface TriageDecision {
  agent: Agent;
  reason: string;
  confidence: number;
  ruleId: string;
}

export interface CompiledRule {
  id: string;
  agent: Agent;
  reason: string;
  confidence: number;
  kinds?: ReadonlySet<Kind>;
  payload?: ReadonlyArray<readonly [string, string | number | boolean | null]>;
  text?: readonly RegExp[];
}
export type TriageRules = readonly CompiledRule[];

/** What triage looks at; an `Interaction` fits. */
export interface TriageInput {
  kind: Kind;
  payload: object;
}

const pattern = z
  .strictObject({
    lang: z.string().optional(),
    pattern: z.string().min(1),
    // "g" and "y" are refused: they make RegExp#test stateful. "u" is always added.
    flags: z
      .string()
      .regex(/^[ims]*$/, 'flags may only contain i, m, s ("u" is always on)')
      .default('i'),
  })
  .transform((p, ctx) => {
    try {
      return new RegExp(p.pattern, `${p.flags}u`);
    } catch (e) {
      ctx.issues.push({
        code: 'custom',
        message: `invalid regular expression: ${(e as Error).message}`,
        input: p,
      });
      return z.NEVER;
    }
  });

const rule = z.strictObject({
  id: z.string().min(1),
  agent: z.enum(AGENTS),
  reason: z.string().min(1),
  confidence: z.number().min(0).max(1),
  description: z.string().optional(),
  kinds: z.array(z.enum(KINDS)).min(1).optional(),
  payload: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
  text: z.array(pattern).min(1).optional(),
});

const table = z
  .strictObject({ description: z.string().optional(), rules: z.array(rule).min(1) })
  .superRefine((t, ctx) => {
    const seen = new Set<string>();
    t.rules.forEach((r, i) => {
      if (seen.has(r.id))
        ctx.addIssue({ code: 'custom', path: ['rules', i, 'id'], message: `duplicate rule id "${r.id}"` });
      seen.add(r.id);
    });
  });

/** Validates and compiles a rule table; throws one error naming every bad field. */
export function loadRules(json: unknown): TriageRules {
  const parsed = table.safeParse(json);
  if (!parsed.success) {
    const list = parsed.error.issues.map((i) => `/${i.path.join('/')}: ${i.message}`).join('; ');
    throw new Error(`invalid triage rules: ${list}`);
  }
  return parsed.data.rules.map((r) => ({
    id: r.id,
    agent: r.agent,
    reason: r.reason,
    confidence: r.confidence,
    ...(r.kinds ? { kinds: new Set(r.kinds) } : {}),
    ...(r.payload ? { payload: Object.entries(r.payload) } : {}),
    ...(r.text ? { text: r.text } : {}),
  }));
}

/** The free text of an interaction: payload.text, payload.errorType and payload.errorMessage. */
export function textOf(payload: object): string {
  const p = payload as Record<string, unknown>;
  return [p.text, p.errorType, p.errorMessage]
    .filter((v): v is string => typeof v === 'string')
    .join('\n')
    .normalize('NFC');
}

const FALLBACK: TriageDecision = {
  agent: 'none',
  reason: 'no rule matched',
  confidence: 0,
  ruleId: 'fallback',
};

/** Exactly one decision per interaction: the first rule whose matchers all match. */
export function triage(interaction: TriageInput, rules: TriageRules): TriageDecision {
  const payload = interaction.payload as Record<string, unknown>;
  const text = textOf(payload);
  for (const r of rules) {
    if (r.kinds && !r.kinds.has(interaction.kind)) continue;
    if (r.payload && !r.payload.every(([k, v]) => Object.hasOwn(payload, k) && payload[k] === v)) continue;
    if (r.text && !(text && r.text.some((re) => re.test(text)))) continue;
    return { agent: r.agent, reason: r.reason, confidence: r.confidence, ruleId: r.id };
  }
  return { ...FALLBACK };
}
