/**
 * Cost per million interactions in production, from what the bench counted and measured per event and the
 * list prices in bench/prices.json (each with its date, source and whether it was verified).
 */
import { existsSync, readFileSync } from 'node:fs';

export interface Prices {
  date: string;
  pubsub: { throughputPerTiB: number; minBillableBytesPerRequest: number; status: string; source: string };
  upstash: { per100kCommands: number; status: string; source: string };
  firestore: { per100kReads: number; per100kWrites: number; status: string; source: string };
  cloudRun: {
    perVcpuSecond: number;
    perGibSecond: number;
    perMillionRequests: number;
    status: string;
    source: string;
  };
  cloudSql: { status: string; source: string };
  hostedPipelines: { rudderstackGrowthPerMonthFor1M: number; status: string; source: string };
}

export const loadPrices = (): Prices =>
  JSON.parse(readFileSync(new URL('./prices.json', import.meta.url), 'utf8')) as Prices;

/** The figure at the start of issue 14 (the new bench on the code before its changes): bench/start-cost.json. */
export interface StartCost {
  usdPerMillion: number;
  date: string;
  commit: string;
  note: string;
}
export function loadStartCost(): StartCost | undefined {
  const url = new URL('./start-cost.json', import.meta.url);
  return existsSync(url) ? (JSON.parse(readFileSync(url, 'utf8')) as StartCost) : undefined;
}

/** What one interaction costs in operations; `how` says whether each was counted, measured or assumed. */
export interface OpsPerEvent {
  /** CPU seconds per event of each function process (measured) */
  cpuSeconds: Record<string, number>;
  /** resident memory of each function (measured), GiB; billed for the CPU time above */
  memoryGiB: Record<string, number>;
  /** HTTP requests reaching functions per event: the ingest request (1 per event for single posts) and pushes */
  functionRequests: { value: number; how: string };
  pubsubPublishRequests: { value: number; how: string };
  /** billable bytes of those publish requests (max(1,000, request bytes) each); when absent, the minimum each */
  pubsubPublishBillableBytes?: { value: number; how: string };
  pubsubDeliveries: { value: number; how: string };
  redisCommands: { value: number; how: string };
  firestoreReads: { value: number; how: string };
  firestoreWrites: { value: number; how: string };
}

export interface CostRow {
  item: string;
  perEvent: string;
  usdPerMillion: number;
  how: string;
}

export function costPerMillion(ops: OpsPerEvent, p: Prices): { rows: CostRow[]; total: number } {
  const M = 1e6;
  const cpu = Object.values(ops.cpuSeconds).reduce((a, b) => a + b, 0);
  const gibSeconds = Object.entries(ops.cpuSeconds).reduce(
    (a, [fn, sec]) => a + sec * (ops.memoryGiB[fn] ?? 0.25),
    0,
  );
  const publishBytes =
    ops.pubsubPublishBillableBytes?.value ??
    ops.pubsubPublishRequests.value * p.pubsub.minBillableBytesPerRequest;
  const pubsubBytes = publishBytes + ops.pubsubDeliveries.value * p.pubsub.minBillableBytesPerRequest;
  const rows: CostRow[] = [
    {
      item: 'Cloud Run CPU',
      perEvent: `${(1000 * cpu).toFixed(2)} ms`,
      usdPerMillion: cpu * M * p.cloudRun.perVcpuSecond,
      how: `measured (CPU of every function process); price ${p.cloudRun.status}`,
    },
    {
      item: 'Cloud Run memory',
      perEvent: `${(1000 * gibSeconds).toFixed(3)} GiB-ms`,
      usdPerMillion: gibSeconds * M * p.cloudRun.perGibSecond,
      how: `measured RSS × CPU time; price ${p.cloudRun.status}`,
    },
    {
      item: 'Cloud Run requests',
      perEvent: ops.functionRequests.value.toFixed(2),
      usdPerMillion: (ops.functionRequests.value * M * p.cloudRun.perMillionRequests) / M,
      how: ops.functionRequests.how,
    },
    {
      item: 'Pub/Sub throughput',
      perEvent: `${ops.pubsubPublishRequests.value.toFixed(2)} publish requests (${Math.round(publishBytes).toLocaleString('en-US')} B) + ${ops.pubsubDeliveries.value.toFixed(2)} deliveries × ${p.pubsub.minBillableBytesPerRequest} B`,
      usdPerMillion: ((pubsubBytes * M) / 2 ** 40) * p.pubsub.throughputPerTiB,
      how: `publishes: ${ops.pubsubPublishRequests.how}${ops.pubsubPublishBillableBytes ? `; bytes: ${ops.pubsubPublishBillableBytes.how}` : `; each bills the ${p.pubsub.minBillableBytesPerRequest}-byte minimum`}; deliveries: ${ops.pubsubDeliveries.how}, each billed the ${p.pubsub.minBillableBytesPerRequest}-byte minimum (the pushed message is < 1 KB)`,
    },
    {
      item: 'Upstash Redis',
      perEvent: `${ops.redisCommands.value.toFixed(2)} commands`,
      usdPerMillion: ((ops.redisCommands.value * M) / 1e5) * p.upstash.per100kCommands,
      how: ops.redisCommands.how,
    },
    {
      item: 'Firestore',
      perEvent: `${Number(ops.firestoreReads.value.toFixed(3))} reads + ${Number(ops.firestoreWrites.value.toFixed(3))} writes`,
      usdPerMillion:
        ((ops.firestoreReads.value * M) / 1e5) * p.firestore.per100kReads +
        ((ops.firestoreWrites.value * M) / 1e5) * p.firestore.per100kWrites,
      how: `reads: ${ops.firestoreReads.how}; writes: ${ops.firestoreWrites.how}; price ${p.firestore.status}`,
    },
  ];
  return { rows, total: rows.reduce((a, r) => a + r.usdPerMillion, 0) };
}
