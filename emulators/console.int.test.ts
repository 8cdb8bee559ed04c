import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { clientEventId } from '../shared/events.ts';
import { eventually, fnUrl, suite, token } from '../tests/helpers.ts';

/**
 * The console's HTTP side, as the suite of the test run serves it (the pages are tested in Chromium in
 * tests/console.int.test.ts).
 */
const ui = () => suite().consoleUrl;

const post = async (studentId: string, id: string, headers: Record<string, string> = {}) =>
  fetch(fnUrl('ingestInteraction'), {
    method: 'POST',
    headers: {
      authorization: `Bearer ${await token({ sub: studentId, role: 'student', instance: 'school-console' })}`,
      'content-type': 'application/json',
      ...headers,
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

interface Follow {
  query: { traceId?: string };
  interactions: Array<{
    ceId: string;
    studentId: string;
    traceIds: string[];
    hops: Array<{ hop: string; sincePrevMs: number }>;
  }>;
}

describe('console', () => {
  it('serves the pages, the overview with every function healthy, and refuses a replay without its header', async () => {
    for (const path of ['/', '/tail', '/follow', '/deadletters', '/learner']) {
      const page = await fetch(`${ui()}${path}`);
      expect(page.headers.get('content-type')).toContain('text/html');
      expect(await page.text()).toContain('Follow one event');
    }
    const o = await eventually(
      async () => {
        const r = (await (await fetch(`${ui()}/api/overview`)).json()) as {
          functions: Array<{ name: string; health: string }>;
        };
        return r.functions.every((f) => f.health === 'ok') ? r : undefined;
      },
      30_000,
      'every function healthy',
    );
    expect(o.functions.map((f) => f.name).sort()).toEqual(Object.keys(suite().workerPorts).sort());
    const refused = await fetch(`${ui()}/api/deadletters/replay`, { method: 'POST' });
    expect(refused.status).toBe(403);
    const noId = await fetch(`${ui()}/api/follow?id=`);
    expect(noId.status).toBe(400);
    expect((await noId.json()).detail).toMatch(/^id:/);
  });

  it('streams a posted interaction on the live tail (server-sent events)', async () => {
    const studentId = `console-${randomUUID().slice(0, 8)}`;
    const id = `console-${randomUUID()}`;
    const ceId = clientEventId(studentId, id);
    const abort = new AbortController();
    const stream = await fetch(`${ui()}/api/events`, { signal: abort.signal });
    expect(stream.headers.get('content-type')).toBe('text/event-stream');
    expect((await post(studentId, id)).status).toBe(202);
    const reader = stream.body!.getReader();
    let text = '';
    const deadline = Date.now() + 30_000;
    while (!text.includes(`"ceId":"${ceId}.progress"`) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
    }
    abort.abort();
    expect(text).toContain(`event: tail\ndata: {"topic":"learnflow.interaction.received"`);
    expect(text).toContain(`"ceId":"${ceId}.progress"`);
  });

  it('follows an interaction by client id and learner, by ce-id and by the trace of its request', async () => {
    const studentId = `console-${randomUUID().slice(0, 8)}`;
    const id = `follow-${randomUUID()}`;
    const traceId = randomUUID().replaceAll('-', '');
    const res = await post(studentId, id, { traceparent: `00-${traceId}-${'1'.repeat(16)}-01` });
    expect(res.status).toBe(202);
    const want = ['received', 'triage', 'ledger', 'projection', 'progress event'];
    const byId = await eventually(
      async () => {
        const f = (await (
          await fetch(`${ui()}/api/follow?id=${encodeURIComponent(id)}&learner=${studentId}`)
        ).json()) as Follow;
        const hops = f.interactions[0]?.hops.map((h) => h.hop) ?? [];
        return want.every((h) => hops.includes(h)) ? f : undefined;
      },
      30_000,
      'received, triage, ledger, projection and progress hops',
    );
    const [one] = byId.interactions;
    expect(one!.ceId).toBe(clientEventId(studentId, id));
    expect(one!.studentId).toBe(studentId);
    expect(one!.traceIds).toEqual([traceId]);
    expect(one!.hops[0]!.hop).toBe('received');
    expect(one!.hops.every((h) => h.sincePrevMs >= 0)).toBe(true);
    const byCeId = (await (await fetch(`${ui()}/api/follow?id=${one!.ceId}.progress`)).json()) as Follow;
    expect(byCeId.interactions.map((i) => i.ceId)).toEqual([one!.ceId]);
    const byTrace = (await (await fetch(`${ui()}/api/follow?id=${traceId}`)).json()) as Follow;
    expect(byTrace.query.traceId).toBe(traceId);
    expect(byTrace.interactions.map((i) => i.ceId)).toEqual([one!.ceId]);
  });

  it('counts requests and answers per function as the front door saw them', async () => {
    const counts = async () =>
      (
        (await (await fetch(`${ui()}/api/overview`)).json()) as {
          functions: Array<{ name: string; requests: number; clientErrors: number }>;
        }
      ).functions.find((f) => f.name === 'progressApi')!;
    const before = await counts();
    const r = await fetch(fnUrl('progressApi', '/students/nobody'));
    expect(r.status).toBe(401);
    await r.arrayBuffer();
    const after = await eventually(async () => {
      const c = await counts();
      return c.clientErrors > before.clientErrors ? c : undefined;
    });
    // the overview's own health checks count as requests too
    expect(after.requests).toBeGreaterThan(before.requests);
    expect(after.clientErrors).toBe(before.clientErrors + 1);
  });
});
