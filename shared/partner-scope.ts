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
 * The partner's copy: same id, type and time; the student id replaced by the partner's learnerRef
 * wherever it appears; free text and code dropped unless the partner has `shareContent`.
 */
export function scopedCopy(
  p: Partner,
  secret: Buffer,
  ev: LdrEvent,
): { event: LdrEvent; orderingKey?: string } {
  const student = studentOf(ev);
  const ref = student ? learnerRef(secret, student) : undefined;
  const scrub = (v: unknown): unknown => {
    if (typeof v === 'string') return student && v === student ? ref : v;
    if (Array.isArray(v)) return v.map(scrub);
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, val] of Object.entries(v)) {
        if (!p.shareContent && FREE_TEXT.has(k)) continue;
        out[k === 'studentId' ? 'learnerRef' : k] = scrub(val);
      }
      return out;
    }
    return v;
  };
  const extensions: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(ev.extensions ?? {})) {
    if (k.startsWith('ldr-to-') || k === 'ldr-audience') continue; // other instances' addressing stays private
    extensions[k] = typeof v === 'string' ? (scrub(v) as string) : v;
  }
  extensions['ldr-partner'] = p.slug;
  const data = scrub(ev.data) as Record<string, unknown>;
  // content addressed to a list of instances names only the partner's own ones in its copy
  if (ev.type === TYPES.content && data && typeof data === 'object') {
    for (const k of ['instances', 'audience'] as const) {
      if (Array.isArray(data[k]))
        data[k] = (data[k] as unknown[]).filter((i) => p.instances.includes(i as string));
    }
  }
  const contentId = typeof data?.contentId === 'string' ? data.contentId : undefined;
  return {
    event: {
      id: ev.id,
      source: ev.source.replace(/instances\/[^/]+/, 'instances/-'),
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
