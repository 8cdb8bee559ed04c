/**
 * CPU per request of ingestInteraction's handler alone, for before/after comparisons of hot-path changes:
 * the handler as index.ts wires it (real ES256 verifier, the Redis ports against redis-server behind the
 * local Upstash REST endpoint in a child process), a bus that publishes nowhere, single-event posts from
 * 8 app-instances, `concurrency` in flight. Prints CPU ms per request of this process (the handler) and
 * of the child (the REST endpoint), and the REST round trips and commands per request.
 *
 *   node --import tsx bench/ingest-cpu.ts [requests=3000] [concurrency=16] [batch=1]     (add --cpu-prof to profile)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Request } from '@google-cloud/functions-framework';
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { v7 as uuidv7 } from 'uuid';
import { createIngest } from '../functions/ingestInteraction/handler.ts';
import { createVerifier } from '../shared/auth.ts';
import { type Bus, createRedis } from '../shared/clients.ts';
import type { RouteContext } from '../shared/http.ts';
import { createLogger } from '../shared/log.ts';
import * as ports from '../shared/redis-ports.ts';
import { cpuSeconds } from './proc.ts';

const TOKEN = 'ingest-cpu';

if (process.argv[2] === '--rest-child') {
  const { startLocalUpstash } = await import('../emulators/redis/local.ts');
  const local = await startLocalUpstash(TOKEN);
  process.stdout.write(`${JSON.stringify({ url: local.rest.url })}\n`);
  process.stdin.resume();
  process.stdin.on('end', async () => {
    await local.stop();
    process.exit(0);
  });
} else {
  await main();
}

async function main() {
  const requests = Number(process.argv[2] ?? 3000);
  const concurrency = Number(process.argv[3] ?? 16);
  /** events per post: 1 posts single events, more posts `{"events": [...]}` */
  const batch = Number(process.argv[4] ?? 1);
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', new URL(import.meta.url).pathname, '--rest-child'],
    { stdio: ['pipe', 'pipe', 'ignore'] },
  );
  const url = await new Promise<string>((resolve) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const line = buf.split('\n').find((l) => l.startsWith('{"url"'));
      if (line) resolve((JSON.parse(line) as { url: string }).url);
    });
  });
  const redis = createRedis({ UPSTASH_REDIS_REST_URL: url, UPSTASH_REDIS_REST_TOKEN: TOKEN });
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] });
  const verifier = createVerifier({
    jwks,
    issuer: 'https://identity.test',
    audience: 'ldr',
    revocations: { isRevoked: async (jti) => (await redis.exists(`revoked:jti:${jti}`)) === 1 },
  });
  const bus: Bus = { publish: async () => '1', publishRaw: async () => '1' };
  const ingest = createIngest({
    verifier,
    bus,
    admission: ports.redisAdmission(redis),
    dedup: ports.redisDedupWindow(redis, 86_400),
    artifacts: { get: async () => undefined },
    sponsors: { at: async () => new Set<string>() },
    log: createLogger('ingest-cpu', 'warn'),
    limits: { studentRequestsPerMin: 1e8, studentEventsPerMin: 1e8, instanceEventsPerMin: 1e8 },
    newId: uuidv7,
  });
  const instances = await Promise.all(
    Array.from({ length: 8 }, async (_, i) => ({
      id: `inst-${i}`,
      token: await new SignJWT({
        sub: `app-${i}`,
        role: 'app',
        instance: `inst-${i}`,
        permissions: ['interaction:write'],
        jti: `j-${i}-${Math.random()}`,
      })
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer('https://identity.test')
        .setAudience('ldr')
        .setIssuedAt()
        .setExpirationTime('2h')
        .sign(privateKey),
    })),
  );
  let seq = 0;
  const event = (n: number, inst: { id: string }) => ({
    id: `e-${n}-${Math.random().toString(36).slice(2)}`,
    studentId: `s-${inst.id}-${n % 500}`,
    instanceId: inst.id,
    kind: 'quiz_answer',
    occurredAt: new Date(Date.now() - 1000).toISOString(),
    topic: 'python.loops',
    payload: { quizId: 'quiz-1', questionId: 'q1', correct: true, score: 0.75 },
  });
  const post = async () => {
    const n = seq++;
    const inst = instances[n % instances.length]!;
    const body =
      batch === 1
        ? event(n, inst)
        : { events: Array.from({ length: batch }, (_, k) => event(n * batch + k, inst)) };
    const raw = Buffer.from(JSON.stringify(body));
    const req = {
      method: 'POST',
      url: '/',
      headers: {
        'content-type': 'application/json',
        'content-length': String(raw.length),
        authorization: `Bearer ${inst.token}`,
      },
      body: JSON.parse(raw.toString()),
      rawBody: raw,
    } as unknown as Request;
    const ctx: RouteContext = { req, params: {}, query: new URLSearchParams() };
    const r = await ingest(ctx);
    if (r.status !== 202) throw new Error(`status ${r.status}`);
  };
  const run = async (count: number) => {
    let left = count;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (left-- > 0) await post();
      }),
    );
  };
  await run(300); // warm-up: JIT, script load, connections
  const stats = async () =>
    (await (await fetch(`${url}/_stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
      requests: number;
      commands: number;
    };
  const s0 = await stats();
  const self0 = process.cpuUsage();
  const child0 = cpuSeconds(child.pid!) ?? 0;
  const t0 = Date.now();
  await run(requests);
  const wall = (Date.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 50));
  const self = process.cpuUsage(self0);
  const childCpu = (cpuSeconds(child.pid!) ?? 0) - child0;
  const s1 = await stats();
  const out = {
    requests,
    concurrency,
    batch,
    handlerCpuMsPerRequest: (self.user + self.system) / 1000 / requests,
    restEndpointCpuMsPerRequest: (1000 * childCpu) / requests,
    restRoundTripsPerRequest: (s1.requests - s0.requests) / requests,
    redisCommandsPerRequest: (s1.commands - s0.commands) / requests,
    wallSeconds: wall,
    loadavg: (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
  console.log(JSON.stringify(out));
  child.stdin!.end();
  await new Promise((r) => child.once('exit', r));
}
