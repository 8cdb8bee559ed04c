import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTopology } from '../shared/topology.ts';
import { eventually, fnUrl, pubsubClient, suite, token } from '../tests/helpers.ts';
import { startConsole } from './console.ts';
import { freePort } from './procs.ts';

/** The console's HTTP side against the running suite (the page itself is tested in a browser elsewhere). */
const pubsub = pubsubClient();
let ui: Awaited<ReturnType<typeof startConsole>>;

beforeAll(async () => {
  const s = suite();
  ui = await startConsole({
    port: await freePort(),
    pubsub,
    topology: loadTopology(),
    projectId: s.projectId,
    functionUrl: (fn) => `${s.functionsBase}/${fn}`,
    workers: () =>
      new Map(
        Object.entries(s.workerPorts).map(([name, port]) => [
          name,
          { port, current: () => ({ pid: s.workerPids[name]! }), restarts: () => 0 },
        ]),
      ),
    processes: () => Object.fromEntries(Object.entries(s.processPids).map(([n, pid]) => [n, { pid }])),
    bridge: () => ({ delivered: 0 }),
  });
});
afterAll(async () => {
  await ui.stop();
  await pubsub.close();
});

describe('console', () => {
  it('serves the page, the overview with every function healthy, and refuses a replay without its header', async () => {
    const page = await fetch(ui.url);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('Dead letters');
    const o = await eventually(
      async () => {
        const r = (await (await fetch(`${ui.url}/api/overview`)).json()) as {
          functions: Array<{ name: string; health: string }>;
        };
        return r.functions.every((f) => f.health === 'ok') ? r : undefined;
      },
      30_000,
      'every function healthy',
    );
    expect(o.functions.map((f) => f.name).sort()).toEqual(Object.keys(suite().workerPorts).sort());
    const refused = await fetch(`${ui.url}/api/deadletters/replay`, { method: 'POST' });
    expect(refused.status).toBe(403);
  });

  it('streams a posted interaction on the live tail (server-sent events)', async () => {
    const studentId = `console-${randomUUID().slice(0, 8)}`;
    const id = `console-${randomUUID()}`;
    const abort = new AbortController();
    const stream = await fetch(`${ui.url}/api/events`, { signal: abort.signal });
    expect(stream.headers.get('content-type')).toBe('text/event-stream');
    const res = await fetch(fnUrl('ingestInteraction'), {
      method: 'POST',
      headers: {
        authorization: `Bearer ${await token({ sub: studentId, role: 'student', instance: 'school-console' })}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        id,
        studentId,
        instanceId: 'school-console',
        kind: 'quiz_answer',
        occurredAt: new Date(Date.now() - 60_000).toISOString(),
        topic: 'python.loops',
        payload: { quizId: 'q1', correct: true, score: 0.5 },
      }),
    });
    expect(res.status).toBe(202);
    const reader = stream.body!.getReader();
    let text = '';
    const deadline = Date.now() + 30_000;
    while (!text.includes(`"ceId":"${id}.progress"`) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
    }
    abort.abort();
    expect(text).toContain(`event: tail\ndata: {"topic":"learnflow.interaction.received"`);
    expect(text).toContain(`"ceId":"${id}.progress"`);
  });
});
