/**
 * Load shapes for the benchmark: interaction bodies with ids unique per run (so nothing is a duplicate),
 * students spread over many learners per app-instance, and an autocannon wrapper that builds every body
 * in `setupRequest` and counts accepted events from the responses.
 */
import autocannon from 'autocannon';

export interface Instance {
  id: string;
  token: string;
}

/** A mix of kinds close to what an app sends: mostly quiz and exercise traffic, some code and dialogue. */
const KIND_MIX = [
  'quiz_answer',
  'quiz_answer',
  'exercise_attempt',
  'exercise_attempt',
  'code_execution',
  'code_submission',
  'dialogue_turn',
  'help_request',
  'content_view',
  'session',
] as const;

const TOPICS = ['python.loops', 'python.functions', 'js.async', 'sql.joins'];

export class EventFactory {
  private seq = 0;
  constructor(
    readonly runId: string,
    readonly studentsPerInstance: number,
  ) {}

  nextId(prefix = 'b') {
    return `${prefix}${this.runId}-${(this.seq++).toString(36)}`;
  }

  student(instance: string, n: number) {
    return `s-${this.runId}-${instance}-${n}`;
  }

  randomStudent(instance: string) {
    return this.student(instance, Math.floor(Math.random() * this.studentsPerInstance));
  }

  event(instanceId: string, studentId: string, kindIndex = this.seq) {
    const id = this.nextId();
    const kind = KIND_MIX[kindIndex % KIND_MIX.length]!;
    const score = Math.round(Math.random() * 100) / 100;
    const payload: Record<string, unknown> = {
      quiz_answer: { quizId: 'quiz-1', questionId: `q${kindIndex % 7}`, correct: score >= 0.5, score },
      exercise_attempt: { exerciseId: `ex-${kindIndex % 5}`, passed: score >= 0.4, score },
      code_execution: { ok: score >= 0.3, errorType: 'TypeError', errorMessage: 'x is not a function' },
      code_submission: { exerciseId: 'ex-1', code: 'for i in range(3):\n    print(i)\n', codeQuality: score },
      dialogue_turn: { text: 'Can you explain how a for loop works?', role: 'student' },
      help_request: { text: 'Ich verstehe die Schleife nicht ganz' },
      content_view: { contentId: 'lesson-loops', durationMs: 42_000 },
      session: { action: 'start' },
    }[kind] as Record<string, unknown>;
    return {
      id,
      studentId,
      instanceId,
      kind,
      occurredAt: new Date(Date.now() - 1000).toISOString(),
      topic: TOPICS[kindIndex % TOPICS.length],
      payload,
    };
  }
}

export interface ShotResult {
  target: string;
  shape: string;
  batch: number;
  seconds: number;
  offeredEventsPerSec?: number;
  requests: number;
  acceptedEvents: number;
  eventsPerSec: number;
  reqPerSec: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  statuses: Record<string, number>;
  errors: number;
  timeouts: number;
}

export type ShotOptions = ShotCommon &
  (
    | {
        /** how long it runs; requests still in flight at the end are cut, their answers not counted */
        seconds: number;
        amount?: never;
      }
    | {
        /** this many requests in all, every answer counted (no request is cut) */
        amount: number;
        seconds?: never;
      }
  );

interface ShotCommon {
  target: string;
  url: string;
  batch: number;
  connections: number;
  /** requests per second over all connections (open loop); absent: as fast as it goes */
  rate?: number;
  /** builds one request's events */
  events: (n: number) => { token?: string; events: unknown[] };
  /** called with each 2xx response's body and its arrival time (ms since epoch, sub-ms) */
  onAccepted?: (body: string, at: number) => void;
}

const now = () => performance.timeOrigin + performance.now();

/** One autocannon run; bodies built per request, accepted events read from the 202 bodies. */
export async function shoot(opts: ShotOptions): Promise<ShotResult> {
  let accepted = 0;
  const result = await autocannon({
    url: opts.url,
    connections: opts.connections,
    ...(opts.amount !== undefined ? { amount: opts.amount } : { duration: opts.seconds }),
    ...(opts.rate ? { overallRate: opts.rate } : {}),
    timeout: 30,
    requests: [
      {
        method: 'POST',
        setupRequest: (req) => {
          const { token, events } = opts.events(opts.batch);
          const body = opts.batch === 1 ? events[0] : { events };
          return {
            ...req,
            headers: {
              'content-type': 'application/json',
              ...(token ? { authorization: `Bearer ${token}` } : {}),
            },
            body: JSON.stringify(body),
          };
        },
        onResponse: (status, body) => {
          if (status < 200 || status >= 300) return;
          const m = /"accepted":(\d+)/.exec(body);
          accepted += m ? Number(m[1]) : 0;
          opts.onAccepted?.(body, now());
        },
      },
    ],
  });
  const statuses: Record<string, number> = {};
  for (const [code, v] of Object.entries(result.statusCodeStats ?? {})) statuses[code] = v.count ?? 0;
  const lat = result.latency as autocannon.Histogram & { p50: number; p90: number; p99: number };
  return {
    target: opts.target,
    shape: opts.batch === 1 ? 'single' : `batch ${opts.batch}`,
    batch: opts.batch,
    seconds: result.duration,
    offeredEventsPerSec: opts.rate ? opts.rate * opts.batch : undefined,
    requests: result.requests.total,
    acceptedEvents: accepted,
    eventsPerSec: accepted / result.duration,
    reqPerSec: result.requests.total / result.duration,
    p50: lat.p50,
    p90: lat.p90,
    p99: lat.p99,
    max: lat.max,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}
