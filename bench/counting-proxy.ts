/**
 * Bench-only counting proxies (issue 14: operations per event counted, not estimated). The function workers
 * of the bench's suite talk to these instead of the emulators and PostgreSQL (bench/suite-process.ts points
 * their PUBSUB_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST and DATABASE_URL here); everything is forwarded
 * unchanged, and counted on the way:
 * - gRPC (h2c, node:http2), per `:path`: requests, request and response message bytes, failed calls; Pub/Sub
 *   publish requests, messages and billable bytes (max(1,000, request bytes) per request, bench/prices.json);
 *   Firestore billable reads and writes, counted in documents by walking just enough of the protobuf.
 * - PostgreSQL (TCP), from the frontend protocol: each simple query (`Q`) and each Sync (`S`, the end of an
 *   extended-protocol query) is one round trip.
 * Each label (a function's name) gets its own listeners, so the counts are per function; `stats()` and the
 * HTTP endpoint (`GET {url}`) answer them as JSON.
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import zlib from 'node:zlib';

/** Pub/Sub bills at least this many bytes per publish request (bench/prices.json). */
export const PUBSUB_MIN_BILLABLE_BYTES = 1000;

export interface RpcCount {
  requests: number;
  /** gRPC message bytes sent by the client (without the 5-byte frame headers) */
  requestBytes: number;
  responseBytes: number;
  /** calls that ended with a non-zero grpc-status or were reset */
  failed: number;
}

export interface Counts {
  grpc: Record<string, RpcCount>;
  /** Publish requests that succeeded (billed), their messages and bytes; the failed ones apart */
  pubsub: {
    publishRequests: number;
    messages: number;
    requestBytes: number;
    billableBytes: number;
    failedRequests: number;
  };
  /**
   * Billable Firestore operations: a read per document returned by BatchGetDocuments (found or missing),
   * RunQuery (at least one per query) or GetDocument/ListDocuments, one per aggregation query; a write per
   * Write in a successful Commit/BatchWrite (deletes apart), CreateDocument or UpdateDocument.
   */
  firestore: { reads: number; writes: number; deletes: number };
  postgres: {
    connections: number;
    /** simple queries + syncs */
    roundTrips: number;
    byType: Record<string, number>;
  };
}

export interface CountsSnapshot {
  total: Counts;
  byLabel: Record<string, Counts>;
}

export interface Upstreams {
  pubsub: number;
  firestore: number;
  postgres: number;
}

export interface LabelPorts {
  pubsub: number;
  firestore: number;
  postgres: number;
}

export interface CountingProxies {
  /** the stats endpoint: GET answers a CountsSnapshot */
  url: string;
  ports: Record<string, LabelPorts>;
  stats(): CountsSnapshot;
  stop(): Promise<void>;
}

export const emptyCounts = (): Counts => ({
  grpc: {},
  pubsub: { publishRequests: 0, messages: 0, requestBytes: 0, billableBytes: 0, failedRequests: 0 },
  firestore: { reads: 0, writes: 0, deletes: 0 },
  postgres: { connections: 0, roundTrips: 0, byType: {} },
});

// ---- protobuf: just enough to count repeated fields ------------------------------------------------------

/** The top-level fields of a protobuf message: field number → the length-delimited payloads (others: empty). */
export function protoFields(buf: Buffer): Map<number, Buffer[]> {
  const out = new Map<number, Buffer[]>();
  let i = 0;
  const varint = () => {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    let value: Buffer = Buffer.alloc(0);
    if (wire === 0) varint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = varint();
      value = buf.subarray(i, i + len);
      i += len;
    } else throw new Error(`unsupported wire type ${wire}`);
    if (i > buf.length) throw new Error('truncated field');
    const list = out.get(field) ?? [];
    list.push(value);
    out.set(field, list);
  }
  return out;
}

const count = (fields: Map<number, Buffer[]>, n: number) => fields.get(n)?.length ?? 0;

/** Reads gRPC length-prefixed messages out of a byte stream. */
class GrpcFramer {
  private pending: Buffer = Buffer.alloc(0);
  constructor(
    private readonly compressed: string | undefined,
    private readonly onMessage: (message: Buffer | undefined, length: number) => void,
  ) {}
  push(chunk: Buffer) {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (this.pending.length >= 5) {
      const length = this.pending.readUInt32BE(1);
      if (this.pending.length < 5 + length) return;
      const flag = this.pending[0];
      let message: Buffer | undefined = this.pending.subarray(5, 5 + length);
      if (flag === 1) message = this.compressed === 'gzip' ? zlib.gunzipSync(message) : undefined;
      this.onMessage(message, length);
      this.pending = this.pending.subarray(5 + length);
    }
  }
}

const PUBLISH = '/google.pubsub.v1.Publisher/Publish';
const FS = '/google.firestore.v1.Firestore/';

/** What one call adds to the counts, decided from its messages and its status. */
function callCounter(path: string, c: Counts) {
  let writes = 0;
  let deletes = 0;
  let docs = 0;
  let published: { messages: number; bytes: number } | undefined;
  const onRequest = (m: Buffer) => {
    if (path === PUBLISH) published = { messages: count(protoFields(m), 2), bytes: m.length };
    else if (path === `${FS}Commit` || path === `${FS}BatchWrite`) {
      for (const w of protoFields(m).get(2) ?? []) {
        if (protoFields(w).has(2)) deletes++;
        else writes++;
      }
    } else if (path === `${FS}CreateDocument` || path === `${FS}UpdateDocument`) writes++;
    else if (path === `${FS}DeleteDocument`) deletes++;
  };
  const onResponse = (m: Buffer) => {
    if (path === `${FS}BatchGetDocuments`) {
      const f = protoFields(m);
      docs += count(f, 1) + count(f, 2);
    } else if (path === `${FS}RunQuery`) docs += count(protoFields(m), 1);
    else if (path === `${FS}ListDocuments`) docs += count(protoFields(m), 1);
  };
  const onEnd = (ok: boolean) => {
    if (path === `${FS}BatchGetDocuments`) c.firestore.reads += docs;
    else if (path === `${FS}RunQuery` || path === `${FS}ListDocuments`)
      c.firestore.reads += Math.max(1, docs);
    else if (path === `${FS}GetDocument` || path === `${FS}RunAggregationQuery`) c.firestore.reads += 1;
    if (path === PUBLISH && !ok) c.pubsub.failedRequests++;
    if (published && ok) {
      c.pubsub.publishRequests++;
      c.pubsub.messages += published.messages;
      c.pubsub.requestBytes += published.bytes;
      c.pubsub.billableBytes += Math.max(PUBSUB_MIN_BILLABLE_BYTES, published.bytes);
    }
    if (ok) {
      c.firestore.writes += writes;
      c.firestore.deletes += deletes;
    }
  };
  return { onRequest, onResponse, onEnd };
}

// ---- gRPC over h2c -------------------------------------------------------------------------------------

const HOP = new Set([':scheme', ':authority', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade']);
const strip = (h: http2.IncomingHttpHeaders, keepStatus: boolean) => {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (
      HOP.has(k) ||
      (k.startsWith(':') && !(keepStatus ? k === ':status' : k === ':path' || k === ':method'))
    )
      continue;
    out[k] = v;
  }
  return out;
};

function grpcProxy(upstreamPort: number, counts: Counts, totals: Counts) {
  // generous session memory: many small concurrent calls must not be refused by the proxy (ENHANCE_YOUR_CALM)
  const server = http2.createServer({ maxSessionMemory: 100 });
  const sessions = new Set<http2.Http2Session>();
  // one upstream connection per client connection, as the client would have had to the emulator
  const upstreamOf = new WeakMap<http2.Http2Session, http2.ClientHttp2Session>();
  const closeOf = new WeakMap<http2.Http2Session, () => void>();
  server.on('session', (session) => {
    const upstream = http2.connect(`http://127.0.0.1:${upstreamPort}`, { maxSessionMemory: 100 });
    upstreamOf.set(session, upstream);
    sessions.add(session);
    sessions.add(upstream);
    // the emulator went away (the bench restarts Pub/Sub) or the client did: the other side goes too
    const closeBoth = () => {
      if (!session.destroyed) session.destroy();
      if (!upstream.destroyed) upstream.destroy();
      sessions.delete(session);
      sessions.delete(upstream);
    };
    closeOf.set(session, closeBoth);
    upstream.on('error', closeBoth);
    upstream.on('close', closeBoth);
    // the emulator is going away: let the client reconnect (to a fresh upstream) instead of refusing each call
    upstream.on('goaway', closeBoth);
    session.on('error', closeBoth);
    session.on('close', closeBoth);
  });
  server.on('stream', (stream, headers) => forward(stream, headers));

  const forward = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const path = String(headers[':path']);
    const counters = [counts, totals].map((c) => {
      c.grpc[path] ??= { requests: 0, requestBytes: 0, responseBytes: 0, failed: 0 };
      c.grpc[path].requests++;
      return { rpc: c.grpc[path], call: callCounter(path, c) };
    });
    const up = upstreamOf.get(stream.session!);
    let ended = false;
    const end = (ok: boolean) => {
      if (ended) return;
      ended = true;
      for (const { rpc, call } of counters) {
        if (!ok) rpc.failed++;
        call.onEnd(ok);
      }
    };
    // an upstream that cannot take streams any more takes its client session with it, so the client
    // reconnects; refusing each call on a session that stays open would fail every later call too
    const refuse = () => {
      end(false);
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      closeOf.get(stream.session!)?.();
    };
    if (!up || up.destroyed || up.closed) {
      refuse();
      return;
    }
    let req: http2.ClientHttp2Stream;
    try {
      req = up.request(strip(headers, false), { endStream: false });
    } catch {
      refuse();
      return;
    }
    const inFramer = new GrpcFramer(headers['grpc-encoding'] as string | undefined, (m, length) => {
      for (const { rpc, call } of counters) {
        rpc.requestBytes += length;
        if (m) call.onRequest(m);
      }
    });
    stream.on('data', (chunk: Buffer) => inFramer.push(chunk));
    stream.pipe(req);
    let trailers: http2.OutgoingHttpHeaders = {};
    let status: string | undefined;
    req.on('response', (h) => {
      const outFramer = new GrpcFramer(h['grpc-encoding'] as string | undefined, (m, length) => {
        for (const { rpc, call } of counters) {
          rpc.responseBytes += length;
          if (m) call.onResponse(m);
        }
      });
      req.on('data', (chunk: Buffer) => outFramer.push(chunk));
      if (h['grpc-status'] !== undefined) {
        // trailers-only response (an error before any message)
        status = String(h['grpc-status']);
        if (!stream.destroyed) stream.respond(strip(h, true), { endStream: true });
        return;
      }
      if (!stream.destroyed) stream.respond(strip(h, true), { waitForTrailers: true });
      req.pipe(stream);
    });
    req.on('trailers', (t) => {
      status = t['grpc-status'] === undefined ? status : String(t['grpc-status']);
      trailers = strip(t, false);
    });
    stream.on('wantTrailers', () => stream.sendTrailers(trailers));
    req.on('close', () => {
      end(status === '0');
      if (!stream.destroyed && !stream.closed && req.rstCode) stream.close(req.rstCode);
    });
    stream.on('close', () => {
      if (!req.destroyed && !req.closed) req.close(stream.rstCode || http2.constants.NGHTTP2_CANCEL);
    });
    req.on('error', () => {});
    stream.on('error', () => {});
  };

  return {
    server,
    stop: async () => {
      for (const s of sessions) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

// ---- PostgreSQL ----------------------------------------------------------------------------------------

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;

/** Counts frontend messages of one connection: untyped until the startup message, typed after it. */
export function pgFrontendCounter(onMessage: (type: string) => void) {
  let pending: Buffer = Buffer.alloc(0);
  let started = false;
  return (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      if (!started) {
        if (pending.length < 8) return;
        const len = pending.readInt32BE(0);
        if (pending.length < len) return;
        const code = pending.readInt32BE(4);
        if (code !== SSL_REQUEST && code !== GSSENC_REQUEST) started = true;
        pending = pending.subarray(len);
        continue;
      }
      if (pending.length < 5) return;
      const len = pending.readInt32BE(1);
      if (pending.length < 1 + len) return;
      onMessage(String.fromCharCode(pending[0]!));
      pending = pending.subarray(1 + len);
    }
  };
}

function pgProxy(upstreamPort: number, counts: Counts, totals: Counts) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    for (const c of [counts, totals]) c.postgres.connections++;
    const counter = pgFrontendCounter((type) => {
      for (const c of [counts, totals]) {
        c.postgres.byType[type] = (c.postgres.byType[type] ?? 0) + 1;
        if (type === 'Q' || type === 'S') c.postgres.roundTrips++;
      }
    });
    client.on('data', counter);
    client.pipe(upstream);
    upstream.pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', close);
      s.on('close', close);
    }
  });
  return {
    server,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

// ---- the whole set -------------------------------------------------------------------------------------

const listen = (server: net.Server) =>
  new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });

/** One gRPC proxy per emulator and one PostgreSQL proxy per label, all on 127.0.0.1, free ports. */
export async function startCountingProxies(opts: {
  upstreams: Upstreams;
  labels: string[];
}): Promise<CountingProxies> {
  const total = emptyCounts();
  const byLabel: Record<string, Counts> = {};
  const ports: Record<string, LabelPorts> = {};
  const stops: Array<() => Promise<void>> = [];
  const stop = async () => {
    await Promise.all(stops.map((s) => s().catch(() => {})));
  };
  try {
    for (const label of opts.labels) {
      const c = emptyCounts();
      byLabel[label] = c;
      const pubsub = grpcProxy(opts.upstreams.pubsub, c, total);
      const firestore = grpcProxy(opts.upstreams.firestore, c, total);
      const postgres = pgProxy(opts.upstreams.postgres, c, total);
      stops.push(pubsub.stop, firestore.stop, postgres.stop);
      ports[label] = {
        pubsub: await listen(pubsub.server),
        firestore: await listen(firestore.server),
        postgres: await listen(postgres.server),
      };
    }
    const stats = (): CountsSnapshot => structuredClone({ total, byLabel });
    const endpoint = http.createServer((req, res) => {
      res.writeHead(req.method === 'GET' ? 200 : 405, { 'content-type': 'application/json' });
      res.end(req.method === 'GET' ? JSON.stringify(stats()) : '{}');
    });
    const port = await listen(endpoint);
    stops.push(async () => {
      endpoint.closeAllConnections();
      await new Promise<void>((r) => endpoint.close(() => r()));
    });
    return { url: `http://127.0.0.1:${port}/`, ports, stats, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** b − a, field by field (counters only grow). */
export function countsDelta(a: Counts, b: Counts): Counts {
  const sub = (x: unknown, y: unknown): unknown => {
    if (typeof y === 'number') return y - (typeof x === 'number' ? x : 0);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(y as Record<string, unknown>))
      out[k] = sub((x as Record<string, unknown> | undefined)?.[k], v);
    return out;
  };
  return sub(a, b) as Counts;
}
