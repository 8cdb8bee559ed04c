import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ping, type RedisServer, startRedisServer } from './redis-server.ts';

let dir: string;
const started: RedisServer[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** One inline command over a raw socket; the first line of the reply. */
function command(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    socket.setTimeout(2_000, () => {
      socket.destroy();
      reject(new Error(`no reply to ${line}`));
    });
    socket.once('error', reject);
    socket.once('connect', () => socket.write(`${line}\r\n`));
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      const end = reply.indexOf('\r\n');
      if (end >= 0) {
        socket.destroy();
        resolve(reply.slice(0, end));
      }
    });
  });
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ldr-redis-server-'));
});

afterAll(async () => {
  for (const server of started) await server.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('startRedisServer', () => {
  it('starts, answers PING, writes its pidfile and stops', async () => {
    const port = await freePort();
    const server = await startRedisServer({ port, dir });
    started.push(server);
    expect(await ping(port)).toBe(true);
    expect(Number(await readFile(path.join(dir, `redis-${port}.pid`), 'utf8'))).toBe(server.pid);
    await server.stop();
    expect(await ping(port)).toBe(false);
    await server.stop(); // idempotent
  });

  it('kills a stale redis-server named by a leftover pidfile', async () => {
    const port = await freePort();
    const pidfile = path.join(dir, `redis-${port}.pid`);
    // A "crashed run": a detached redis-server on the port we want, known only by its pidfile.
    const orphan = spawn(
      'redis-server',
      ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--pidfile', pidfile, '--dir', dir],
      { stdio: 'ignore', detached: true },
    );
    orphan.unref();
    await eventually(() => ping(port), 5_000);

    const server = await startRedisServer({ port, dir });
    started.push(server);
    expect(server.pid).not.toBe(orphan.pid);
    expect(() => process.kill(orphan.pid!, 0)).toThrow();
    expect(await ping(port)).toBe(true);
  });

  it('keeps what it stored across a stop and start in the same dir (a revoked jti stays revoked)', async () => {
    const port = await freePort();
    let server = await startRedisServer({ port, dir });
    started.push(server);
    expect(await command(port, 'SET revoked:jti:abc 1 EX 3600')).toBe('+OK');
    await server.stop();
    server = await startRedisServer({ port, dir });
    started.push(server);
    expect(await command(port, 'EXISTS revoked:jti:abc')).toBe(':1');
    expect(Number((await command(port, 'TTL revoked:jti:abc')).slice(1))).toBeGreaterThan(3000);
  });

  it('names redis-server and how to install it when the binary is missing', async () => {
    const savedPath = process.env.PATH;
    process.env.PATH = dir;
    try {
      await expect(startRedisServer({ port: await freePort(), dir })).rejects.toThrow(
        /redis-server.*apt-get install -y --no-install-recommends redis-server/,
      );
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it('reports a port already in use with the log tail', async () => {
    const blocker = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      await expect(startRedisServer({ port, dir })).rejects.toThrow(
        /did not start[\s\S]*Address already in use/,
      );
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
