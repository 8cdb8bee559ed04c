/**
 * `node --import tsx bench/ordering.ts`: one ordering key per learner against `shard(studentId, N)`, measured on a
 * private Pub/Sub emulator with the room's own publisher (createBus, same batching settings). For each
 * strategy and offered rate: publish requests and billable bytes per event (counted at the client: every
 * Publish RPC the library sends), the emulator's threads, resident memory and CPU per event. One ordered
 * subscription nobody pulls from, as in LOCAL-STACK.md's isolated measurement. Prints a JSON summary and a
 * Markdown table; docs/performance.md quotes it.
 *
 *   node --import tsx bench/ordering.ts [events=3000] [rates=200,1000] [shards=16,256]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PubSub } from '@google-cloud/pubsub';
import { startPubsubEmulator } from '../emulators/google.ts';
import { freePort } from '../emulators/procs.ts';
import { createBus } from '../shared/clients.ts';
import type { Interaction } from '../shared/domain/interaction.ts';
import { interactionEvent, TOPICS } from '../shared/events.ts';
import { shardKey } from '../shared/ordering.ts';
import { allProcesses, groupCpuSeconds, groupRssMiB } from './proc.ts';

/** Pub/Sub bills at least 1,000 bytes per publish request (pricing page; see bench/prices.json). */
export const MIN_BILLABLE_BYTES = 1000;

interface Row {
  strategy: string;
  rate: number;
  events: number;
  learners: number;
  seconds: number;
  publishRequests: number;
  requestsPerEvent: number;
  billableBytesPerEvent: number;
  messageBytesPerEvent: number;
  emulatorThreads: number;
  emulatorRssMiB: number;
  emulatorCpuMsPerEvent: number;
  /** publishes that failed (the emulator did not answer within the 10 s deadline) */
  failed: number;
}

function groupThreads(pgid: number) {
  let n = 0;
  for (const p of allProcesses().filter((x) => x.pgrp === pgid)) {
    try {
      const m = /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'));
      n += m ? Number(m[1]) : 0;
    } catch {}
  }
  return n;
}

async function measure(strategy: string, shards: number | undefined, rate: number, events: number) {
  const dataDir = mkdtempSync(join(tmpdir(), 'ldr-ordering-'));
  const port = await freePort();
  const emulator = await startPubsubEmulator(port, dataDir);
  try {
    const projectId = 'demo-ordering';
    const pubsub = new PubSub({ projectId, apiEndpoint: `127.0.0.1:${port}` });
    const [topic] = await pubsub.createTopic(TOPICS.interaction);
    await topic.createSubscription('ordered', { enableMessageOrdering: true });
    let requests = 0;
    let billable = 0;
    let messageBytes = 0;
    const request = pubsub.request.bind(pubsub);
    (pubsub as unknown as { request: typeof request }).request = ((config, cb) => {
      const c = config as { method?: string; reqOpts?: { messages?: Array<Record<string, unknown>> } };
      if (c.method === 'publish') {
        requests++;
        let bytes = 0;
        for (const m of c.reqOpts?.messages ?? []) {
          bytes += (m.data as Buffer | undefined)?.length ?? 0;
          bytes += String(m.orderingKey ?? '').length;
          for (const [k, v] of Object.entries((m.attributes as Record<string, string>) ?? {}))
            bytes += k.length + v.length;
        }
        messageBytes += bytes;
        billable += Math.max(MIN_BILLABLE_BYTES, bytes);
      }
      return request(config, cb);
    }) as typeof request;
    const keyFor = (_t: string, key: string | undefined) =>
      shards && key !== undefined ? shardKey(key, shards) : key;
    const bus = createBus(pubsub, 10_000, keyFor);
    // warm up the channel and the topic's publisher
    await bus.publish(TOPICS.interaction, interactionEvent(sample('warm', 0), new Date()), 'warm');
    requests = 0;
    billable = 0;
    messageBytes = 0;
    const cpu0 = groupCpuSeconds(emulator.pid) ?? 0;
    const started = Date.now();
    const pending: Array<Promise<string>> = [];
    let failed = 0;
    // open loop: every event a new learner (the worst case for per-learner keys)
    for (let i = 0; i < events; i++) {
      const due = started + (i * 1000) / rate;
      const wait = due - Date.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const e = sample(`stu-${i}`, i);
      pending.push(
        bus.publish(TOPICS.interaction, interactionEvent(e, new Date()), e.studentId).catch(() => {
          failed++;
          return '';
        }),
      );
    }
    await Promise.all(pending);
    const seconds = (Date.now() - started) / 1000;
    const cpu = (groupCpuSeconds(emulator.pid) ?? 0) - cpu0;
    const row: Row = {
      strategy,
      rate,
      events,
      learners: events,
      seconds,
      publishRequests: requests,
      requestsPerEvent: requests / events,
      billableBytesPerEvent: billable / events,
      messageBytesPerEvent: messageBytes / events,
      emulatorThreads: groupThreads(emulator.pid),
      emulatorRssMiB: groupRssMiB(emulator.pid) ?? Number.NaN,
      emulatorCpuMsPerEvent: (1000 * cpu) / events,
      failed,
    };
    await pubsub.close();
    return row;
  } finally {
    await emulator.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function sample(studentId: string, i: number): Interaction {
  return {
    id: `evt-${i}-${Math.random().toString(36).slice(2)}`,
    studentId,
    instanceId: 'inst-bench',
    kind: 'exercise_attempt',
    occurredAt: new Date().toISOString(),
    payload: { exerciseId: `ex-${i % 50}`, passed: i % 3 !== 0, score: (i % 10) / 10 },
  } as unknown as Interaction;
}

async function main() {
  process.env.METADATA_SERVER_DETECTION = 'none';
  const [eventsArg, ratesArg, shardsArg] = process.argv.slice(2);
  const events = Number(eventsArg ?? 3000);
  const rates = (ratesArg ?? '200,1000').split(',').map(Number);
  const shardCounts = (shardsArg ?? '16,256').split(',').map(Number);
  const rows: Row[] = [];
  for (const rate of rates) {
    for (const s of [undefined, ...shardCounts]) {
      const row = await measure(s ? `shard(studentId, ${s})` : 'studentId', s, rate, events);
      rows.push(row);
      console.error(
        `${row.strategy.padEnd(22)} ${rate}/s: ${row.requestsPerEvent.toFixed(3)} requests/event, ` +
          `${Math.round(row.billableBytesPerEvent)} billable B/event, ${row.emulatorThreads} threads`,
      );
    }
  }
  const f = (x: number, d = 0) =>
    x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  console.log(
    [
      '| ordering key | offered events/s | events (each a new learner) | publish requests / event | billable bytes / event | message bytes / event | emulator threads after | emulator RSS MiB | emulator CPU ms / event | failed publishes | seconds |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.strategy} | ${r.rate} | ${f(r.events)} | ${f(r.requestsPerEvent, 3)} | ${f(r.billableBytesPerEvent)} | ${f(r.messageBytesPerEvent)} | ${f(r.emulatorThreads)} | ${f(r.emulatorRssMiB)} | ${f(r.emulatorCpuMsPerEvent, 2)} | ${f(r.failed)} | ${f(r.seconds, 1)} |`,
      ),
    ].join('\n'),
  );
  console.log(`\n${JSON.stringify(rows)}`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
