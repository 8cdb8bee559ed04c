/**
 * The console (emulators/console.ts) as a person sees it: real Chromium (Debian's, driven by
 * playwright-core) opens each page of the console the suite of this run serves, and each page must show
 * what the room holds. One screenshot per page goes to test-output/console/ (gitignored) for a human.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toMessage } from '../shared/cloudevents.ts';
import { type Interaction, interactionSchema } from '../shared/domain/interaction.ts';
import { clientEventId, interactionEvent, TOPICS } from '../shared/events.ts';
import { launchChromium } from './chromium.ts';
import { eventually, fnUrl, pubsubClient, suite, token } from './helpers.ts';

const shots = fileURLToPath(new URL('../test-output/console/', import.meta.url));
const STUDENT = `console-ui-${randomUUID().slice(0, 8)}`;
const INSTANCE = 'school-console-ui';
const ID = `ui-${randomUUID()}`;
const CE_ID = clientEventId(STUDENT, ID);
const ui = (path: string) => `${suite().consoleUrl}${path}`;
const pubsub = pubsubClient();
let browser: Browser;
let page: Page;

const interaction = (id: string, topic: string, score: number) =>
  interactionSchema.parse({
    id,
    studentId: STUDENT,
    instanceId: INSTANCE,
    kind: 'quiz_answer',
    occurredAt: new Date(Date.now() - 60_000).toISOString(),
    topic,
    payload: { quizId: 'q1', correct: score > 0.5, score },
  }) as Interaction;

const shot = (name: string) => page.screenshot({ path: `${shots}${name}.png`, fullPage: true });

beforeAll(async () => {
  mkdirSync(shots, { recursive: true });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await pubsub.close();
});

describe('the console in Chromium', () => {
  it('overview: all nine functions healthy, with requests counted, topics with sparklines, live', async () => {
    await page.goto(ui('/'));
    await page.waitForSelector('#state.ok');
    const functions = await eventually(
      async () => {
        const rows = await page.$$eval('#functions tbody tr', (trs) =>
          trs.map((tr) => ({
            name: tr.getAttribute('data-fn'),
            health: tr.children[1]!.textContent,
            requests: Number(tr.children[5]!.textContent),
          })),
        );
        // the console's own health checks go through the front door, so from its second refresh on every
        // function shows requests (the first may be taken before any request reached a function)
        return rows.length === 9 && rows.every((r) => r.health === 'ok' && r.requests > 0) ? rows : undefined;
      },
      30_000,
      'nine healthy functions on the page, each with requests counted by the front door',
    );
    expect(functions.map((f) => f.name).sort()).toEqual(Object.keys(suite().workerPorts).sort());
    const topics = await page.$$eval('#topics tbody tr', (trs) =>
      trs.map((tr) => tr.getAttribute('data-topic')),
    );
    expect(topics).toContain('learnflow.interaction.received');
    expect(topics).toContain('learnflow.deadletter');
    expect(await page.locator('#topics svg.spark').count()).toBe(topics.length);
    expect(await page.locator('#topics .bad').count()).toBe(0); // every topic tapped
    await shot('overview');
  });

  it('live tail: an interaction posted now appears, with the events derived from it', async () => {
    await page.goto(ui('/tail'));
    await page.waitForSelector('#state.ok');
    await page.fill('#fLearner', STUDENT);
    const t = await token({ sub: STUDENT, role: 'student', instance: INSTANCE });
    const res = await fetch(fnUrl('ingestInteraction'), {
      method: 'POST',
      headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
      body: JSON.stringify(interaction(ID, 'python.loops', 0.9)),
    });
    expect(res.status).toBe(202);
    // routeTriage and updateProgress run side by side: wait for both derived events, whichever comes last
    await page.waitForFunction(
      (ceId) => {
        const text = document.querySelector('#tailLines')!.textContent!;
        return text.includes(`${ceId}.progress`) && text.includes(`${ceId}.triage`);
      },
      CE_ID,
      { timeout: 30_000 },
    );
    const text = (await page.textContent('#tailLines')) ?? '';
    expect(text).toContain(`learnflow.interaction.received learnflow.interaction.v1 ce-id=${CE_ID}`);
    expect(text).toContain(`ce-id=${CE_ID}.triage`);
    await shot('tail');
  });

  it('follow one event: received → triage → ledger → progress, with times between hops', async () => {
    const want = ['received', 'triage', 'ledger', 'projection', 'progress event'];
    const hops = await eventually(
      async () => {
        await page.goto(ui(`/follow?id=${encodeURIComponent(ID)}&learner=${STUDENT}`));
        await page.waitForSelector('#followNote:not(:empty)');
        const got = await page.$$eval('tr.hop', (trs) =>
          trs.map((tr) => ({ hop: tr.getAttribute('data-hop')!, since: tr.children[2]!.textContent! })),
        );
        return want.every((h) => got.some((g) => g.hop === h)) ? got : undefined;
      },
      30_000,
      'the hops of the interaction on the follow page',
    );
    expect(hops[0]!.hop).toBe('received');
    // triage and the ledger run side by side (two subscriptions of the interaction topic); the progress
    // event leaves the ledger's outbox after the commit
    const at = (hop: string) => hops.findIndex((h) => h.hop === hop);
    expect(at('progress event')).toBeGreaterThan(at('ledger'));
    for (const h of hops) expect(h.since).toMatch(/^\d+ ms$/);
    expect(await page.textContent('#followOut h3')).toContain(`ce-id ${CE_ID}`);
    await shot('follow');
  });

  it('dead letters: one from fn.updateProgress.interaction is listed and its replay button gets it applied', async () => {
    const dlId = `ui-dl-${randomUUID()}`;
    const dlCeId = clientEventId(STUDENT, dlId);
    const msg = toMessage(interactionEvent(interaction(dlId, 'python.functions', 0.2), new Date()));
    await pubsub.topic(TOPICS.deadLetter).publishMessage({
      data: msg.data,
      attributes: {
        ...msg.attributes,
        CloudPubSubDeadLetterSourceDeliveryCount: '5',
        CloudPubSubDeadLetterSourceSubscription: 'fn.updateProgress.interaction',
        CloudPubSubDeadLetterSourceSubscriptionProject: suite().projectId,
        CloudPubSubDeadLetterSourceTopicPublishTime: new Date().toISOString(),
      },
    });
    await page.goto(ui('/deadletters'));
    const row = page.locator(`#deadletterTable tr[data-ce-id="${dlCeId}"]`);
    await eventually(
      async () => {
        const loaded = await page.getAttribute('#deadletterTable', 'data-loaded');
        if ((await row.count()) === 1) return true;
        await page.click('#refresh');
        await page.waitForFunction(
          (before) => document.querySelector('#deadletterTable')!.getAttribute('data-loaded') !== before,
          loaded,
          { timeout: 15_000 },
        );
        return undefined;
      },
      30_000,
      'the dead letter on the page',
    );
    const cells = await row.locator('td').allTextContents();
    expect(cells[2]).toBe('fn.updateProgress.interaction');
    expect(cells[3]).toBe('5');
    expect(cells[5]).toBe('learnflow.interaction.v1');
    await shot('deadletters');
    await row.locator('button').click();
    await page.waitForSelector('#replayNote:not(:empty)', { timeout: 30_000 });
    expect(await page.textContent('#replayNote')).toBe('1 replayed, 0 failed');
    // applied: the room's own read API has it
    const platform = await token({ sub: 'platform-svc', role: 'platform' });
    const items = await eventually(
      async () => {
        const r = await fetch(fnUrl('progressApi', `/students/${STUDENT}/history?limit=10`), {
          headers: { authorization: `Bearer ${platform}` },
        });
        const body = (await r.json()) as { items?: Array<{ id: string }> };
        return body.items?.some((i) => i.id === dlId) ? body.items : undefined;
      },
      45_000,
      'the replayed interaction applied',
    );
    expect(items.map((i) => i.id).sort()).toEqual([ID, dlId].sort());
    // acknowledged on ops.deadletter once replayed: the list the page loads after the replay lacks it
    await row.waitFor({ state: 'detached', timeout: 15_000 });
  });

  it('learner: mastery per topic as the room holds it, charted from mastery_snapshots', async () => {
    const platform = await token({ sub: 'platform-svc', role: 'platform' });
    const progress = (await (
      await fetch(fnUrl('progressApi', `/students/${STUDENT}`), {
        headers: { authorization: `Bearer ${platform}` },
      })
    ).json()) as { topics: Array<{ topic: string; mastery: number }> };
    const loops = progress.topics.find((t) => t.topic === 'python.loops')!;
    expect(loops.mastery).toBeGreaterThan(0);
    await page.goto(ui(`/learner?id=${STUDENT}`));
    await page.waitForSelector('#learnerTopics tr[data-topic="python.functions"]');
    const shown = await page.textContent('#learnerTopics tr[data-topic="python.loops"] .mastery');
    expect(Number(shown)).toBe(loops.mastery);
    expect(await page.locator('#masteryChart polyline').count()).toBe(2); // one line per topic
    expect(await page.locator('#masteryChart circle').count()).toBe(2);
    expect(await page.textContent('#masteryChart')).toContain('python.loops');
    await shot('learner');
  });
});
