import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Message, PubSub, Subscription } from '@google-cloud/pubsub';
import { pullAll, replay } from '../scripts/dead-letters.ts';
import type { Topology } from '../shared/topology.ts';
import { portOpen } from './procs.ts';

/**
 * The room's console on 127.0.0.1:<firebase.json ui port>: one static page, fed by server-sent events
 * from this process — overview (functions with pid, restarts and health; emulators; bridge counters),
 * a live tail of every topology topic (through subscriptions of its own, deleted at stop), and the dead
 * letters with replay. Local-only; the replay route needs the `x-ldr-console` header, which a
 * cross-site form cannot send, so another page in the browser cannot trigger it.
 */
export interface ConsoleDeps {
  port: number;
  pubsub: PubSub;
  topology: Topology;
  projectId: string;
  functionUrl: (fn: string) => string;
  workers: () => Map<string, { port: number; current(): { pid: number }; restarts(): number }>;
  processes: () => Record<string, { pid: number }>;
  bridge: () => Record<string, number>;
}

interface TailEvent {
  topic: string;
  time: string;
  type?: string;
  ceId?: string;
  subject?: string;
  orderingKey?: string;
  reason?: string;
}

export async function startConsole(deps: ConsoleDeps) {
  const tag = randomUUID().slice(0, 8);
  const subs: Subscription[] = [];
  const recent: TailEvent[] = [];
  const clients = new Set<http.ServerResponse>();
  const send = (event: string, data: unknown) => {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const c of clients) c.write(frame);
  };

  for (const t of deps.topology.topics) {
    const [sub] = await deps.pubsub
      .topic(t.name)
      .createSubscription(`console.${tag}.${t.name}`, { ackDeadlineSeconds: 10 });
    subs.push(sub);
    sub.on('message', (m: Message) => {
      m.ack();
      const e: TailEvent = {
        topic: t.name,
        time: m.publishTime.toISOString(),
        type: m.attributes['ce-type'],
        ceId: m.attributes['ce-id'],
        subject: m.attributes['ce-subject'],
        orderingKey: m.orderingKey || undefined,
        reason: m.attributes['ldr-deadletter-reason'],
      };
      recent.push(e);
      if (recent.length > 500) recent.shift();
      send('tail', e);
    });
    sub.on('error', () => {});
  }

  const overview = async () => {
    const functions = await Promise.all(
      [...deps.workers()].map(async ([name, w]) => {
        const health = await fetch(`${deps.functionUrl(name)}/healthz`, { signal: AbortSignal.timeout(2000) })
          .then((r) => (r.ok ? 'ok' : `HTTP ${r.status}`))
          .catch(() => 'down');
        return { name, pid: w.current().pid, port: w.port, restarts: w.restarts(), health };
      }),
    );
    const emulators = Object.fromEntries(
      Object.entries(deps.processes()).map(([n, p]) => [n, { pid: p.pid }]),
    );
    return { at: new Date().toISOString(), functions, emulators, bridge: deps.bridge() };
  };
  const ticker = setInterval(() => {
    if (clients.size)
      overview().then(
        (o) => send('overview', o),
        () => {},
      );
  }, 2000);

  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://console');
    const route = `${req.method} ${url.pathname}`;
    const fail = (err: Error) => json(res, 500, { title: 'Internal Server Error', detail: err.message });
    if (route === 'GET /') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
      return;
    }
    if (route === 'GET /api/overview') return void overview().then((o) => json(res, 200, o), fail);
    if (route === 'GET /api/tail') return json(res, 200, recent);
    if (route === 'GET /api/deadletters') {
      return void pullAll(deps.pubsub)
        .then(async (p) => {
          await p.release(p.messages.map((m) => m.ackId));
          await p.close();
          json(
            res,
            200,
            p.messages.map(({ data, ackId, attributes, ...m }) => m),
          );
        })
        .catch(fail);
    }
    if (route === 'POST /api/deadletters/replay') {
      if (req.headers['x-ldr-console'] !== '1')
        return json(res, 403, { title: 'Forbidden', detail: 'the x-ldr-console header is required' });
      const id = url.searchParams.get('id') ?? undefined;
      return void replay(deps.pubsub, deps.topology, id ? { id } : { all: true })
        .then((r) =>
          json(res, 200, {
            replayed: r.replayed.map((d) => d.id),
            failed: r.failed.map((f) => ({ id: f.dl.id, error: f.error })),
          }),
        )
        .catch(fail);
    }
    if (route === 'GET /api/events') {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-store',
        connection: 'keep-alive',
      });
      res.write(': connected\n\n');
      clients.add(res);
      overview().then(
        (o) => res.write(`event: overview\ndata: ${JSON.stringify(o)}\n\n`),
        () => {},
      );
      req.on('close', () => clients.delete(res));
      return;
    }
    json(res, 404, { title: 'Not Found', detail: `no console route ${route}` });
  });
  if (await portOpen(deps.port)) throw new Error(`port ${deps.port} (console) is in use`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(deps.port, '127.0.0.1', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${deps.port}`,
    async stop() {
      clearInterval(ticker);
      for (const c of clients) c.end();
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
      await Promise.all(subs.map((s) => s.close().catch(() => {})));
      await Promise.all(subs.map((s) => s.delete().catch(() => {})));
    },
  };
}

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lerning-Data-Room console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1rem 2rem;color:#222}
h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:1.5rem}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left;font-variant-numeric:tabular-nums}
.ok{color:#0a7a2f}.bad{color:#b00020}code{font-size:12px}
#tail{font:12px ui-monospace,monospace;max-height:22rem;overflow:auto;background:#f7f7f7;padding:.5rem}
input{margin-right:.5rem}
</style></head><body>
<h1>Lerning-Data-Room <span id="state" class="bad">connecting…</span></h1>
<h2>Functions</h2><table id="functions"><thead><tr><th>function</th><th>health</th><th>pid</th><th>port</th><th>restarts</th></tr></thead><tbody></tbody></table>
<h2>Emulators and services</h2><table id="emulators"><tbody></tbody></table>
<h2>Bridge (push deliveries)</h2><table id="bridge"><tbody></tbody></table>
<h2>Dead letters <button id="refresh">refresh</button> <button id="replayAll">replay all</button></h2>
<table id="deadletters"><thead><tr><th>id</th><th>from</th><th>attempts</th><th>ce-id</th><th>type</th><th>reason</th><th></th></tr></thead><tbody></tbody></table>
<h2>Live tail</h2>
<label>topic <input id="fTopic"></label><label>type <input id="fType"></label><label>learner / ce-id <input id="fText"></label>
<div id="tail"></div>
<script>
const $ = (s) => document.querySelector(s);
const esc = (v) => String(v ?? '-').replace(/[&<>"]/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const rows = (sel, list) => { $(sel + ' tbody').innerHTML = list.join(''); };
function overview(o) {
  rows('#functions', o.functions.map((f) => '<tr data-fn="' + esc(f.name) + '"><td>' + esc(f.name) + '</td><td class="' + (f.health === 'ok' ? 'ok' : 'bad') + '">' + esc(f.health) + '</td><td>' + f.pid + '</td><td>' + f.port + '</td><td>' + f.restarts + '</td></tr>'));
  rows('#emulators', Object.entries(o.emulators).map(([n, p]) => '<tr><td>' + esc(n) + '</td><td>pid ' + p.pid + '</td></tr>'));
  rows('#bridge', Object.entries(o.bridge).map(([k, v]) => '<tr><td>' + esc(k) + '</td><td>' + v + '</td></tr>'));
}
const shown = [];
function matches(e) {
  const t = $('#fTopic').value, y = $('#fType').value, x = $('#fText').value;
  return (!t || e.topic.includes(t)) && (!y || (e.type || '').includes(y)) && (!x || JSON.stringify(e).includes(x));
}
function renderTail() {
  $('#tail').innerHTML = shown.filter(matches).slice(-300).reverse().map((e) => '<div>' + esc(e.time.slice(11, 23)) + ' ' + esc(e.topic) + ' ' + esc(e.type) + ' ce-id=' + esc(e.ceId) + ' ' + esc(e.subject) + (e.reason ? ' reason=' + esc(e.reason) : '') + '</div>').join('');
}
for (const i of ['#fTopic', '#fType', '#fText']) $(i).addEventListener('input', renderTail);
async function deadLetters() {
  const list = await (await fetch('/api/deadletters')).json();
  rows('#deadletters', list.map((d) => '<tr><td>' + esc(d.id) + '</td><td>' + esc(d.source) + '</td><td>' + esc(d.attempts) + '</td><td>' + esc(d.ceId) + '</td><td>' + esc(d.type) + '</td><td>' + esc(d.reason) + '</td><td><button data-id="' + esc(d.id) + '">replay</button></td></tr>'));
}
async function replay(id) {
  await fetch('/api/deadletters/replay' + (id ? '?id=' + encodeURIComponent(id) : ''), { method: 'POST', headers: { 'x-ldr-console': '1' } });
  await deadLetters();
}
$('#deadletters').addEventListener('click', (e) => { if (e.target.dataset.id) replay(e.target.dataset.id); });
$('#refresh').onclick = deadLetters;
$('#replayAll').onclick = () => replay();
fetch('/api/tail').then((r) => r.json()).then((l) => { shown.push(...l); renderTail(); });
const es = new EventSource('/api/events');
es.addEventListener('overview', (m) => { overview(JSON.parse(m.data)); $('#state').textContent = 'live'; $('#state').className = 'ok'; });
es.addEventListener('tail', (m) => { shown.push(JSON.parse(m.data)); if (shown.length > 2000) shown.shift(); renderTail(); });
es.onerror = () => { $('#state').textContent = 'disconnected'; $('#state').className = 'bad'; };
deadLetters();
</script></body></html>
`;
