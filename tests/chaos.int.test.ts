/**
 * Resilience of the interaction pipeline against the running local suite: workers killed with SIGKILL at
 * random moments, concurrent duplicate posts, PostgreSQL stopped for 20 s, Redis stopped, the Pub/Sub
 * emulator restarted, poison messages. Every scenario checks the one guarantee that matters — each
 * interaction changes progress exactly once — by counting rows in PostgreSQL `interactions` per learner
 * and comparing each learner's Firestore mastery with an offline recomputation from the events sent.
 *
 * Quiz-only events, all on one UTC day, so SPEC §7 reduces to 100 × (0.3 × mean score + 0.1 × 1/7).
 * What was measured (counts, durations, losses, duplicates) is written to RESILIENCE.md after the run,
 * before any assertion can fail — only by `npm run chaos` (LDR_WRITE_REPORTS=1): `npm test` never
 * rewrites a tracked file.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { Firestore } from '@google-cloud/firestore';
import type { PubSub } from '@google-cloud/pubsub';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientEventId } from '../shared/events.ts';
import {
  adminFetch,
  control,
  eventually,
  fnUrl,
  pubsubClient,
  settle,
  suite,
  tap,
  token,
  workers,
} from './helpers.ts';

const RESILIENCE = new URL('../RESILIENCE.md', import.meta.url);
const BEGIN = '<!-- chaos:begin (written by tests/chaos.int.test.ts) -->';
const END = '<!-- chaos:end -->';

let pubsub: PubSub;
let db: pg.Pool;
let fs: Firestore;
const results: Record<string, Record<string, unknown>> = {};
const startedAt = new Date();

beforeAll(() => {
  pubsub = pubsubClient();
  db = new pg.Pool({ connectionString: suite().env.DATABASE_URL, max: 3 });
  db.on('error', () => {}); // idle connections die with the PostgreSQL outage; the next query reconnects
  fs = new Firestore({ projectId: suite().projectId, host: suite().env.FIRESTORE_EMULATOR_HOST, ssl: false });
});

afterAll(async () => {
  writeResilience();
  await settle(100_000); // leave no backlog behind for the next test file
  await db.end();
  await fs.terminate();
  await pubsub.close();
});

// ------------------------------------------------------------------------------------------------
// Events, posting, and reading back
// ------------------------------------------------------------------------------------------------

const uid = () => randomUUID().replace(/-/g, '').slice(0, 16);
/** All events of a run fall on yesterday's UTC date: one day of activity, a streak of 1 (consistency 1/7). */
const DAY = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
const at = (i: number) => new Date(Date.parse(`${DAY}T06:00:00.000Z`) + i * 1000).toISOString();

interface Ev {
  id: string;
  studentId: string;
  instanceId: string;
  kind: 'quiz_answer';
  occurredAt: string;
  topic: string;
  payload: { quizId: string; correct: boolean; score: number };
}

function quiz(studentId: string, instanceId: string, topic: string, i: number): Ev {
  const score = Math.round(Math.random() * 100) / 100;
  return {
    id: `ch-${uid()}`,
    studentId,
    instanceId,
    kind: 'quiz_answer',
    occurredAt: at(i),
    topic,
    payload: { quizId: `quiz-${i % 7}`, correct: score >= 0.5, score },
  };
}

/** SPEC §7 by hand for quiz-only learners active on one day: 100 × (0.3 × mean + 0.1 × 1/7), one decimal. */
const quizOnlyMastery = (scores: number[]) =>
  Math.round(10 * 100 * (0.3 * (scores.reduce((a, b) => a + b, 0) / scores.length) + 0.1 / 7)) / 10;

interface Post {
  status: number;
  ms: number;
  body: any;
  retryAfter?: string | null;
}

async function post(events: Ev[], bearer: string): Promise<Post> {
  const t0 = performance.now();
  try {
    const res = await fetch(fnUrl('ingestInteraction'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ events }),
    });
    const text = await res.text();
    return {
      status: res.status,
      ms: performance.now() - t0,
      body: text ? JSON.parse(text) : undefined,
      retryAfter: res.headers.get('retry-after'),
    };
  } catch (err) {
    return { status: 0, ms: performance.now() - t0, body: String(err) };
  }
}

/** Posts until 202, as a client should: same ids every time, waiting Retry-After (or 1 s) after 429/503/network errors. */
async function postUntilAccepted(events: Ev[], bearer: string, deadlineMs = 60_000) {
  const deadline = Date.now() + deadlineMs;
  const attempts: Post[] = [];
  for (;;) {
    const r = await post(events, bearer);
    attempts.push(r);
    if (r.status === 202) return attempts;
    if (![0, 429, 503].includes(r.status) || Date.now() > deadline) {
      throw new Error(`post failed with ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
    }
    await sleep(Math.min(5, Number(r.retryAfter ?? 1) || 1) * 1000);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function appliedCounts(students: string[], topic: string): Promise<Map<string, number>> {
  const { rows } = await db.query(
    'SELECT student_id, count(*)::int AS n FROM interactions WHERE student_id = ANY($1) AND topic = $2 GROUP BY student_id',
    [students, topic],
  );
  return new Map(rows.map((r) => [r.student_id as string, r.n as number]));
}

/**
 * Waits until every learner has `expected` rows, the deadline, or a stall (no new row for `stallMs` while
 * nothing is being retried any more); returns the last counts either way.
 */
async function waitApplied(
  students: string[],
  topic: string,
  expected: Map<string, number>,
  timeoutMs: number,
  stallMs = 30_000,
) {
  const t0 = Date.now();
  let counts = new Map<string, number>();
  let total = -1;
  let changedAt = Date.now();
  const done = () => students.every((s) => (counts.get(s) ?? 0) >= expected.get(s)!);
  while (Date.now() - t0 < timeoutMs && Date.now() - changedAt < stallMs) {
    counts = await appliedCounts(students, topic).catch(() => counts);
    if (done()) break;
    const now = [...counts.values()].reduce((a, b) => a + b, 0);
    if (now !== total) {
      total = now;
      changedAt = Date.now();
    }
    await sleep(250);
  }
  // a little longer, to catch an application that would come in twice (impossible by the primary key, checked anyway)
  counts = await appliedCounts(students, topic);
  return { counts, seconds: (Date.now() - t0) / 1000, complete: done() };
}

interface Check {
  students: number;
  expectedEvents: number;
  appliedEvents: number;
  missing: number;
  extra: number;
  masteryMismatches: Array<{ student: string; firestore: unknown; expected: number; interactions: unknown }>;
}

/** Rows per learner against what was sent, and each learner's Firestore view against the hand formula. */
async function checkExactlyOnce(
  sent: Map<string, Ev[]>,
  topic: string,
  timeoutMs: number,
): Promise<Check & { seconds: number }> {
  const students = [...sent.keys()];
  const expected = new Map(students.map((s) => [s, sent.get(s)!.length]));
  const { counts, seconds } = await waitApplied(students, topic, expected, timeoutMs);
  let missing = 0;
  let extra = 0;
  for (const s of students) {
    const d = (counts.get(s) ?? 0) - expected.get(s)!;
    if (d < 0) missing -= d;
    if (d > 0) extra += d;
  }
  // the Firestore view follows the ledger; give the projection a moment to catch up
  const mismatches: Check['masteryMismatches'] = [];
  const want = new Map(students.map((s) => [s, quizOnlyMastery(sent.get(s)!.map((e) => e.payload.score))]));
  await eventually(
    async () => {
      mismatches.length = 0;
      const refs = students.map((s) => fs.collection('students').doc(s).collection('topics').doc(topic));
      const snaps = await fs.getAll(...refs);
      snaps.forEach((snap, i) => {
        const s = students[i]!;
        if (
          !snap.exists ||
          snap.get('mastery') !== want.get(s) ||
          snap.get('interactions') !== expected.get(s)
        ) {
          mismatches.push({
            student: s,
            firestore: snap.get('mastery'),
            expected: want.get(s)!,
            interactions: snap.get('interactions'),
          });
        }
      });
      return mismatches.length === 0 ? true : undefined;
    },
    10_000,
    'Firestore views',
  ).catch(() => {});
  return {
    students: students.length,
    expectedEvents: [...expected.values()].reduce((a, b) => a + b, 0),
    appliedEvents: [...counts.values()].reduce((a, b) => a + b, 0),
    missing,
    extra,
    masteryMismatches: mismatches.slice(0, 5),
    seconds,
  };
}

const bridge = async (): Promise<{ delivered: number; retried: number; deadLettered: number }> =>
  (await adminFetch('/_ldr/bridge')).json();

const diff = (a: Awaited<ReturnType<typeof bridge>>, b: Awaited<ReturnType<typeof bridge>>) => ({
  delivered: b.delivered - a.delivered,
  retried: b.retried - a.retried,
  deadLettered: b.deadLettered - a.deadLettered,
});

const ceIdOf = (e: Ev) => clientEventId(e.studentId, e.id);

/** Dead letters of this scenario's events (by ce-id), per function. */
function deadLettersOf(dl: Awaited<ReturnType<typeof tap>>, ids: Set<string>) {
  const out: Record<string, number> = {};
  const reasons = new Set<string>();
  for (const m of dl.received) {
    if (!ids.has(m.attributes['ce-id'] ?? '')) continue;
    const fn = m.attributes['ldr-deadletter-function'] ?? '?';
    out[fn] = (out[fn] ?? 0) + 1;
    reasons.add(`${fn}: ${(m.attributes['ldr-deadletter-reason'] ?? '').slice(0, 160)}`);
  }
  return { byFunction: out, reasons: [...reasons].slice(0, 6) };
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

/** Learners spread over app-instances; `streamOf` interleaves them round by round, in batches of one instance. */
async function cohort(prefix: string, instances: number, perInstance: number) {
  const list = await Promise.all(
    Array.from({ length: instances }, async (_, i) => {
      const id = `${prefix}-${uid()}-i${i}`;
      return {
        id,
        token: await token({ sub: `app-${id}`, role: 'app', instance: id }),
        students: Array.from({ length: perInstance }, (_, k) => `${prefix}-${uid()}-${k}`),
      };
    }),
  );
  return list;
}

type Cohort = Awaited<ReturnType<typeof cohort>>;

/** `rounds` events per learner; batches of `roundsPerBatch` rounds of one instance's learners, instances interleaved. */
function streamOf(c: Cohort, topic: string, rounds: number, roundsPerBatch: number) {
  const sent = new Map<string, Ev[]>();
  const batches: Array<{ token: string; events: Ev[] }> = [];
  let i = 0;
  for (let r = 0; r < rounds; r += roundsPerBatch) {
    for (const inst of c) {
      const events: Ev[] = [];
      for (let k = r; k < Math.min(rounds, r + roundsPerBatch); k++) {
        for (const s of inst.students) {
          const e = quiz(s, inst.id, topic, i++);
          events.push(e);
          sent.set(s, [...(sent.get(s) ?? []), e]);
        }
      }
      batches.push({ token: inst.token, events });
    }
  }
  const all = [...sent.values()].flat();
  // ids are scoped to the learner: messages carry the derived ce-id, data and history the client id
  return { sent, batches, ids: new Set(all.map((e) => e.id)), ceIds: new Set(all.map(ceIdOf)) };
}

/** Posts batches with a few in flight, each until accepted; the stream's timing for the report. */
async function postStream(batches: Array<{ token: string; events: Ev[] }>, inFlight: number, gapMs = 0) {
  const t0 = Date.now();
  const statuses: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < batches.length) {
        const b = batches[next++]!;
        for (const a of await postUntilAccepted(b.events, b.token))
          statuses[a.status] = (statuses[a.status] ?? 0) + 1;
        if (gapMs) await sleep(gapMs);
      }
    }),
  );
  return { seconds: (Date.now() - t0) / 1000, statuses };
}

// ------------------------------------------------------------------------------------------------
// Scenarios
// ------------------------------------------------------------------------------------------------

describe('chaos: the pipeline applies every interaction exactly once', () => {
  it('SIGKILL of every Pub/Sub-triggered worker at random moments during a 2,000-event stream', async () => {
    const topic = 'chaos.kill';
    const c = await cohort('ck', 5, 10); // 50 learners over 5 app-instances
    const { sent, batches, ids, ceIds } = streamOf(c, topic, 40, 5); // 2,000 events, 40 batches of 50
    const pubsubFns = Object.keys(await workers()).filter((f) =>
      ['routeTriage', 'updateProgress', 'mirrorToPartners', 'finalizeArtifact'].includes(f),
    );
    const dl = await tap(pubsub, 'learnflow.deadletter');
    const audit = await tap(pubsub, 'learnflow.triage.routed');
    const b0 = await bridge();
    const kills: Array<{
      fn: string;
      pid: number;
      atSeconds: number;
      appliedBefore: number;
      restartSeconds?: number;
    }> = [];
    const t0 = Date.now();
    let streaming = true;
    try {
      // the killer: while the stream is posted and worked off, every few hundred ms to few seconds pick a
      // Pub/Sub-triggered worker at random and SIGKILL it — once it is back up, so a kill is a real crash of a
      // serving instance (each worker at least twice; routeTriage and updateProgress more often)
      const killer = (async () => {
        const shuffle = (xs: string[]) => xs.sort(() => Math.random() - 0.5);
        const core = ['routeTriage', 'updateProgress'].filter((f) => pubsubFns.includes(f));
        const rest = pubsubFns.filter((f) => !core.includes(f));
        // the two that carry every interaction first (twice each), then the others twice, then three more
        const plan = [
          ...shuffle([...core, ...core]),
          ...shuffle([...rest, ...rest, ...core, 'updateProgress']),
        ];
        for (const fn of plan) {
          await sleep(300 + Math.random() * 2500);
          const applied = [...(await appliedCounts([...sent.keys()], topic)).values()].reduce(
            (a, b) => a + b,
            0,
          );
          if (!streaming && applied >= ids.size) break; // nothing left to interrupt
          const w = (await workers())[fn]!;
          try {
            process.kill(w.pid, 'SIGKILL');
          } catch {
            continue;
          }
          const k = {
            fn,
            pid: w.pid,
            atSeconds: (Date.now() - t0) / 1000,
            appliedBefore: applied,
          } as (typeof kills)[number];
          kills.push(k);
          const k0 = Date.now();
          await eventually(
            async () => ((await workers())[fn]!.pid !== w.pid && (await portOpen(w.port)) ? true : undefined),
            60_000,
            `${fn} to be restarted`,
          );
          k.restartSeconds = (Date.now() - k0) / 1000;
        }
      })();
      const stream = await postStream(batches, 2, 150);
      streaming = false;
      await killer;
      const check = await checkExactlyOnce(sent, topic, 150_000);
      // triage: one decision per interaction (a redelivery republishes the same decision under the same ce-id)
      await eventually(
        async () =>
          new Set(
            audit
              .json()
              .map((m) => m.body.interactionId)
              .filter((x) => ids.has(x)),
          ).size >= ids.size
            ? true
            : undefined,
        20_000,
        'every triage decision',
      ).catch(() => {});
      const decisions = audit.json().filter((m) => ids.has(m.body.interactionId));
      const byInteraction = new Map<string, Set<string>>();
      for (const d of decisions)
        byInteraction.set(
          d.body.interactionId,
          (byInteraction.get(d.body.interactionId) ?? new Set()).add(d.body.agent),
        );
      const dead = deadLettersOf(dl, ceIds);
      results.kill = {
        scenario: 'SIGKILL of Pub/Sub-triggered workers during a stream',
        events: ids.size,
        learners: sent.size,
        instances: c.length,
        killedWorkers: pubsubFns.join(', '),
        kills: kills.length,
        killDetail: kills.map(
          (k) =>
            `${k.fn}@${k.atSeconds.toFixed(1)}s (${k.appliedBefore} applied, back in ${k.restartSeconds?.toFixed(1) ?? '?'} s)`,
        ),
        postSeconds: stream.seconds,
        postStatuses: stream.statuses,
        untilAllAppliedSeconds: (Date.now() - t0) / 1000,
        ...check,
        triageDecisionsPublished: decisions.length,
        triageInteractionsDecided: byInteraction.size,
        triageRepublished: decisions.length - byInteraction.size,
        triageConflictingAgents: [...byInteraction.values()].filter((s) => s.size > 1).length,
        deadLettered: dead.byFunction,
        deadLetterReasons: dead.reasons,
        bridge: diff(b0, await bridge()),
      };
      expect(kills.filter((k) => k.fn === 'updateProgress').length).toBeGreaterThanOrEqual(2);
      expect(kills.filter((k) => k.fn === 'routeTriage').length).toBeGreaterThanOrEqual(2);
      expect(check.missing, 'interactions never applied').toBe(0);
      expect(check.extra, 'interactions applied twice').toBe(0);
      expect(check.masteryMismatches).toEqual([]);
      expect(byInteraction.size, 'interactions without a triage decision').toBe(ids.size);
      expect(results.kill.triageConflictingAgents).toBe(0);
      expect(dead.byFunction.updateProgress ?? 0, 'dead-lettered by updateProgress').toBe(0);
      expect(dead.byFunction.routeTriage ?? 0, 'dead-lettered by routeTriage').toBe(0);
    } finally {
      streaming = false;
      await dl.close();
      await audit.close();
    }
  }, 240_000);

  it('every batch posted three times concurrently: each event counted once', async () => {
    const topic = 'chaos.triple';
    const c = await cohort('ct', 2, 5); // 10 learners
    const { sent, batches, ids } = streamOf(c, topic, 20, 4); // 200 events, 10 batches of 20
    const t0 = Date.now();
    const statuses: Record<string, number> = {};
    const perId = new Map<string, string[]>();
    for (const b of batches) {
      const three = await Promise.all([0, 1, 2].map(() => postUntilAccepted(b.events, b.token)));
      for (const attempts of three) {
        for (const a of attempts) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
        for (const r of attempts.at(-1)!.body.results as Array<{ id: string; status: string }>) {
          perId.set(r.id, [...(perId.get(r.id) ?? []), r.status]);
        }
      }
    }
    const check = await checkExactlyOnce(sent, topic, 60_000);
    const answers: Record<string, number> = {};
    for (const s of perId.values()) {
      const key = [...s].sort().join('+');
      answers[key] = (answers[key] ?? 0) + 1;
    }
    results.triple = {
      scenario: 'each batch posted 3× concurrently (same ids)',
      events: ids.size,
      posts: batches.length * 3,
      postStatuses: statuses,
      answersPerEvent: answers,
      untilAllAppliedSeconds: (Date.now() - t0) / 1000,
      ...check,
    };
    expect(check.missing).toBe(0);
    expect(check.extra).toBe(0);
    expect(check.masteryMismatches).toEqual([]);
    // at least one of the three posts of an event is told "accepted"
    expect([...perId.values()].every((s) => s.includes('accepted'))).toBe(true);
  }, 120_000);

  it('PostgreSQL stopped for 20 s mid-stream: nothing lost, nothing counted twice', async () => {
    const topic = 'chaos.postgres';
    const c = await cohort('cp', 4, 5); // 20 learners
    const { sent, batches, ids, ceIds } = streamOf(c, topic, 15, 3); // 300 events, 20 batches of 15
    const dl = await tap(pubsub, 'learnflow.deadletter');
    const b0 = await bridge();
    const t0 = Date.now();
    let outage = { stoppedAt: Number.NaN, startedAt: Number.NaN, appliedAtStop: 0 };
    try {
      const stream = postStream(batches, 1, 300);
      const chaos = (async () => {
        await eventually(
          async () =>
            [...(await appliedCounts([...sent.keys()], topic)).values()].reduce((a, b) => a + b, 0) >= 20
              ? true
              : undefined,
          60_000,
          'the first applications',
        );
        const appliedAtStop = [...(await appliedCounts([...sent.keys()], topic)).values()].reduce(
          (a, b) => a + b,
          0,
        );
        await control('postgres', 'stop');
        const stoppedAt = (Date.now() - t0) / 1000;
        await sleep(20_000);
        await control('postgres', 'start');
        outage = { stoppedAt, startedAt: (Date.now() - t0) / 1000, appliedAtStop };
      })();
      const [posted] = await Promise.all([stream, chaos]);
      const check = await checkExactlyOnce(sent, topic, 120_000);
      const dead = deadLettersOf(dl, ceIds);
      // what was lost: was it acknowledged as applied by updateProgress (its log says so) before the outage?
      const present = new Set(
        (await db.query('SELECT event_id FROM interactions WHERE event_id = ANY($1)', [[...ids]])).rows.map(
          (r) => r.event_id as string,
        ),
      );
      const lost = [...ids].filter((id) => !present.has(id));
      const logFile = `${suite().dataDir}/logs/fn-updateProgress.log`;
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n') : [];
      const ceIdOfId = new Map([...sent.values()].flat().map((e) => [e.id, ceIdOf(e)]));
      const loggedApplied = lost.filter((id) =>
        log.some((l) => l.includes(`"interactionId":"${ceIdOfId.get(id)}"`) && l.includes('"applied":true')),
      );
      results.postgres = {
        scenario: 'PostgreSQL stopped for 20 s mid-stream',
        events: ids.size,
        learners: sent.size,
        appliedWhenStopped: outage.appliedAtStop,
        stoppedAtSeconds: outage.stoppedAt,
        backAtSeconds: outage.startedAt,
        outageSeconds: outage.startedAt - outage.stoppedAt,
        postSeconds: posted.seconds,
        postStatuses: posted.statuses,
        untilAllAppliedSeconds: (Date.now() - t0) / 1000,
        ...check,
        deadLettered: dead.byFunction,
        deadLetterReasons: dead.reasons,
        bridge: diff(b0, await bridge()),
        lostEventIds: lost,
        lostButLoggedAsApplied: loggedApplied.length,
      };
      expect(check.missing, 'interactions lost to the outage').toBe(0);
      expect(check.extra).toBe(0);
      expect(check.masteryMismatches).toEqual([]);
      expect(dead.byFunction.updateProgress ?? 0, 'dead-lettered by updateProgress').toBe(0);
    } finally {
      await control('postgres', 'start').catch(() => {});
      await dl.close();
    }
  }, 200_000);

  it('Redis stopped: ingest still accepts, re-posted ids are still counted once', async () => {
    const topic = 'chaos.redis';
    const c = await cohort('cr', 2, 5); // 10 learners
    const { sent, batches, ids } = streamOf(c, topic, 10, 5); // 100 events, 4 batches of 25
    const b0 = await bridge();
    const t0 = Date.now();
    const statuses: Record<string, number> = {};
    const answers: Record<string, number> = {};
    await control('redis', 'stop');
    let downFor = 0;
    try {
      for (const round of [0, 1]) {
        // every batch twice while Redis is down: without the de-duplication window both are published
        for (const b of batches) {
          const r = await post(b.events, b.token);
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
          for (const x of (r.body?.results ?? []) as Array<{ status: string }>) {
            answers[`${round ? 'repost' : 'first'}:${x.status}`] =
              (answers[`${round ? 'repost' : 'first'}:${x.status}`] ?? 0) + 1;
          }
        }
      }
    } finally {
      downFor = (Date.now() - t0) / 1000;
      await control('redis', 'start');
    }
    const check = await checkExactlyOnce(sent, topic, 60_000);
    results.redis = {
      scenario: 'Redis stopped; every batch posted twice while it is down',
      events: ids.size,
      posts: batches.length * 2,
      redisDownSeconds: downFor,
      postStatuses: statuses,
      answersPerEvent: answers,
      untilAllAppliedSeconds: (Date.now() - t0) / 1000,
      ...check,
      bridge: diff(b0, await bridge()),
    };
    expect(statuses).toEqual({ 202: batches.length * 2 });
    expect(check.missing).toBe(0);
    expect(check.extra).toBe(0);
    expect(check.masteryMismatches).toEqual([]);
  }, 120_000);

  it('Pub/Sub emulator restarted: 503 while it is down; retried ids are applied once', async () => {
    const topic = 'chaos.pubsub';
    const c = await cohort('cb', 2, 5); // 10 learners
    const before = streamOf(c, topic, 5, 5); // 50 events accepted before the restart
    const during = streamOf(c, topic, 5, 5); // 50 events posted while it is down, then retried
    // `during` continues the same learners' streams: renumber its occurrence times after `before`
    for (const [bi, b] of during.batches.entries()) {
      for (const [k, e] of b.events.entries()) e.occurredAt = at(1000 + bi * 100 + k);
    }
    const t0 = Date.now();
    await postStream(before.batches, 1);
    // the emulator keeps messages in memory only: wait for the pipeline to drain before restarting it, so
    // what is measured is the client path (503 → retry), not the emulator's lack of durability
    await waitApplied(
      [...before.sent.keys()],
      topic,
      new Map([...before.sent].map(([s, e]) => [s, e.length])),
      60_000,
    );
    await control('pubsub', 'stop');
    const stoppedAt = Date.now();
    const down: Post[] = [];
    let restartSeconds = Number.NaN;
    try {
      for (const b of during.batches) down.push(await post(b.events, b.token));
    } finally {
      const s0 = Date.now();
      await control('pubsub', 'start');
      restartSeconds = (Date.now() - s0) / 1000;
    }
    const downSeconds = (Date.now() - stoppedAt) / 1000;
    const retried: Post[] = [];
    for (const b of during.batches) retried.push(...(await postUntilAccepted(b.events, b.token, 90_000)));
    const sent = new Map([...before.sent].map(([s, e]) => [s, [...e, ...(during.sent.get(s) ?? [])]]));
    const check = await checkExactlyOnce(sent, topic, 90_000);
    const retriedAnswers: Record<string, number> = {};
    for (const x of retried
      .filter((r) => r.status === 202)
      .flatMap((r) => r.body.results as Array<{ status: string }>)) {
      retriedAnswers[x.status] = (retriedAnswers[x.status] ?? 0) + 1;
    }
    results.pubsub = {
      scenario: 'Pub/Sub emulator stopped and started again',
      eventsBefore: before.ids.size,
      eventsWhileDown: during.ids.size,
      postsWhileDown: down.map(
        (d) => `${d.status} in ${(d.ms / 1000).toFixed(1)} s (Retry-After ${d.retryAfter ?? '-'})`,
      ),
      emulatorDownSeconds: downSeconds,
      emulatorStartSeconds: restartSeconds,
      retryPostStatuses: Object.fromEntries(
        [...new Set(retried.map((r) => r.status))].map((st) => [
          st,
          retried.filter((r) => r.status === st).length,
        ]),
      ),
      retriedAnswers,
      untilAllAppliedSeconds: (Date.now() - t0) / 1000,
      ...check,
    };
    expect(down.map((d) => d.status)).toEqual(during.batches.map(() => 503));
    expect(down.every((d) => d.retryAfter)).toBe(true);
    expect(check.missing).toBe(0);
    expect(check.extra).toBe(0);
    expect(check.masteryMismatches).toEqual([]);
  }, 200_000);

  it('poison messages go to the dead-letter topic with a reason; the learner stream goes on', async () => {
    const student = `cx-${uid()}`;
    const instance = `cx-${uid()}`;
    const topic = 'chaos.poison';
    const dl = await tap(pubsub, 'learnflow.deadletter');
    const t0 = Date.now();
    try {
      const t = pubsub.topic('learnflow.interaction.received', { messageOrdering: true });
      const good = quiz(student, instance, topic, 1);
      const attrs = (id: string, extra: Record<string, string> = {}) => ({
        'ce-specversion': '1.0',
        'ce-id': id,
        'ce-type': 'learnflow.interaction.v1',
        'ce-source': '/chaos',
        'ce-subject': `students/${student}`,
        ...extra,
      });
      const poison: Array<{ name: string; id: string; data: Buffer; attributes: Record<string, string> }> = [
        { name: 'not JSON', id: `px-${uid()}`, data: Buffer.from('{not json'), attributes: {} },
        {
          name: 'invalid interaction',
          id: `px-${uid()}`,
          data: Buffer.from(JSON.stringify({ studentId: student, kind: 'quiz_answer', payload: {} })),
          attributes: {},
        },
        {
          name: 'unknown event type',
          id: `px-${uid()}`,
          data: Buffer.from(JSON.stringify(good)),
          attributes: { 'ce-type': 'learnflow.bogus.v1' },
        },
        {
          name: 'ce-id differs from the interaction id',
          id: `px-${uid()}`,
          data: Buffer.from(JSON.stringify(good)),
          attributes: {},
        },
        { name: 'empty data', id: `px-${uid()}`, data: Buffer.alloc(0), attributes: {} },
        {
          name: 'prototype keys',
          id: `px-${uid()}`,
          data: Buffer.from(
            `{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}},"id":"p","studentId":"${student}"}`,
          ),
          attributes: {},
        },
      ];
      for (const p of poison) {
        await t.publishMessage({ data: p.data, orderingKey: student, attributes: attrs(p.id, p.attributes) });
      }
      await t.publishMessage({
        data: Buffer.from('{}'),
        orderingKey: student,
        attributes: { 'ce-type': 'learnflow.interaction.v1', 'ce-source': '/chaos' },
      }); // no ce-id at all
      await t.publishMessage({
        data: Buffer.from(JSON.stringify(good)),
        orderingKey: student,
        attributes: attrs(good.id, { 'content-type': 'application/json' }),
      });
      const check = await checkExactlyOnce(new Map([[student, [good]]]), topic, 60_000);
      const ids = new Set(poison.map((p) => p.id));
      const wanted = ['routeTriage', 'updateProgress'];
      await eventually(
        async () => {
          const n = dl.received.filter(
            (m) =>
              ids.has(m.attributes['ce-id'] ?? '') &&
              wanted.includes(m.attributes['ldr-deadletter-function'] ?? ''),
          ).length;
          return n >= poison.length * wanted.length ? true : undefined;
        },
        30_000,
        'poison dead-lettered by routeTriage and updateProgress',
      ).catch(() => {});
      const got = poison.map((p) => {
        const ms = dl.received.filter((m) => m.attributes['ce-id'] === p.id);
        return {
          poison: p.name,
          deadLetteredBy: Object.fromEntries(
            ms.map((m) => [
              m.attributes['ldr-deadletter-function'] ?? '?',
              (m.attributes['ldr-deadletter-reason'] ?? '').slice(0, 120),
            ]),
          ),
        };
      });
      const noId = dl.received.filter(
        (m) => !m.attributes['ce-id'] && m.attributes['ldr-deadletter-reason']?.includes('ce-id'),
      );
      results.poison = {
        scenario: 'poison messages on learnflow.interaction.received',
        poisonMessages: poison.length + 1,
        deadLettered: got,
        withoutCeIdDeadLettered: noId.length,
        goodEventAfterwards:
          check.missing === 0 && check.extra === 0 && check.masteryMismatches.length === 0
            ? 'applied once'
            : 'NOT applied correctly',
        seconds: (Date.now() - t0) / 1000,
      };
      for (const g of got) {
        for (const fn of wanted) {
          expect(g.deadLetteredBy[fn], `${g.poison} dead-lettered by ${fn}`).toBeTruthy();
        }
      }
      expect(noId.length).toBeGreaterThanOrEqual(1);
      expect(check.missing).toBe(0);
      expect(check.extra).toBe(0);
      expect(check.masteryMismatches).toEqual([]);
    } finally {
      await dl.close();
    }
  }, 120_000);
});

// ------------------------------------------------------------------------------------------------
// RESILIENCE.md
// ------------------------------------------------------------------------------------------------

function writeResilience() {
  if (process.env.LDR_WRITE_REPORTS !== '1' || !Object.keys(results).length) return;
  const lines = [
    BEGIN,
    '',
    `### Last run of tests/chaos.int.test.ts — ${startedAt.toISOString()}`,
    '',
    `Suite bridge backoff as in the tests: 0.5–5 s, 5 attempts before dead-lettering. ${Object.keys(results).length} scenario(s) ran.`,
    '',
  ];
  for (const [key, r] of Object.entries(results)) {
    lines.push(`#### ${String(r.scenario ?? key)}`, '', '| measure | value |', '|---|---|');
    for (const [k, v] of Object.entries(r)) {
      if (k === 'scenario') continue;
      const text =
        typeof v === 'number'
          ? Number.isInteger(v)
            ? String(v)
            : v.toFixed(1)
          : Array.isArray(v)
            ? v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join('; ')
            : typeof v === 'object'
              ? JSON.stringify(v)
              : String(v);
      lines.push(`| ${k} | ${text.replace(/\|/g, '\\|') || '—'} |`);
    }
    lines.push('');
  }
  lines.push(END);
  const block = lines.join('\n');
  const current = existsSync(RESILIENCE) ? readFileSync(RESILIENCE, 'utf8') : '# Resilience\n\n';
  const next =
    current.includes(BEGIN) && current.includes(END)
      ? current.slice(0, current.indexOf(BEGIN)) + block + current.slice(current.indexOf(END) + END.length)
      : `${current.trimEnd()}\n\n## Measured\n\n${block}\n`;
  writeFileSync(RESILIENCE, next);
}
