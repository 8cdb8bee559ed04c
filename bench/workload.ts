/**
 * The two end-to-end workloads of issue 14, as generators of one request's single event:
 * - `worst`: every event a new learner (each one a new ordering key, a new progress document);
 * - `realistic`: `learners` learners spread over the instances, `active` of them in a session at once,
 *   each session a `session` start, 3–8 interactions of mixed kinds on one topic, and a `session` end;
 *   a finished session is replaced by a session of a learner drawn at random (one not in a session).
 * Both draw events from the same EventFactory (ids unique per run) and are used, with the same rates,
 * for the real pipeline and for the bus ceiling.
 */
import type { EventFactory, Instance } from './load.ts';

export type WorkloadName = 'worst' | 'realistic';

export const WORKLOADS: Record<WorkloadName, string> = {
  worst: 'worst case: every event a new learner',
  realistic: 'realistic: 2,000 learners over 8 instances, sessions of mixed kinds',
};

export interface Sent {
  token: string;
  event: { id: string; studentId: string; topic?: string } & Record<string, unknown>;
}

const SESSION_TOPICS = ['python.loops', 'python.functions', 'js.async', 'sql.joins'];
/** indexes into load.ts's kind mix that are not `session` (index 9) */
const MIXED = [0, 1, 2, 3, 4, 5, 6, 7, 8];

export function worstCase(factory: EventFactory, instances: Instance[], prefix: string): () => Sent {
  let n = 0;
  return () => {
    const inst = instances[n % instances.length]!;
    const student = `${prefix}-${(n++).toString(36)}`;
    return { token: inst.token, event: factory.event(inst.id, student, n) };
  };
}

interface Session {
  inst: Instance;
  student: string;
  topic: string;
  /** interactions still to send before the end */
  left: number;
  started: boolean;
  learner: number;
}

export function realistic(
  factory: EventFactory,
  instances: Instance[],
  prefix: string,
  opts: { learners?: number; active?: number; random?: () => number } = {},
): () => Sent {
  const learners = opts.learners ?? 2000;
  const active = opts.active ?? 64;
  const random = opts.random ?? Math.random;
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const busy = new Set<number>();
  const newSession = (): Session => {
    let l = Math.floor(random() * learners);
    while (busy.has(l)) l = (l + 1) % learners; // one session at a time per learner
    busy.add(l);
    const inst = instances[l % instances.length]!;
    return {
      inst,
      student: `${prefix}-${inst.id}-${Math.floor(l / instances.length)}`,
      topic: pick(SESSION_TOPICS),
      left: 3 + Math.floor(random() * 6),
      started: false,
      learner: l,
    };
  };
  const sessions = Array.from({ length: active }, newSession);
  let next = 0;
  return () => {
    const k = next++ % active;
    const s = sessions[k]!;
    let event: Sent['event'];
    if (!s.started) {
      s.started = true;
      event = factory.event(s.inst.id, s.student, 9); // session start
    } else if (s.left > 0) {
      s.left--;
      event = factory.event(s.inst.id, s.student, pick(MIXED));
    } else {
      event = { ...factory.event(s.inst.id, s.student, 9), payload: { action: 'end' } };
      busy.delete(s.learner);
      sessions[k] = newSession();
    }
    return { token: s.inst.token, event: { ...event, topic: s.topic } };
  };
}

export function workload(
  name: WorkloadName,
  factory: EventFactory,
  instances: Instance[],
  prefix: string,
): () => Sent {
  return name === 'worst' ? worstCase(factory, instances, prefix) : realistic(factory, instances, prefix);
}
