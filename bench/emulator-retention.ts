/**
 * `node --import tsx bench/emulator-retention.ts [messages=20000]`: does the Pub/Sub emulator let go of
 * messages once they are acknowledged? On a private emulator: one topic, one subscription (ordered, then a
 * second run unordered), `messages` messages of the size of the room's events (10 attributes, 500 bytes of
 * data, 256 ordering keys) published, every one pulled and acknowledged; then a full collection
 * (`jcmd <pid> GC.run`) and the count of live `PubsubMessage` objects and heap in use (GC.class_histogram,
 * GC.heap_info). Needs `jcmd` (the JDK beside the emulator's Java).
 *
 * What it showed (docs/performance.md §5): every message published is still live after all were
 * acknowledged — the emulator keeps each topic's messages in a `MessageCollection` that only grows — so its
 * memory grows with every message for as long as it runs, whatever its subscribers do.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Message, PubSub } from '@google-cloud/pubsub';
import { startPubsubEmulator } from '../emulators/google.ts';
import { freePort, waitFor } from '../emulators/procs.ts';
import { jcmd, jvmLiveHeapMiB } from './proc.ts';

const messages = Number(process.argv[2] ?? 20_000);

async function run(ordered: boolean) {
  const dataDir = mkdtempSync(join(tmpdir(), 'ldr-retention-'));
  const port = await freePort();
  const emulator = await startPubsubEmulator(port, dataDir);
  const pubsub = new PubSub({ projectId: 'retention-probe', apiEndpoint: `127.0.0.1:${port}` });
  try {
    const [topic] = await pubsub.createTopic('probe-topic');
    const [sub] = await topic.createSubscription('probe-sub', { enableMessageOrdering: ordered });
    const publisher = pubsub.topic('probe-topic', {
      messageOrdering: true,
      batching: { maxMessages: 100, maxMilliseconds: 5 },
    });
    let acked = 0;
    sub.on('message', (m: Message) => {
      m.ack();
      acked++;
    });
    const attributes = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`ce-a${i}`, 'x'.repeat(30)]));
    const pending: Array<Promise<string>> = [];
    for (let i = 0; i < messages; i++) {
      pending.push(
        publisher.publishMessage({ data: Buffer.alloc(500, 'a'), attributes, orderingKey: `k${i % 256}` }),
      );
      if (pending.length >= 500) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    await waitFor(async () => acked >= messages, 120_000, `${messages} messages acknowledged`);
    await sub.close();
    const liveHeapMiB = await jvmLiveHeapMiB(emulator.pid);
    const live = Number(
      /^\s*\d+:\s+(\d+)\s+\d+\s+com\.google\.pubsub\.v1\.PubsubMessage$/m.exec(
        await jcmd(emulator.pid, 'GC.class_histogram'),
      )?.[1],
    );
    console.log(
      JSON.stringify({
        subscription: ordered ? 'ordered' : 'unordered',
        published: messages,
        acknowledged: acked,
        livePubsubMessages: live,
        liveHeapMiB: Math.round(liveHeapMiB),
      }),
    );
  } finally {
    await pubsub.close().catch(() => {});
    await emulator.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await run(true);
await run(false);
