import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Firestore } from '@google-cloud/firestore';
import type { Message, PubSub, Subscription } from '@google-cloud/pubsub';
import pg from 'pg';
import { pullAll, replay } from '../scripts/dead-letters.ts';
import { clientEventId } from '../shared/events.ts';
import { INSTANCES, PARTNERS } from '../shared/registry.ts';
import { partnerNames, type Topology } from '../shared/topology.ts';
import { type Hop, hopOf, rootCeId, type Seen, seenOf, TapStore, timeline } from './console-store.ts';
import { portOpen } from './procs.ts';

/**
 * The room's console on 127.0.0.1:<firebase.json ui port>: a few static pages fed by JSON and
 * server-sent events from this process — overview (functions with health, pid, restarts, requests and
 * errors as the front door saw them; emulators; bridge counters; a rate sparkline per topic; partners and
 * instances), a live tail, follow one event (its hops through the room, with times between them), the
 * dead letters with replay, and a learner page (mastery over time from `mastery_snapshots`, alerts).
 *
 * What it shows comes from what the room holds: the console's own tap subscription on every topic of
 * the topology and every partner topic (`console.<random>.<topic>`, deleted at stop; the last 20,000
 * messages kept in memory), PostgreSQL (ledger, snapshots, alerts), Firestore (projection, registry) and
 * the functions' logs. Local-only; the replay route needs the `x-ldr-console` header, which a cross-site
 * form cannot send, so another page in the browser cannot trigger it.
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
  /** requests per function and their answers, as the front door counted them */
  requests?: () => Record<string, FunctionCounts>;
  /** the ledger, snapshots and alerts (learner page, follow) */
  databaseUrl?: string;
  /** the projection (follow) and the registry (partners, instances) */
  firestore?: Firestore;
  /** <dataDir>/logs: the functions' JSON log lines (follow shows the warnings and errors of an event) */
  logDir?: string;
  /** how many tapped messages to keep */
  keep?: number;
}

export interface FunctionCounts {
  requests: number;
  /** 4xx answers */
  clientErrors: number;
  /** 5xx answers and connections closed without one */
  errors: number;
}

/** Counts the front door's answers per function (the suite feeds it from host.ts's onResponse). */
export function requestCounter() {
  const counts: Record<string, FunctionCounts> = {};
  return {
    count(fn: string, status: number) {
      const c = counts[fn] ?? { requests: 0, clientErrors: 0, errors: 0 };
      counts[fn] = c;
      c.requests++;
      if (status >= 400 && status < 500) c.clientErrors++;
      if (status >= 500 || status === 0) c.errors++;
    },
    snapshot: () => structuredClone(counts),
  };
}

const TRACE_ID = /^[0-9a-f]{32}$/i;

export async function startConsole(deps: ConsoleDeps) {
  const tag = randomUUID().slice(0, 8);
  const store = new TapStore(deps.keep ?? 20_000);
  const taps = new Map<string, Subscription>();
  const clients = new Set<http.ServerResponse>();
  let stopping = false;
  const send = (event: string, data: unknown) => {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const c of clients) c.write(frame);
  };
  const pool = deps.databaseUrl
    ? new pg.Pool({ connectionString: deps.databaseUrl, max: 2, connectionTimeoutMillis: 3000 })
    : undefined;
  pool?.on('error', () => {}); // PostgreSQL stopped under an idle client (chaos runs): the next query reconnects

  const registry = async () => {
    if (!deps.firestore) return { partners: [], instances: [] };
    const [p, i] = await Promise.all([
      deps.firestore.collection(PARTNERS).get(),
      deps.firestore.collection(INSTANCES).get(),
    ]);
    return {
      partners: p.docs.map((d) => ({ slug: d.id, ...d.data() })),
      instances: i.docs.map((d) => ({ id: d.id, ...d.data() })),
    };
  };

  const tap = async (topic: string) => {
    const name = `console.${tag}.${topic}`;
    const [sub] = await deps.pubsub
      .topic(topic)
      .createSubscription(name, { ackDeadlineSeconds: 10, expirationPolicy: { ttl: { seconds: 86_400 } } })
      .catch((err: { code?: number }) => {
        if (err.code === 6) return [deps.pubsub.subscription(name)] as const; // ALREADY_EXISTS
        throw err;
      });
    taps.set(topic, sub);
    sub.on('message', (m: Message) => {
      m.ack();
      const e = seenOf(topic, m);
      store.add(e);
      send('tail', e);
    });
    sub.on('error', () => {
      // the emulator restarted (chaos) or the topic went: tapped again by the next sync
      taps.delete(topic);
      void sub.close().catch(() => {});
    });
  };
  // every topology topic, and each registered partner's topic as it appears
  const sync = async () => {
    const partners = await registry()
      .then((r) => r.partners.map((p) => partnerNames(deps.topology, p.slug).topic))
      .catch(() => [] as string[]);
    for (const topic of [...deps.topology.topics.map((t) => t.name), ...partners]) {
      if (stopping || taps.has(topic)) continue;
      await tap(topic).catch(() => {});
    }
  };
  await sync();
  const syncer = setInterval(() => void sync().catch(() => {}), 3000);

  const overview = async () => {
    const requests = deps.requests?.() ?? {};
    const functions = await Promise.all(
      [...deps.workers()].map(async ([name, w]) => {
        const health = await fetch(`${deps.functionUrl(name)}/healthz`, { signal: AbortSignal.timeout(2000) })
          .then((r) => (r.ok ? 'ok' : `HTTP ${r.status}`))
          .catch(() => 'down');
        const c = requests[name] ?? { requests: 0, clientErrors: 0, errors: 0 };
        return { name, pid: w.current().pid, port: w.port, restarts: w.restarts(), health, ...c };
      }),
    );
    const emulators = Object.fromEntries(
      Object.entries(deps.processes()).map(([n, p]) => [n, { pid: p.pid }]),
    );
    const rates = store.rates(60);
    const topics = [...new Set([...deps.topology.topics.map((t) => t.name), ...taps.keys()])].map((name) => ({
      name,
      tapped: taps.has(name),
      total: store.totals.get(name) ?? 0,
      rate: rates[name] ?? new Array(60).fill(0),
    }));
    const reg = await registry().catch(() => ({ partners: [], instances: [] }));
    return {
      at: new Date().toISOString(),
      functions,
      emulators,
      bridge: deps.bridge(),
      topics,
      kept: store.size,
      ...reg,
    };
  };
  const ticker = setInterval(() => {
    if (clients.size)
      overview().then(
        (o) => send('overview', o),
        () => {},
      );
  }, 2000);

  const projection = async (studentId: string, topic: string) => {
    if (!deps.firestore) return undefined;
    const snap = await deps.firestore
      .collection('students')
      .doc(studentId)
      .collection('topics')
      .doc(topic)
      .get();
    return snap.exists
      ? { data: snap.data() as Record<string, unknown>, writtenAt: snap.updateTime!.toDate() }
      : undefined;
  };

  /** warnings and errors of the functions' logs about these ce-ids or this trace (the tail of each file) */
  const logLines = (ceIds: Set<string>, traceIds: Set<string>) => {
    if (!deps.logDir) return [];
    const out: Array<Omit<Hop, 'sinceStartMs' | 'sincePrevMs'>> = [];
    let files: string[] = [];
    try {
      files = readdirSync(deps.logDir).filter((f) => f.startsWith('fn-') && f.endsWith('.log'));
    } catch {
      return out;
    }
    for (const f of files) {
      for (const line of tailOf(join(deps.logDir, f), 2 * 1024 * 1024).split('\n')) {
        if (!line.startsWith('{') || !/"severity":"(WARNING|ERROR|CRITICAL)"/.test(line)) continue;
        try {
          const l = JSON.parse(line) as Record<string, unknown>;
          const trace =
            String(l['logging.googleapis.com/trace'] ?? '')
              .split('/')
              .pop() ?? '';
          const ce = typeof l.ceId === 'string' ? rootCeId(l.ceId) : undefined;
          if (!(ce && ceIds.has(ce)) && !traceIds.has(trace)) continue;
          out.push({
            hop: `log ${String(l.severity).toLowerCase()}`,
            at: String(l.time),
            detail: `${f.slice(3, -4)}: ${String(l.message ?? '')}${l.err ? ` (${String(l.err)})` : ''}`,
            ceId: typeof l.ceId === 'string' ? l.ceId : undefined,
          });
        } catch {
          // a partial first line of the tail
        }
      }
    }
    return out;
  };

  const follow = async (rawId: string, learner?: string) => {
    const id = rawId.trim();
    const roots = new Set<string>();
    let traceId: string | undefined;
    if (TRACE_ID.test(id)) {
      traceId = id.toLowerCase();
      for (const e of store.byTrace(traceId)) if (e.ceId) roots.add(rootCeId(e.ceId));
    } else if (learner) roots.add(clientEventId(learner, id));
    else roots.add(rootCeId(id));
    type Row = {
      ce_id: string;
      event_id: string;
      student_id: string;
      topic: string;
      kind: string;
      applied_at: Date;
      mastery_after: number;
    };
    const rows = new Map<string, Row>();
    if (pool) {
      // by ce-id, or by the client's own id (of this learner, or any learner when none is given)
      const r = await pool.query<Row>(
        `SELECT ce_id, event_id, student_id, topic, kind, applied_at, mastery_after::float8 AS mastery_after
           FROM interactions
          WHERE ce_id = ANY($1) OR (NOT $4 AND event_id = $2 AND ($3::text IS NULL OR student_id = $3))
          LIMIT 20`,
        [[...roots], id, learner ?? null, Boolean(traceId)],
      );
      for (const row of r.rows) {
        rows.set(row.ce_id, row);
        roots.add(row.ce_id);
      }
    }
    const interactions = [];
    for (const root of [...roots].slice(0, 20)) {
      const seen = store.byCeId(root);
      const row = rows.get(root);
      const received = seen.find((e) => e.topic === 'learnflow.interaction.received');
      const studentId =
        row?.student_id ?? (received?.data?.studentId as string | undefined) ?? received?.learner;
      const topic = row?.topic ?? (received?.data?.topic as string | undefined);
      const hops: Array<Omit<Hop, 'sinceStartMs' | 'sincePrevMs'>> = seen.map(hopOf);
      if (row)
        hops.push({
          hop: 'ledger',
          at: row.applied_at.toISOString(),
          detail: `PostgreSQL interactions row ${row.event_id} (${row.kind}), mastery after ${row.mastery_after}`,
        });
      if (studentId && topic) {
        const p = await projection(studentId, topic).catch(() => undefined);
        if (p) {
          const progressVersion = seen.find((e) => e.topic === 'learnflow.progress.updated')?.data?.version;
          const later =
            typeof progressVersion === 'number' && Number(p.data.version) > progressVersion
              ? ', since updated by a later interaction'
              : '';
          hops.push({
            hop: 'projection',
            at: p.writtenAt.toISOString(),
            detail: `Firestore students/${studentId}/topics/${topic}: mastery ${String(p.data.mastery)}, version ${String(p.data.version)}, updatedAt ${String(p.data.updatedAt)}${later}`,
          });
        }
      }
      const traces = new Set(seen.map((e) => e.traceId).filter((t): t is string => Boolean(t)));
      hops.push(...logLines(new Set([root]), traces));
      if (!hops.length) continue;
      interactions.push({
        ceId: root,
        studentId,
        topic,
        traceIds: [...traces],
        hops: timeline(hops),
      });
    }
    return { query: { id, learner, traceId }, kept: store.size, interactions };
  };

  const learner = async (studentId: string) => {
    if (!pool) return { studentId, topics: [], snapshots: [], alerts: [], interactions: [] };
    const [topics, snapshots, alerts, interactions] = await Promise.all([
      pool.query(
        `SELECT topic, mastery::float8 AS mastery, level, version::int AS version, updated_at
           FROM topic_state WHERE student_id = $1 ORDER BY topic`,
        [studentId],
      ),
      pool.query(
        `SELECT topic, to_char(day, 'YYYY-MM-DD') AS day, mastery::float8 AS mastery, level
           FROM mastery_snapshots WHERE student_id = $1 ORDER BY day, topic`,
        [studentId],
      ),
      pool.query(
        `SELECT topic, reason, to_char(day, 'YYYY-MM-DD') AS day, detail, event_id, detected_at
           FROM struggle_alerts WHERE student_id = $1 ORDER BY detected_at DESC LIMIT 50`,
        [studentId],
      ),
      pool.query(
        `SELECT event_id, ce_id, topic, kind, occurred_at, applied_at, mastery_after::float8 AS mastery_after
           FROM interactions WHERE student_id = $1 ORDER BY occurred_at DESC LIMIT 20`,
        [studentId],
      ),
    ]);
    return {
      studentId,
      topics: topics.rows,
      snapshots: snapshots.rows,
      alerts: alerts.rows,
      interactions: interactions.rows,
    };
  };

  const learners = async () =>
    pool
      ? (
          await pool.query(
            `SELECT student_id, count(*)::int AS interactions, max(applied_at) AS last
               FROM interactions GROUP BY student_id ORDER BY last DESC LIMIT 50`,
          )
        ).rows
      : [];

  // Listing holds the dead letters' leases while it pulls (~1.5 s): a replay during a listing would not
  // see them, so the console does one dead-letter operation at a time.
  let deadLetterQueue: Promise<unknown> = Promise.resolve();
  const oneAtATime = <T>(op: () => Promise<T>): Promise<T> => {
    const run = deadLetterQueue.then(op, op);
    deadLetterQueue = run.catch(() => {});
    return run;
  };

  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const problem = (res: http.ServerResponse, status: number, detail: string) => {
    res.writeHead(status, { 'content-type': 'application/problem+json' });
    res.end(JSON.stringify({ type: 'about:blank', title: http.STATUS_CODES[status], status, detail }));
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://console');
    const route = `${req.method} ${url.pathname}`;
    const fail = (err: Error) => problem(res, 500, err.message);
    if (req.method === 'GET' && PAGES.includes(url.pathname)) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
      return;
    }
    if (route === 'GET /api/overview') return void overview().then((o) => json(res, 200, o), fail);
    if (route === 'GET /api/tail') return json(res, 200, store.recent(500));
    if (route === 'GET /api/follow') {
      const id = url.searchParams.get('id');
      if (!id?.trim())
        return problem(res, 400, 'id: give an interaction id (with learner), a ce-id or a trace id');
      return void follow(id, url.searchParams.get('learner')?.trim() || undefined).then(
        (f) => json(res, 200, f),
        fail,
      );
    }
    if (route === 'GET /api/learners') return void learners().then((l) => json(res, 200, l), fail);
    if (route === 'GET /api/learner') {
      const id = url.searchParams.get('id')?.trim();
      if (!id) return problem(res, 400, 'id: give a learner id');
      return void learner(id).then((l) => json(res, 200, l), fail);
    }
    if (route === 'GET /api/deadletters') {
      return void oneAtATime(async () => {
        const p = await pullAll(deps.pubsub);
        await p.release(p.messages.map((m) => m.ackId));
        await p.close();
        return p.messages.map(({ data, ackId, attributes, ...m }) => m);
      }).then((list) => json(res, 200, list), fail);
    }
    if (route === 'POST /api/deadletters/replay') {
      if (req.headers['x-ldr-console'] !== '1')
        return problem(res, 403, 'the x-ldr-console header is required');
      const id = url.searchParams.get('id') ?? undefined;
      return void oneAtATime(async () => {
        // A released lease comes back only after the subscription's retry back-off (the listing just
        // released every dead letter): one named dead letter is looked for again until it is back.
        const deadline = Date.now() + 20_000;
        for (;;) {
          const r = await replay(deps.pubsub, deps.topology, id ? { id } : { all: true });
          if (!id || r.replayed.length || r.failed.length || Date.now() > deadline) return r;
        }
      })
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
    problem(res, 404, `no console route ${route}`);
  });
  // port 0: any free port (tests), chosen by the OS at listen, so nothing can take it in between
  if (deps.port && (await portOpen(deps.port))) throw new Error(`port ${deps.port} (console) is in use`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(deps.port, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    /** what the taps hold (tests) */
    seen: (ceId: string): Seen[] => store.byCeId(ceId),
    async stop() {
      stopping = true;
      clearInterval(ticker);
      clearInterval(syncer);
      for (const c of clients) c.end();
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
      const subs = [...taps.values()];
      await Promise.all(subs.map((s) => s.close().catch(() => {})));
      await Promise.all(subs.map((s) => s.delete().catch(() => {})));
      await pool?.end().catch(() => {});
    },
  };
}

/** the last `bytes` of a file (log files grow; the console looks at recent lines) */
function tailOf(path: string, bytes: number) {
  let fd: number | undefined;
  try {
    const size = statSync(path).size;
    const start = Math.max(0, size - bytes);
    const buf = Buffer.alloc(size - start);
    fd = openSync(path, 'r');
    readSync(fd, buf, 0, buf.length, start);
    return buf.toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const PAGES = ['/', '/tail', '/follow', '/deadletters', '/learner'];

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lerning-Data-Room console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1rem 2rem;color:#222}
h1{font-size:1.3rem;margin-bottom:.3rem}h2{font-size:1.05rem;margin-top:1.5rem}
nav a{margin-right:1rem}nav a.here{font-weight:bold;text-decoration:none;color:#222}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left;font-variant-numeric:tabular-nums;vertical-align:top}
.ok{color:#0a7a2f}.bad{color:#b00020}.muted{color:#777}code{font-size:12px}
#tailLines{font:12px ui-monospace,monospace;max-height:36rem;overflow:auto;background:#f7f7f7;padding:.5rem}
input{margin-right:.5rem}section{display:none}section.here{display:block}
svg.spark polyline{fill:none;stroke:#2a62c9;stroke-width:1.2}
.hop td:first-child{font-weight:600}
</style></head><body>
<h1>Lerning-Data-Room <span id="state" class="bad">connecting…</span></h1>
<nav><a href="/" data-page="overview">Overview</a><a href="/tail" data-page="tail">Live tail</a><a href="/follow" data-page="follow">Follow one event</a><a href="/deadletters" data-page="deadletters">Dead letters</a><a href="/learner" data-page="learner">Learner</a></nav>

<section id="overview">
<h2>Functions</h2><table id="functions"><thead><tr><th>function</th><th>health</th><th>pid</th><th>port</th><th>restarts</th><th>requests</th><th>4xx</th><th>errors</th></tr></thead><tbody></tbody></table>
<h2>Topics <span class="muted">(messages per second, last minute, as the console's taps saw them)</span></h2>
<table id="topics"><thead><tr><th>topic</th><th>last 60 s</th><th>now /s</th><th>seen</th></tr></thead><tbody></tbody></table>
<h2>Emulators and services</h2><table id="emulators"><tbody></tbody></table>
<h2>Bridge (push deliveries)</h2><table id="bridge"><tbody></tbody></table>
<h2>Partners</h2><table id="partners"><thead><tr><th>slug</th><th>name</th><th>instances</th><th>sponsors</th><th>event types</th><th>shares content</th></tr></thead><tbody></tbody></table>
<h2>App-instances</h2><table id="instances"><thead><tr><th>id</th><th>name</th></tr></thead><tbody></tbody></table>
</section>

<section id="tail">
<h2>Live tail</h2>
<label>topic <input id="fTopic"></label><label>type <input id="fType"></label><label>learner <input id="fLearner"></label><label>instance <input id="fInstance"></label><label>any text <input id="fText"></label>
<div id="tailLines"></div>
</section>

<section id="follow">
<h2>Follow one event</h2>
<form id="followForm"><label>interaction id, ce-id or trace id <input id="followId" size="40"></label><label>learner (with a client id) <input id="followLearner"></label><button>follow</button></form>
<p class="muted" id="followNote"></p>
<div id="followOut"></div>
</section>

<section id="deadletters">
<h2>Dead letters <button id="refresh">refresh</button> <button id="replayAll">replay all</button></h2>
<table id="deadletterTable"><thead><tr><th>id</th><th>time</th><th>from</th><th>attempts</th><th>ce-id</th><th>type</th><th>reason</th><th></th></tr></thead><tbody></tbody></table>
<p id="replayNote" class="muted"></p>
</section>

<section id="learner">
<h2>Learner</h2>
<form id="learnerForm"><label>learner id <input id="learnerId" size="30"></label><button>show</button></form>
<div id="learnerOut"></div>
<h2>Recent learners</h2><table id="learners"><thead><tr><th>learner</th><th>interactions</th><th>last applied</th></tr></thead><tbody></tbody></table>
</section>

<script>
const $ = (s) => document.querySelector(s);
const esc = (v) => String(v ?? '-').replace(/[&<>"]/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const rows = (sel, list) => { $(sel + ' tbody').innerHTML = list.join(''); };
const page = ({'/': 'overview', '/tail': 'tail', '/follow': 'follow', '/deadletters': 'deadletters', '/learner': 'learner'})[location.pathname] || 'overview';
$('#' + page).classList.add('here');
document.querySelector('nav a[data-page="' + page + '"]').classList.add('here');
const params = new URLSearchParams(location.search);

function spark(values) {
  const max = Math.max(1, ...values), w = 180, h = 24;
  const pts = values.map((v, i) => (i * w / (values.length - 1)).toFixed(1) + ',' + (h - 1 - v * (h - 2) / max).toFixed(1)).join(' ');
  return '<svg class="spark" width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + ' ' + h + '"><polyline points="' + pts + '"/></svg>';
}
function overview(o) {
  rows('#functions', o.functions.map((f) => '<tr data-fn="' + esc(f.name) + '"><td>' + esc(f.name) + '</td><td class="' + (f.health === 'ok' ? 'ok' : 'bad') + '">' + esc(f.health) + '</td><td>' + f.pid + '</td><td>' + f.port + '</td><td>' + f.restarts + '</td><td>' + f.requests + '</td><td>' + f.clientErrors + '</td><td class="' + (f.errors ? 'bad' : '') + '">' + f.errors + '</td></tr>'));
  rows('#topics', o.topics.map((t) => '<tr data-topic="' + esc(t.name) + '"><td>' + esc(t.name) + (t.tapped ? '' : ' <span class="bad">not tapped</span>') + '</td><td>' + spark(t.rate) + '</td><td>' + t.rate[t.rate.length - 1] + '</td><td>' + t.total + '</td></tr>'));
  rows('#emulators', Object.entries(o.emulators).map(([n, p]) => '<tr><td>' + esc(n) + '</td><td>pid ' + p.pid + '</td></tr>'));
  rows('#bridge', Object.entries(o.bridge).map(([k, v]) => '<tr><td>' + esc(k) + '</td><td>' + v + '</td></tr>'));
  rows('#partners', o.partners.map((p) => '<tr><td>' + esc(p.slug) + '</td><td>' + esc(p.displayName) + '</td><td>' + esc((p.instances || []).join(', ')) + '</td><td>' + esc((p.sponsors || []).join(', ')) + '</td><td>' + esc((p.eventTypes || []).join(', ')) + '</td><td>' + (p.shareContent ? 'yes' : 'no') + '</td></tr>'));
  rows('#instances', o.instances.map((i) => '<tr><td>' + esc(i.id) + '</td><td>' + esc(i.displayName) + '</td></tr>'));
}

// live tail
const shown = [];
function matches(e) {
  const has = (sel, v) => { const f = $(sel).value; return !f || String(v || '').includes(f); };
  return has('#fTopic', e.topic) && has('#fType', e.type) && has('#fLearner', e.learner) && has('#fInstance', e.instance) && has('#fText', JSON.stringify(e));
}
function renderTail() {
  if (page !== 'tail') return;
  $('#tailLines').innerHTML = shown.filter(matches).slice(-300).reverse().map((e) => '<div>' + esc(e.time.slice(11, 23)) + ' ' + esc(e.topic) + ' ' + esc(e.type) + ' ce-id=<a href="/follow?id=' + encodeURIComponent(e.ceId || '') + '">' + esc(e.ceId) + '</a> learner=' + esc(e.learner) + ' instance=' + esc(e.instance) + (e.reason ? ' reason=' + esc(e.reason) : '') + '</div>').join('');
}
for (const i of ['#fTopic', '#fType', '#fLearner', '#fInstance', '#fText']) $(i).addEventListener('input', renderTail);
if (page === 'tail') fetch('/api/tail').then((r) => r.json()).then((l) => { shown.push(...l); renderTail(); });

// follow one event
async function follow() {
  const id = $('#followId').value.trim(), learner = $('#followLearner').value.trim();
  if (!id) return;
  history.replaceState(null, '', '/follow?id=' + encodeURIComponent(id) + (learner ? '&learner=' + encodeURIComponent(learner) : ''));
  const r = await (await fetch('/api/follow?id=' + encodeURIComponent(id) + (learner ? '&learner=' + encodeURIComponent(learner) : ''))).json();
  $('#followNote').textContent = (r.query.traceId ? 'trace ' + r.query.traceId + ': ' : '') + r.interactions.length + ' interaction(s); the taps hold the last ' + r.kept + ' messages';
  $('#followOut').innerHTML = r.interactions.map((i) => '<h3>ce-id ' + esc(i.ceId) + ' <span class="muted">learner ' + esc(i.studentId) + ', topic ' + esc(i.topic) + (i.traceIds.length ? ', trace ' + esc(i.traceIds.join(' ')) : '') + '</span></h3>' +
    '<table class="hops"><thead><tr><th>hop</th><th>at</th><th>+ since previous</th><th>+ since received</th><th>topic</th><th>detail</th></tr></thead><tbody>' +
    i.hops.map((h) => '<tr class="hop" data-hop="' + esc(h.hop) + '"><td>' + esc(h.hop) + '</td><td>' + esc(h.at.slice(11, 23)) + '</td><td>' + h.sincePrevMs + ' ms</td><td>' + h.sinceStartMs + ' ms</td><td>' + esc(h.topic) + '</td><td>' + esc(h.detail) + (h.ceId ? ' <code>' + esc(h.ceId) + '</code>' : '') + '</td></tr>').join('') + '</tbody></table>').join('') || '<p>Nothing found: the taps, the ledger and the logs know no such event.</p>';
}
$('#followForm').addEventListener('submit', (e) => { e.preventDefault(); follow(); });
if (page === 'follow' && params.get('id')) { $('#followId').value = params.get('id'); $('#followLearner').value = params.get('learner') || ''; follow(); }

// dead letters
async function deadLetters() {
  const list = await (await fetch('/api/deadletters')).json();
  rows('#deadletterTable', list.map((d) => '<tr data-id="' + esc(d.id) + '" data-ce-id="' + esc(d.ceId) + '"><td>' + esc(d.id) + '</td><td>' + esc(d.time) + '</td><td>' + esc(d.source) + '</td><td>' + esc(d.attempts) + '</td><td>' + esc(d.ceId) + '</td><td>' + esc(d.type) + '</td><td>' + esc(d.reason) + '</td><td><button data-id="' + esc(d.id) + '">replay</button></td></tr>'));
  $('#deadletterTable').dataset.loaded = String(Date.now());
}
async function replay(id) {
  const r = await (await fetch('/api/deadletters/replay' + (id ? '?id=' + encodeURIComponent(id) : ''), { method: 'POST', headers: { 'x-ldr-console': '1' } })).json();
  $('#replayNote').textContent = (r.replayed || []).length + ' replayed, ' + (r.failed || []).length + ' failed';
  await deadLetters();
}
$('#deadletterTable').addEventListener('click', (e) => { if (e.target.dataset.id) replay(e.target.dataset.id); });
$('#refresh').onclick = deadLetters;
$('#replayAll').onclick = () => replay();
if (page === 'deadletters') deadLetters();

// learner
const colors = ['#2a62c9', '#c9302a', '#2a9c4a', '#b07a00', '#7a2ac9', '#00838f'];
function chart(snapshots) {
  const days = [...new Set(snapshots.map((s) => s.day))].sort();
  const topics = [...new Set(snapshots.map((s) => s.topic))];
  const W = 640, H = 240, L = 40, B = 30, T = 10, R = 10;
  const x = (d) => L + (days.length < 2 ? (W - L - R) / 2 : days.indexOf(d) * (W - L - R) / (days.length - 1));
  const y = (m) => T + (100 - m) * (H - T - B) / 100;
  let s = '<svg id="masteryChart" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + ' ' + H + '" role="img" aria-label="mastery per topic over time">';
  for (const g of [0, 40, 70, 90, 100]) s += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + y(g) + '" y2="' + y(g) + '" stroke="#ddd"/><text x="4" y="' + (y(g) + 4) + '" font-size="11">' + g + '</text>';
  days.forEach((d) => { s += '<text x="' + x(d) + '" y="' + (H - 10) + '" font-size="11" text-anchor="middle">' + esc(d.slice(5)) + '</text>'; });
  topics.forEach((t, k) => {
    const pts = snapshots.filter((p) => p.topic === t);
    const c = colors[k % colors.length];
    s += '<polyline fill="none" stroke="' + c + '" stroke-width="2" points="' + pts.map((p) => x(p.day) + ',' + y(p.mastery)).join(' ') + '"/>';
    for (const p of pts) s += '<circle cx="' + x(p.day) + '" cy="' + y(p.mastery) + '" r="3.5" fill="' + c + '"><title>' + esc(t + ' ' + p.day + ': ' + p.mastery) + '</title></circle>';
    s += '<text x="' + (L + 8) + '" y="' + (T + 14 + 14 * k) + '" font-size="12" fill="' + c + '">' + esc(t) + '</text>';
  });
  return s + '</svg>';
}
async function showLearner(id) {
  history.replaceState(null, '', '/learner?id=' + encodeURIComponent(id));
  const l = await (await fetch('/api/learner?id=' + encodeURIComponent(id))).json();
  $('#learnerOut').innerHTML = '<h3>' + esc(l.studentId) + '</h3>' +
    (l.snapshots.length ? chart(l.snapshots) : '<p>No mastery snapshots.</p>') +
    '<h3>Topics now</h3><table id="learnerTopics"><thead><tr><th>topic</th><th>mastery</th><th>level</th><th>version</th><th>updated</th></tr></thead><tbody>' +
    l.topics.map((t) => '<tr data-topic="' + esc(t.topic) + '"><td>' + esc(t.topic) + '</td><td class="mastery">' + esc(t.mastery) + '</td><td>' + esc(t.level) + '</td><td>' + t.version + '</td><td>' + esc(t.updated_at) + '</td></tr>').join('') + '</tbody></table>' +
    '<h3>Alerts</h3><table id="learnerAlerts"><thead><tr><th>day</th><th>topic</th><th>reason</th><th>detail</th></tr></thead><tbody>' +
    l.alerts.map((a) => '<tr><td>' + esc(a.day) + '</td><td>' + esc(a.topic) + '</td><td>' + esc(a.reason) + '</td><td>' + esc(a.detail) + '</td></tr>').join('') + '</tbody></table>' +
    '<h3>Recent interactions</h3><table><thead><tr><th>occurred</th><th>topic</th><th>kind</th><th>mastery after</th><th>id</th></tr></thead><tbody>' +
    l.interactions.map((i) => '<tr><td>' + esc(i.occurred_at) + '</td><td>' + esc(i.topic) + '</td><td>' + esc(i.kind) + '</td><td>' + esc(i.mastery_after) + '</td><td><a href="/follow?id=' + encodeURIComponent(i.ce_id) + '">' + esc(i.event_id) + '</a></td></tr>').join('') + '</tbody></table>';
}
$('#learnerForm').addEventListener('submit', (e) => { e.preventDefault(); const id = $('#learnerId').value.trim(); if (id) showLearner(id); });
if (page === 'learner') {
  fetch('/api/learners').then((r) => r.json()).then((list) => rows('#learners', list.map((l) => '<tr><td><a href="/learner?id=' + encodeURIComponent(l.student_id) + '">' + esc(l.student_id) + '</a></td><td>' + l.interactions + '</td><td>' + esc(l.last) + '</td></tr>')));
  if (params.get('id')) { $('#learnerId').value = params.get('id'); showLearner(params.get('id')); }
}

// live: overview and tail over server-sent events
const es = new EventSource('/api/events');
es.addEventListener('overview', (m) => { overview(JSON.parse(m.data)); $('#state').textContent = 'live'; $('#state').className = 'ok'; });
es.addEventListener('tail', (m) => { shown.push(JSON.parse(m.data)); if (shown.length > 2000) shown.shift(); renderTail(); });
es.onerror = () => { $('#state').textContent = 'disconnected'; $('#state').className = 'bad'; };
</script></body></html>
`;
