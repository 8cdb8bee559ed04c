/**
 * The benchmark's baselines, served as the functions are: bundled by esbuild and run under the Functions
 * Framework's own CLI (one process per target), behind the same body guard (shared/serve.ts).
 * - `baseline`: a bare HTTP handler that publishes the same messages as ingestInteraction (same CloudEvent
 *   attributes, same ordering key, same topic, same publisher settings through the same Bus factory) to the
 *   same Pub/Sub emulator — and nothing else: no authentication, validation, rate limit or de-duplication.
 *   The ratio ingest / baseline is what those cost.
 * - `noop`: reads the body and answers; the floor of any function served this way (per-request cost of the
 *   framework, the body guard and HTTP), for the Pub/Sub-triggered functions' CPU ratios.
 *
 * Started by bench/run.ts (`startBaselines`), which builds this file and passes PUBSUB_EMULATOR_HOST,
 * GOOGLE_CLOUD_PROJECT and LISTEN_HOST.
 */
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { PubSub } from '@google-cloud/pubsub';
import { createBus } from '../shared/clients.ts';
import type { Interaction } from '../shared/domain/interaction.ts';
import { interactionEvent, TOPICS } from '../shared/events.ts';
import { PUSH_BODY_LIMITS, serveHttp } from '../shared/serve.ts';

/** Functions are served straight from the body guard: plain node:http responses. */
function reply(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

if (process.env.FUNCTION_TARGET === 'noop') {
  serveHttp(
    'noop',
    (req, res) => {
      const n = Array.isArray((req.body as { events?: unknown[] })?.events)
        ? (req.body as { events: unknown[] }).events.length
        : 1;
      reply(res, 202, { accepted: n, duplicates: 0 });
    },
    PUSH_BODY_LIMITS,
  );
} else {
  const bus = createBus(new PubSub({ projectId: process.env.GOOGLE_CLOUD_PROJECT ?? 'demo-ldr' }));
  serveHttp('baseline', async (req, res) => {
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
      reply(res, 503, { status: 503, detail: (err as Error).message });
      return;
    }
    reply(res, 202, {
      accepted: events.length,
      duplicates: 0,
      results: events.map((e) => ({ id: e.id, status: 'accepted' })),
    });
  });
}
