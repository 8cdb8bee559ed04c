/**
 * `node --import tsx bench/hol.ts`: head-of-line blocking of an ordering key, measured through the real bridge
 * (emulators/bridge.ts) on a private Pub/Sub emulator. A tiny push target on 127.0.0.1 answers 500 to one chosen
 * learner's first message `failures` times, then accepts it; every other message is accepted after `workMs`.
 * For each strategy (one key per learner, `shard(studentId, N)`) the same workload: `learners` learners, each
 * `events` messages, published round robin at `rate` per second, the poisoned learner's first message first.
 * Reported: how many other learners share the poisoned key, how long their messages waited (publish → accepted)
 * against the learners on other keys, and whether every learner's messages were accepted in order.
 *
 * The back-off is short for the measurement (`backoffMs` instead of the topology's 15 s, doubling up to 40× it,
 * as 15 → 600 s); multiply the stall by 15,000 / backoffMs for production's.
 *
 *   node --import tsx bench/hol.ts [learners=600] [events=4] [shards=16,64,256] [failures=3] [backoffMs=200] [rate=400] [workMs=5]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PubSub } from '@google-cloud/pubsub';
import { startBridge } from '../emulators/bridge.ts';
import { startPubsubEmulator } from '../emulators/google.ts';
import { freePort, waitFor } from '../emulators/procs.ts';
import { createLogger } from '../shared/log.ts';
import { shardKey } from '../shared/ordering.ts';
import type { Topology } from '../shared/topology.ts';

export interface HolOptions {
  learners: number;
  events: number;
  failures: number;
  backoffMs: number;
  rate: number;
  workMs: number;
}

export interface HolRow {
  strategy: string;
  /** learners other than the poisoned one whose key is the poisoned message's key */
  sharingLearners: number;
  /** their messages, and how many of them waited longer than the first back-off */
  sharingMessages: number;
  sharingStalled: number;
  /** wait beyond the other keys' median wait for messages published in the same second */
  sharingExcessP50Ms: number;
  sharingExcessMaxMs: number;
  /** the poisoned learner's own messages (they wait in every strategy) */
  poisonedExcessMaxMs: number;
  othersWaitP50Ms: number;
  othersWaitP99Ms: number;
  othersExcessP99Ms: number;
  /** learner-seconds lost by other learners: Σ excess over the sharing learners' stalled messages */
  stallLearnerSeconds: number;
  attemptsOfPoisoned: number;
  outOfOrder: number;
  drainSeconds: number;
}

interface Wait {
  learner: string;
  published: number;
  ms: number;
}

const pct = (xs: number[], p: number) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

export async function measureHol(shards: number | undefined, o: HolOptions): Promise<HolRow> {
  const keyOf = (learner: string) => (shards ? shardKey(learner, shards) : learner);
  const poisoned = 'stu-0';
  const dataDir = mkdtempSync(join(tmpdir(), 'ldr-hol-'));
  const port = await freePort();
  const emulator = await startPubsubEmulator(port, dataDir);
  // accepted messages: learner → seqs in the order they were accepted, and each one's wait
  const accepted = new Map<string, number[]>();
  const waits: Wait[] = [];
  let poisonAttempts = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const { learner, seq } = JSON.parse(Buffer.from(body.message.data, 'base64').toString('utf8'));
      if (learner === poisoned && seq === 0 && ++poisonAttempts <= o.failures) {
        res.writeHead(500).end('poisoned');
        return;
      }
      setTimeout(() => {
        const list = accepted.get(learner) ?? [];
        list.push(seq);
        accepted.set(learner, list);
        const published = Date.parse(body.message.publishTime);
        waits.push({ learner, published, ms: Date.now() - published });
        res.writeHead(204).end();
      }, o.workMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const target = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const projectId = 'demo-hol';
  const pubsub = new PubSub({ projectId, apiEndpoint: `127.0.0.1:${port}` });
  const topology = {
    project: projectId,
    deadLetterTopic: 'hol.deadletter',
    defaults: {
      ackDeadlineSeconds: 60,
      maxDeliveryAttempts: 5,
      minimumBackoffSeconds: 15,
      maximumBackoffSeconds: 600,
      messageRetentionSeconds: 3600,
    },
    subscriptions: [{ name: 'fn.hol', topic: 'hol.events', ordered: true, function: 'hol' }],
  } as unknown as Topology;
  try {
    await pubsub.createTopic('hol.deadletter');
    const [topic] = await pubsub.createTopic('hol.events');
    await topic.createSubscription('fn.hol', { enableMessageOrdering: true });
    const bridge = startBridge({
      pubsub,
      topology,
      projectId,
      targetOf: () => target,
      log: createLogger('hol', 'error'),
      minBackoffMs: o.backoffMs,
      maxBackoffMs: o.backoffMs * 40,
    });
    const publisher = pubsub.topic('hol.events', {
      messageOrdering: true,
      batching: { maxMessages: 100, maxMilliseconds: 10 },
    });
    const started = Date.now();
    const pending: Array<Promise<string>> = [];
    const total = o.learners * o.events;
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / o.rate;
      const wait = due - Date.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const learner = `stu-${i % o.learners}`;
      const seq = Math.floor(i / o.learners);
      pending.push(
        publisher.publishMessage({
          data: Buffer.from(JSON.stringify({ learner, seq })),
          orderingKey: keyOf(learner),
        }),
      );
    }
    await Promise.all(pending);
    await waitFor(() => waits.length >= total, 120_000, `${total} messages accepted`);
    const drainSeconds = (Date.now() - started) / 1000;
    await bridge.stop();

    const poisonKey = keyOf(poisoned);
    const sharing = new Set<string>();
    for (let l = 1; l < o.learners; l++) if (keyOf(`stu-${l}`) === poisonKey) sharing.add(`stu-${l}`);
    // the wait of a message beyond the median wait of other keys' messages published in the same second:
    // the bus's own latency drifts over a run on a shared machine, the excess is what the retry added
    const second = (w: Wait) => Math.floor(w.published / 1000);
    const isOther = (w: Wait) => w.learner !== poisoned && !sharing.has(w.learner);
    const baseline = new Map<number, number>();
    const bySecond = new Map<number, number[]>();
    for (const w of waits.filter(isOther))
      bySecond.set(second(w), [...(bySecond.get(second(w)) ?? []), w.ms]);
    for (const [sec, ms] of bySecond) baseline.set(sec, pct(ms, 50));
    const excess = (w: Wait) => w.ms - (baseline.get(second(w)) ?? pct([...baseline.values()], 50));
    const others = waits.filter(isOther);
    const shared = waits.filter((w) => sharing.has(w.learner)).map(excess);
    const stalled = shared.filter((ms) => ms > o.backoffMs);
    let outOfOrder = 0;
    for (const seqs of accepted.values())
      for (let i = 1; i < seqs.length; i++) if (seqs[i]! <= seqs[i - 1]!) outOfOrder++;
    return {
      strategy: shards ? `shard(studentId, ${shards})` : 'studentId',
      sharingLearners: sharing.size,
      sharingMessages: shared.length,
      sharingStalled: stalled.length,
      sharingExcessP50Ms: pct(shared, 50),
      sharingExcessMaxMs: Math.max(0, ...shared),
      poisonedExcessMaxMs: Math.max(0, ...waits.filter((w) => w.learner === poisoned).map(excess)),
      othersWaitP50Ms: pct(
        others.map((w) => w.ms),
        50,
      ),
      othersWaitP99Ms: pct(
        others.map((w) => w.ms),
        99,
      ),
      othersExcessP99Ms: pct(others.map(excess), 99),
      stallLearnerSeconds: stalled.reduce((s, ms) => s + ms, 0) / 1000,
      attemptsOfPoisoned: poisonAttempts,
      outOfOrder,
      drainSeconds,
    };
  } finally {
    await pubsub.close().catch(() => {});
    await new Promise((r) => server.close(r));
    await emulator.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main() {
  process.env.METADATA_SERVER_DETECTION = 'none';
  const [learners, events, shardsArg, failures, backoffMs, rate, workMs] = process.argv.slice(2);
  const o: HolOptions = {
    learners: Number(learners ?? 600),
    events: Number(events ?? 4),
    failures: Number(failures ?? 3),
    backoffMs: Number(backoffMs ?? 200),
    rate: Number(rate ?? 400),
    workMs: Number(workMs ?? 5),
  };
  const shardCounts = (shardsArg ?? '16,64,256').split(',').map(Number);
  const rows: HolRow[] = [];
  for (const s of [undefined, ...shardCounts]) {
    const row = await measureHol(s, o);
    rows.push(row);
    console.error(JSON.stringify(row));
  }
  const scale = 15_000 / o.backoffMs;
  const f = (x: number, d = 0) =>
    x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  console.log(
    [
      `${f(o.learners)} learners × ${o.events} messages at ${o.rate}/s; learner stu-0's first message fails ${o.failures}× (back-off ${o.backoffMs} ms doubling; production 15 s: × ${f(scale)}); push target ${o.workMs} ms per message.`,
      '',
      "| ordering key | other learners on the poisoned key | their messages delayed > first back-off / all | their excess wait p50 / max ms | poisoned learner's max excess ms | other keys: wait p50 / p99 ms, excess p99 ms | learner-seconds lost (bench) | their max stall at production back-off, s | out of order | drain s |",
      '|---|---|---|---|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.strategy} | ${f(r.sharingLearners)} | ${f(r.sharingStalled)} / ${f(r.sharingMessages)} | ${f(r.sharingExcessP50Ms)} / ${f(r.sharingExcessMaxMs)} | ${f(r.poisonedExcessMaxMs)} | ${f(r.othersWaitP50Ms)} / ${f(r.othersWaitP99Ms)}, ${f(r.othersExcessP99Ms)} | ${f(r.stallLearnerSeconds, 1)} | ${f((r.sharingExcessMaxMs * scale) / 1000)} | ${r.outOfOrder} | ${f(r.drainSeconds, 1)} |`,
      ),
    ].join('\n'),
  );
  console.log(`\n${JSON.stringify({ options: o, rows })}`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
