/**
 * The SkillR frontend's view (issue 12): a page on another origin, in real Chromium (Debian's, driven by
 * playwright-core), loads the built SDK and posts interactions, survives going offline without losing or
 * doubling an event, uploads and downloads a file through signed URLs, and reads progress.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './chromium.ts';
import { eventually, suite, token } from './helpers.ts';

const sdk = fileURLToPath(new URL('../client/dist/ldr-client.js', import.meta.url));
const STUDENT = `browser-${Date.now()}`;
const INSTANCE = 'inst-browser';
let server: http.Server;
let origin: string;
let browser: Browser;
let page: Page;

const html = `<!doctype html><meta charset="utf-8"><title>SkillR test page</title>
<script type="module">
  import * as ldr from '/sdk/ldr-client.js';
  window.ldr = ldr;
  window.ready = true;
</script>`;

beforeAll(async () => {
  // the page's own origin: a port of its own, so every call to the room is cross-origin
  server = http.createServer((req, res) => {
    if (req.url === '/sdk/ldr-client.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(readFileSync(sdk));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(html);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchChromium();
  page = await browser.newPage();
  await page.goto(origin);
  await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
  const t = await token({ sub: STUDENT, role: 'student', instance: INSTANCE });
  await page.evaluate(
    ({ base, t, student, instance }: { base: string; t: string; student: string; instance: string }) => {
      const w = window as unknown as Record<string, any>;
      w.delivered = [];
      w.errors = [];
      w.client = w.ldr.createClient({
        baseUrl: base,
        token: () => t,
        studentId: student,
        instanceId: instance,
        flushAt: 1,
        retry: { minDelayMs: 100, maxDelayMs: 1000 },
        onDelivered: (r: unknown[]) => w.delivered.push(...r),
        onError: (e: Error) => w.errors.push(e.message),
      });
    },
    { base: suite().functionsBase, t, student: STUDENT, instance: INSTANCE },
  );
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((r) => server?.close(() => r()));
});

const history = async () => {
  const t = await token({ sub: 'platform-reader', role: 'platform' });
  const res = await fetch(`${suite().functionsBase}/progressApi/students/${STUDENT}/history?limit=100`, {
    headers: { authorization: `Bearer ${t}` },
  });
  if (!res.ok) return [];
  return ((await res.json()).items ?? []) as Array<{ id: string }>;
};

describe('the SDK in Chromium, from another origin', () => {
  it('posts interactions, and every event of an offline spell arrives exactly once', async () => {
    const online = await page.evaluate(async () => {
      const w = window as unknown as Record<string, any>;
      const ids = [];
      for (let i = 0; i < 3; i++)
        ids.push(
          await w.client.track(
            'quiz_answer',
            { quizId: 'q1', correct: i % 2 === 0, score: i % 2 ? 0.2 : 1 },
            { topic: 'python.loops' },
          ),
        );
      await w.client.flush();
      return ids as string[];
    });
    await page.context().setOffline(true);
    const offline = await page.evaluate(async () => {
      const w = window as unknown as Record<string, any>;
      const ids = [];
      for (let i = 0; i < 3; i++)
        ids.push(
          await w.client.track(
            'exercise_attempt',
            { exerciseId: `e${i}`, passed: true },
            { topic: 'python.loops' },
          ),
        );
      await w.client.flush().catch(() => undefined);
      return ids as string[];
    });
    await page.context().setOffline(false); // the `online` event flushes the queue
    const all = [...online, ...offline];
    const rows = await eventually(
      async () => {
        const h = await history();
        return all.every((id) => h.some((r) => r.id === id)) ? h : undefined;
      },
      60_000,
      'all six interactions recorded',
    );
    for (const id of all)
      expect(
        rows.filter((r) => r.id === id),
        id,
      ).toHaveLength(1);
    expect(rows).toHaveLength(6);
    expect(await page.evaluate(() => (window as unknown as Record<string, any>).errors)).toEqual([]);
  });

  it('uploads a file through a signed URL and downloads it again', async () => {
    const out = await page.evaluate(async () => {
      const w = window as unknown as Record<string, any>;
      const bytes = new Uint8Array(300_000).map((_, i) => (i * 7) % 251);
      const seen: number[] = [];
      const up = await w.client.upload(new Blob([bytes], { type: 'image/png' }), {
        filename: 'drawing.png',
        onProgress: (p: { loaded: number }) => seen.push(p.loaded),
      });
      // waits while finalizeArtifact verifies the bytes
      const { url } = await w.client.downloadUrl(up.uri, { timeoutMs: 30_000 });
      const back = new Uint8Array(await (await fetch(url)).arrayBuffer());
      return {
        uri: up.uri as string,
        same: back.length === bytes.length && back.every((b, i) => b === bytes[i]),
        lastProgress: seen.at(-1),
      };
    });
    expect(out.uri).toMatch(/^lfs:\/\//);
    expect(out.same).toBe(true);
    expect(out.lastProgress).toBe(300_000);
  });

  it('uploads through a resumable session (resumable: true), survives a dropped chunk, and downloads it', async () => {
    // the page's network drops the second chunk PUT to the session URI, as a flaky mobile link would
    let chunkPuts = 0;
    const ranges: string[] = [];
    const sessionUri = (url: URL) => url.searchParams.has('upload_id');
    await page.route(sessionUri, async (route) => {
      const range = route.request().headers()['content-range'];
      if (route.request().method() === 'PUT' && range) {
        ranges.push(range);
        if (!range.startsWith('bytes */') && ++chunkPuts === 2) return route.abort('connectionreset');
      }
      return route.continue();
    });
    try {
      const out = await page.evaluate(async () => {
        const w = window as unknown as Record<string, any>;
        const bytes = new Uint8Array(600_000).map((_, i) => (i * 13) % 251);
        const seen: number[] = [];
        const up = await w.client.upload(new Blob([bytes], { type: 'image/png' }), {
          filename: 'poster.png',
          resumable: true,
          chunkSize: 256 * 1024,
          retryDelayMs: 50,
          onProgress: (p: { loaded: number }) => seen.push(p.loaded),
        });
        const { url } = await w.client.downloadUrl(up.uri, { timeoutMs: 30_000 });
        const back = new Uint8Array(await (await fetch(url)).arrayBuffer());
        return {
          uri: up.uri as string,
          same: back.length === bytes.length && back.every((b, i) => b === bytes[i]),
          lastProgress: seen.at(-1),
        };
      });
      expect(out.uri).toMatch(/^lfs:\/\//);
      expect(out.same).toBe(true);
      expect(out.lastProgress).toBe(600_000);
      const chunk = 256 * 1024;
      expect(ranges).toEqual([
        `bytes 0-${chunk - 1}/600000`,
        `bytes ${chunk}-${2 * chunk - 1}/600000`, // dropped
        'bytes */600000', // the session says it holds the first chunk
        `bytes ${chunk}-${2 * chunk - 1}/600000`,
        `bytes ${2 * chunk}-599999/600000`,
      ]);
    } finally {
      await page.unroute(sessionUri);
    }
  });

  it('reads the learner’s progress', async () => {
    const progress = await eventually(
      () =>
        page.evaluate(async (student: string) => {
          const w = window as unknown as Record<string, any>;
          const p = await w.client.progress(student).catch(() => undefined);
          return p?.topics?.length ? (p as { topics: Array<{ topic: string; mastery: number }> }) : undefined;
        }, STUDENT),
      30_000,
      'progress readable from the page',
    );
    expect(progress.topics[0]?.topic).toBe('python.loops');
    expect(progress.topics[0]?.mastery).toBeGreaterThan(0);
  });
});
