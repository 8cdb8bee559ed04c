/**
 * What the console's taps saw: every message of every topic it subscribes to, in memory, bounded
 * (the newest `limit` kept), findable by ce-id (an interaction and the events derived from it:
 * `<id>.triage`, `<id>.progress`, `<id>.struggle.<reason>`, partner copies under the same ce-id) and by
 * W3C trace id (from `ce-traceparent`), and counted per topic and second for the rate sparklines.
 */
export interface Seen {
  topic: string;
  /** publish time (ISO) */
  time: string;
  messageId: string;
  type?: string;
  ceId?: string;
  /** the CloudEvent's own `time` (for an interaction: when ingest received it) */
  ceTime?: string;
  subject?: string;
  orderingKey?: string;
  traceId?: string;
  /** the learner, from `ce-subject` (students/<id>, learners/<learnerRef>) or data.studentId */
  learner?: string;
  instance?: string;
  reason?: string;
  /** a few fields of the data, for the follow view (agent, mastery, version, topic…) */
  data?: Record<string, unknown>;
}

const TRACE = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;
const DATA_FIELDS = [
  'studentId',
  'learnerRef',
  'topic',
  'kind',
  'agent',
  'mastery',
  'previousMastery',
  'level',
  'version',
  'reason',
  'interactionId',
];

/** A message as the taps receive it, reduced to what the console shows. */
export function seenOf(
  topic: string,
  m: {
    id: string;
    publishTime: Date;
    attributes: Record<string, string>;
    orderingKey?: string;
    data: Buffer;
  },
): Seen {
  const a = m.attributes;
  let data: Record<string, unknown> | undefined;
  if (m.data.length && m.data.length < 64 * 1024) {
    try {
      const parsed = JSON.parse(m.data.toString('utf8')) as Record<string, unknown>;
      if (parsed && typeof parsed === 'object') {
        data = {};
        for (const k of DATA_FIELDS) if (parsed[k] !== undefined) data[k] = parsed[k];
      }
    } catch {
      // not JSON: kept without data
    }
  }
  const subject = a['ce-subject'];
  // students/<id> in the room, learners/<learnerRef> on a partner's copy
  const fromSubject = /^(?:students|learners)\/(.+)$/.exec(subject ?? '')?.[1];
  return {
    topic,
    time: m.publishTime.toISOString(),
    messageId: m.id,
    type: a['ce-type'],
    ceId: a['ce-id'],
    ceTime: a['ce-time'],
    subject,
    orderingKey: m.orderingKey || undefined,
    traceId: TRACE.exec(a['ce-traceparent'] ?? '')?.[1],
    learner: fromSubject ?? (typeof data?.studentId === 'string' ? data.studentId : undefined) ?? undefined,
    instance: a['ldr-instance'],
    reason: a['ldr-deadletter-reason'] ?? a.CloudPubSubDeadLetterSourceSubscription,
    data: data && Object.keys(data).length ? data : undefined,
  };
}

/** The interaction a ce-id belongs to: `<id>.triage` → `<id>`; an interaction's own id is kept. */
export const rootCeId = (ceId: string) => ceId.replace(/\.(triage|progress|struggle\.[\w-]+)$/, '');

export class TapStore {
  private items: Seen[] = [];
  private perSecond = new Map<string, Map<number, number>>();
  totals = new Map<string, number>();

  constructor(
    private limit = 20_000,
    private now = () => Date.now(),
  ) {}

  add(e: Seen) {
    this.items.push(e);
    // dropped in chunks, so adding stays cheap
    if (this.items.length > this.limit + 1000) this.items.splice(0, this.items.length - this.limit);
    const sec = Math.floor(this.now() / 1000);
    const counts = this.perSecond.get(e.topic) ?? new Map<number, number>();
    this.perSecond.set(e.topic, counts);
    counts.set(sec, (counts.get(sec) ?? 0) + 1);
    for (const s of counts.keys()) if (s <= sec - 60) counts.delete(s);
    this.totals.set(e.topic, (this.totals.get(e.topic) ?? 0) + 1);
  }

  get size() {
    return Math.min(this.items.length, this.limit);
  }

  recent(n: number) {
    return this.items.slice(-Math.min(n, this.limit));
  }

  /** the interaction with this ce-id and every event derived from it (any topic, partner copies too) */
  byCeId(root: string) {
    return this.items.filter((e) => e.ceId === root || e.ceId?.startsWith(`${root}.`));
  }

  byTrace(traceId: string) {
    return this.items.filter((e) => e.traceId === traceId);
  }

  /** messages per second of each topic over the last `seconds`, oldest first */
  rates(seconds = 60): Record<string, number[]> {
    const sec = Math.floor(this.now() / 1000);
    const out: Record<string, number[]> = {};
    for (const [topic, counts] of this.perSecond) {
      out[topic] = Array.from({ length: seconds }, (_, i) => counts.get(sec - seconds + 1 + i) ?? 0);
    }
    return out;
  }
}

export interface Hop {
  hop: string;
  at: string;
  topic?: string;
  detail?: string;
  ceId?: string;
  /** milliseconds since the first hop and since the previous one */
  sinceStartMs: number;
  sincePrevMs: number;
}

/** Orders hops by time and fills in the times between them. */
export function timeline(hops: Array<Omit<Hop, 'sinceStartMs' | 'sincePrevMs'>>): Hop[] {
  const sorted = [...hops].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const start = sorted.length ? Date.parse(sorted[0]!.at) : 0;
  let prev = start;
  return sorted.map((h) => {
    const t = Date.parse(h.at);
    const out = { ...h, sinceStartMs: t - start, sincePrevMs: t - prev };
    prev = t;
    return out;
  });
}

/** What a tapped message is, as a hop of its interaction's path. */
export function hopOf(e: Seen): Omit<Hop, 'sinceStartMs' | 'sincePrevMs'> {
  const d = e.data ?? {};
  const base = { at: e.time, topic: e.topic, ceId: e.ceId };
  const partner = /^partner\.(.+)\.events$/.exec(e.topic);
  if (partner)
    return {
      ...base,
      hop: 'partner copy',
      detail: `${partner[1]} (${e.type ?? '?'}, learnerRef ${String(d.learnerRef ?? e.orderingKey ?? '-')})`,
    };
  switch (e.topic) {
    case 'learnflow.interaction.received':
      return {
        ...base,
        // ingest stamps the event's time when it received the request; the publish follows
        at: e.ceTime && Date.parse(e.ceTime) <= Date.parse(e.time) ? e.ceTime : e.time,
        hop: 'received',
        detail: `ingestInteraction published it (${String(d.kind ?? '')} on ${String(d.topic ?? '')}) at ${e.time.slice(11, 23)}`,
      };
    case 'learnflow.triage.routed':
      return { ...base, hop: 'triage', detail: `routed to agent ${String(d.agent ?? '?')}` };
    case 'learnflow.progress.updated':
      return {
        ...base,
        hop: 'progress event',
        detail: `mastery ${String(d.previousMastery ?? '?')} → ${String(d.mastery ?? '?')} (${String(d.level ?? '')}, version ${String(d.version ?? '?')})`,
      };
    case 'learnflow.struggle.detected':
      return { ...base, hop: 'struggle event', detail: String(d.reason ?? '') };
    case 'learnflow.deadletter':
      return { ...base, hop: 'dead-lettered', detail: `from ${e.reason ?? '?'}` };
    case 'learnflow.mirror.retry':
      return { ...base, hop: 'partner retry task' };
    default:
      if (e.topic.startsWith('learnflow.agent.'))
        return { ...base, hop: 'agent topic', detail: e.topic.slice('learnflow.agent.'.length) };
      return { ...base, hop: e.topic };
  }
}
