/**
 * The benchmark's baseline: a bare Functions Framework HTTP handler that publishes the same messages as
 * ingestInteraction (same CloudEvent attributes, same ordering key, same topic, same publisher settings
 * through the same Bus factory) to the same Pub/Sub emulator — and nothing else: no authentication, no
 * validation, no rate limit, no de-duplication window. The ratio ingest / baseline is what those cost.
 *
 * Usage: node --import tsx bench/baseline.ts <port>   (PUBSUB_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT set)
 * Prints `{"ready": {"port": n}}` on stdout once it listens on 127.0.0.1.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import * as ff from '@google-cloud/functions-framework';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import { PubSub } from '@google-cloud/pubsub';
import { createBus } from '../shared/clients.ts';
import type { Interaction } from '../shared/domain/interaction.ts';
import { interactionEvent, TOPICS } from '../shared/events.ts';

const port = Number(process.argv[2] ?? 0);
const bus = createBus(new PubSub({ projectId: process.env.GOOGLE_CLOUD_PROJECT ?? 'demo-ldr' }));

ff.http('baseline', async (req, res) => {
  const body = req.body as { events?: Array<Record<string, unknown>> } & Record<string, unknown>;
  const raw = Array.isArray(body?.events) ? body.events : [body];
  const events = raw.map(
    (e) => ({ ...e, id: typeof e.id === 'string' ? e.id : randomUUID() }) as unknown as Interaction,
  );
  const receivedAt = new Date();
  try {
    await Promise.all(
      events.map((e) => bus.publish(TOPICS.interaction, interactionEvent(e, receivedAt), e.studentId)),
    );
  } catch (err) {
    res.status(503).json({ status: 503, detail: (err as Error).message });
    return;
  }
  res.status(202).json({
    accepted: events.length,
    duplicates: 0,
    results: events.map((e) => ({ id: e.id, status: 'accepted' })),
  });
});

const server = getTestServer('baseline');
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ ready: { port: (server.address() as AddressInfo).port } })}\n`);
});
const shutdown = () => server.close(() => process.exit(0));
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
