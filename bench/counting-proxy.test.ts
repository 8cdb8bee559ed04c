import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { pgFrontendCounter, protoFields, startCountingProxies } from './counting-proxy.ts';

const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
/** a typed frontend message: type byte, length (itself included), body */
const msg = (type: string, body = Buffer.alloc(0)) =>
  Buffer.concat([Buffer.from(type), int32(4 + body.length), body]);
/** an untyped one (startup phase): length, code, rest */
const untyped = (code: number, rest = Buffer.alloc(0)) =>
  Buffer.concat([int32(8 + rest.length), int32(code), rest]);

describe('pgFrontendCounter', () => {
  it('skips SSLRequest and the startup message, then counts each typed message, across any chunking', () => {
    const stream = Buffer.concat([
      untyped(80877103), // SSLRequest (answered `N` by the server, then the startup follows)
      untyped(196608, Buffer.from('user\0postgres\0database\0ldr\0\0')),
      msg('p', Buffer.from('secret\0')),
      msg('Q', Buffer.from('BEGIN\0')),
      msg('P', Buffer.from('\0SELECT $1\0\0\0')),
      msg('B', Buffer.alloc(12)),
      msg('D', Buffer.from('P\0')),
      msg('E', Buffer.alloc(5)),
      msg('S'),
      msg('Q', Buffer.from('COMMIT\0')),
      msg('X'),
    ]);
    for (const size of [1, 3, 7, stream.length]) {
      const seen: string[] = [];
      const push = pgFrontendCounter((t) => seen.push(t));
      for (let i = 0; i < stream.length; i += size) push(stream.subarray(i, i + size));
      expect(seen.join('')).toBe('pQPBDESQX');
    }
  });
});

describe('protoFields', () => {
  it('lists the top-level fields, with the payload of length-delimited ones', () => {
    // field 1 (string "t"), field 2 ×2 (messages), field 3 varint 300, field 4 fixed64, field 5 fixed32
    const buf = Buffer.from([
      0x0a, 0x01, 0x74, 0x12, 0x02, 0x0a, 0x00, 0x12, 0x00, 0x18, 0xac, 0x02, 0x21, 1, 2, 3, 4, 5, 6, 7, 8,
      0x2d, 1, 2, 3, 4,
    ]);
    const f = protoFields(buf);
    expect(f.get(1)).toEqual([Buffer.from('t')]);
    expect(f.get(2)).toEqual([Buffer.from([0x0a, 0x00]), Buffer.alloc(0)]);
    expect([...f.keys()]).toEqual([1, 2, 3, 4, 5]);
    expect(() => protoFields(Buffer.from([0x12, 0x05, 0x00]))).toThrow(/truncated/);
  });
});

describe('the gRPC proxy when its upstream goes away (the bench restarts Pub/Sub)', () => {
  /** an h2c upstream answering every stream 200 "ok", as an emulator would answer a call */
  async function upstream(port = 0) {
    const server = http2.createServer();
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on('session', (s) => sessions.add(s));
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    return {
      port: (server.address() as AddressInfo).port,
      /** as the emulator shutting down: GOAWAY on its connections (kept open), no new ones */
      goaway: () => {
        for (const s of sessions) s.goaway();
        server.close();
      },
      stop: () =>
        new Promise<void>((r) => {
          for (const s of sessions) s.destroy();
          if (server.listening) server.close(() => r());
          else r();
        }),
    };
  }
  const call = (client: http2.ClientHttp2Session) =>
    new Promise<string>((resolve, reject) => {
      const req = client.request({ ':path': '/google.pubsub.v1.Publisher/Publish', ':method': 'POST' });
      let body = '';
      req.on('data', (d: Buffer) => {
        body += d.toString();
      });
      req.on('end', () => resolve(body));
      req.on('error', reject);
      req.end();
    });

  it('closes the client’s session with it, so the client reconnects to the new upstream', async () => {
    const first = await upstream();
    const proxies = await startCountingProxies({
      upstreams: { pubsub: first.port, firestore: first.port, postgres: first.port },
      labels: ['fn'],
    });
    try {
      const client = http2.connect(`http://127.0.0.1:${proxies.ports.fn!.pubsub}`);
      const closed = new Promise<void>((r) => client.once('close', () => r()));
      client.on('error', () => {});
      expect(await call(client)).toBe('ok');
      first.goaway(); // the emulator goes away
      const second = await upstream(first.port); // and comes back on its port
      try {
        // the proxy must not keep the old client session open, refusing every later call on it
        const deadline = new Promise<'open'>((r) => setTimeout(() => r('open'), 5_000).unref());
        await call(client).catch(() => {});
        expect(await Promise.race([closed.then(() => 'closed' as const), deadline])).toBe('closed');
        const again = http2.connect(`http://127.0.0.1:${proxies.ports.fn!.pubsub}`);
        again.on('error', () => {});
        expect(await call(again)).toBe('ok');
        again.close();
      } finally {
        await second.stop();
      }
    } finally {
      await first.stop();
      await proxies.stop();
    }
  });
});
