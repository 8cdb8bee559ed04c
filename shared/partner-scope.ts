import type { LdrEvent } from './cloudevents.ts';
import { TYPES } from './events.ts';
import { learnerRef } from './partner-secrets.ts';
import type { Partner } from './registry.ts';

/** Fields that carry a learner's free text or code: dropped for partners without `shareContent`. */
const FREE_TEXT: ReadonlySet<string> = new Set(['text', 'code', 'errorMessage', 'detail', 'filename']);

export const studentOf = (ev: LdrEvent) =>
  ev.subject?.startsWith('students/') ? ev.subject.slice(9) : undefined;

/** SPEC §8: instance or sponsor match, and the type among the partner's event types. */
export function entitled(p: Partner, ev: LdrEvent): boolean {
  if (!p.eventTypes.includes(ev.type as never)) return false;
  const x = ev.extensions ?? {};
  const sponsor = x['ldr-sponsor'];
  if (sponsor && p.sponsors.includes(sponsor)) return true;
  const instance = x['ldr-instance'];
  if (instance && p.instances.includes(instance)) return true;
  // content addressed to instances: to all of them, or to a listed few
  if (x['ldr-audience'] === 'all') return p.instances.length > 0;
  return p.instances.some((i) => x[`ldr-to-${i}`] !== undefined);
}

/**
 * The partner's copy (SPEC §8): same id, type and time, and
 * - the learner's id replaced by the partner's learnerRef wherever it appears: a `studentId` field
 *   becomes `learnerRef`, and every occurrence inside any string or key (a note "Alice.A1 needs help",
 *   an attribute) is replaced, case-insensitively;
 * - free text and code dropped unless the partner has `shareContent`: the FREE_TEXT fields and the
 *   `body` of content (free text written for learners, where ids of other learners could hide);
 * - no id of an instance the partner does not run: `ldr-instance`, `instanceId` fields and the
 *   instance lists of content keep only the partner's own instances (a sponsor-matched copy of another
 *   instance's event names no instance at all).
 */
export function scopedCopy(
  p: Partner,
  secret: Buffer,
  ev: LdrEvent,
): { event: LdrEvent; orderingKey?: string } {
  const student = studentOf(ev);
  const ref = student ? learnerRef(secret, student) : undefined;
  const learnerId = student ? new RegExp(student.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gi') : undefined;
  const text = (s: string): string => (learnerId && ref ? s.replace(learnerId, ref) : s);
  const ours = (instance: unknown) => typeof instance === 'string' && p.instances.includes(instance);
  const isContent = ev.type === TYPES.content;
  const scrub = (v: unknown, top = false): unknown => {
    if (typeof v === 'string') return text(v);
    if (Array.isArray(v)) return v.map((x) => scrub(x));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, val] of Object.entries(v)) {
        if (!p.shareContent && (FREE_TEXT.has(k) || (top && isContent && k === 'body'))) continue;
        if (k === 'instanceId' && !ours(val)) continue;
        out[k === 'studentId' ? 'learnerRef' : text(k)] = scrub(val);
      }
      return out;
    }
    return v;
  };
  const extensions: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(ev.extensions ?? {})) {
    if (k.startsWith('ldr-to-') || k === 'ldr-audience') continue; // other instances' addressing stays private
    if (k === 'ldr-instance' && !ours(v)) continue;
    extensions[k] = typeof v === 'string' ? text(v) : v;
  }
  extensions['ldr-partner'] = p.slug;
  const data = scrub(ev.data, true) as Record<string, unknown>;
  // content addressed to a list of instances names only the partner's own ones in its copy
  if (isContent && data && typeof data === 'object') {
    for (const k of ['instances', 'audience'] as const) {
      if (Array.isArray(data[k])) data[k] = (data[k] as unknown[]).filter(ours);
    }
  }
  const contentId = typeof data?.contentId === 'string' ? data.contentId : undefined;
  return {
    event: {
      id: ev.id,
      source: text(ev.source.replace(/instances\/[^/]+/, 'instances/-')),
      type: ev.type,
      time: ev.time,
      subject: ref ? `learners/${ref}` : ev.subject,
      data,
      extensions,
    },
    orderingKey: ref ?? contentId,
  };
}

/**
 * A JSON Schema of an event's data as the partner receives it: `studentId` is `learnerRef`, and free
 * text and code are gone unless the partner has `shareContent` (what `scopedCopy` does to the data).
 */
export function scopedSchema(schema: unknown, shareContent: boolean): unknown {
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk);
    if (!node || typeof node !== 'object') return node;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) out[k] = walk(v);
    const props = out.properties;
    if (props && typeof props === 'object' && !Array.isArray(props)) {
      const renamed: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(props)) {
        if (!shareContent && FREE_TEXT.has(k)) continue;
        renamed[k === 'studentId' ? 'learnerRef' : k] =
          k === 'studentId'
            ? {
                type: 'string',
                description: 'the learner, pseudonymised for this partner (HMAC-SHA256, base64url)',
              }
            : v;
      }
      out.properties = renamed;
      if (Array.isArray(out.required)) {
        out.required = out.required
          .filter((k) => shareContent || !FREE_TEXT.has(k as string))
          .map((k) => (k === 'studentId' ? 'learnerRef' : k));
      }
    }
    return out;
  };
  return walk(schema);
}
