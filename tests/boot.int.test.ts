/**
 * The production boot test (issue 10): each function is started from the built artifact with the
 * Functions Framework's own CLI, FUNCTION_TARGET and exactly the environment its topology `env` list
 * names (what Terraform sets), values pointed at the emulators, and serves one production-shaped
 * request: an HTTPS call, or the documented Pub/Sub push body. A function that would crash on Cloud Run
 * fails here.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, portOpen, waitFor } from '../emulators/procs.ts';
import { functionEnv } from '../emulators/suite.ts';
import { toMessage } from '../shared/cloudevents.ts';
import { interactionEvent } from '../shared/events.ts';
import { loadTopology } from '../shared/topology.ts';
import { eventually, localOrderingKey, pubsubClient, suite, tap } from './helpers.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = `${root}node_modules/.bin/functions-framework`;
const topology = loadTopology();
const running: ChildProcess[] = [];

async function boot(name: string, env: NodeJS.ProcessEnv) {
  const port = await freePort();
  const out: string[] = [];
  const child = spawn(process.execPath, [cli, `--target=${name}`], {
    cwd: root,
    env: { ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(child);
  child.stdout!.on('data', (c) => out.push(String(c)));
  child.stderr!.on('data', (c) => out.push(String(c)));
  let exited: number | null | undefined;
  child.once('exit', (code) => {
    exited = code;
  });
  await waitFor(
    async () => exited !== undefined || (await portOpen(port)),
    30_000,
    `${name} to listen`,
  ).catch((err) => {
    throw new Error(`${String(err)}\n${out.join('')}`);
  });
  if (exited !== undefined) throw new Error(`${name} exited with ${exited}: ${out.join('')}`);
  return {
    url: `http://127.0.0.1:${port}`,
    logs: () => out.join(''),
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
    },
  };
}

function pushBody(studentId: string, kind = 'exercise_attempt') {
  const id = randomUUID();
  const ev = interactionEvent(
    {
      id,
      studentId,
      instanceId: 'inst-boot',
      kind,
      occurredAt: new Date().toISOString(),
      topic: 'python.loops',
      payload:
        kind === 'code_execution'
          ? { ok: false, errorType: 'TypeError' }
          : { exerciseId: 'e1', passed: true },
    } as never,
    new Date(),
  );
  const m = toMessage(ev, studentId);
  return {
    ceId: m.attributes['ce-id']!,
    body: {
      message: {
        data: m.data.toString('base64'),
        attributes: m.attributes,
        messageId: `m-${id}`,
        publishTime: new Date().toISOString(),
        orderingKey: studentId,
      },
      subscription: `projects/${suite().projectId}/subscriptions/boot-test`,
      deliveryAttempt: 1,
    },
  };
}

const post = (url: string, body: unknown) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

afterAll(() => {
  for (const c of running) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('production boot: built artifact, framework CLI, Terraform environment', () => {
  it('every function declares an environment and the artifact names exactly the topology functions', async () => {
    expect(topology.functions.map((f) => f.name).sort()).toHaveLength(9);
    for (const f of topology.functions) expect(f.env).toContain('GOOGLE_CLOUD_PROJECT');
  });

  it.each(topology.functions.filter((f) => f.trigger === 'https').map((f) => f.name))(
    '%s boots and serves /healthz and problem+json on the framework server',
    async (name) => {
      const fn = await boot(name, functionEnv(name, suite().env));
      try {
        const health = await fetch(`${fn.url}/healthz`);
        const text = await health.text();
        expect(health.status, text).toBe(200);
        expect(JSON.parse(text).status).toBe('ok');
        const bad = await fetch(`${fn.url}/`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"broken":',
        });
        expect(bad.status).toBe(400);
        expect(bad.headers.get('content-type')).toContain('application/problem+json');
        expect((await bad.json()).errors).toEqual([{ path: '/', message: 'malformed JSON' }]);
      } finally {
        await fn.stop();
      }
    },
  );

  it('routeTriage routes a documented push body', async () => {
    const pubsub = pubsubClient();
    const agent = await tap(pubsub, 'learnflow.agent.exercise');
    const fn = await boot('routeTriage', functionEnv('routeTriage', suite().env));
    try {
      const student = `boot-${randomUUID()}`;
      const { body, ceId } = pushBody(student);
      const res = await post(`${fn.url}/`, body);
      expect(res.status, await res.text()).toBe(204);
      const routed = await eventually(
        async () => agent.json().find((m) => m.attributes['ce-subject'] === `students/${student}`),
        15_000,
        'the routed event',
      );
      expect(routed.orderingKey).toBe(localOrderingKey('learnflow.agent.exercise', student));
      expect(routed.attributes['ce-id']).toBe(`${ceId}.triage`);
    } finally {
      await fn.stop();
      await agent.close();
      await pubsub.close();
    }
  });

  it('updateProgress applies a documented push body exactly once', async () => {
    const fn = await boot('updateProgress', functionEnv('updateProgress', suite().env));
    const db = new pg.Pool({ connectionString: suite().env.DATABASE_URL, max: 1 });
    try {
      const student = `boot-${randomUUID()}`;
      const { body } = pushBody(student);
      for (let i = 0; i < 2; i++) {
        const res = await post(`${fn.url}/`, { ...body, deliveryAttempt: i + 1 });
        expect(res.status, await res.text()).toBe(204);
      }
      const { rows } = await db.query('SELECT count(*)::int AS n FROM interactions WHERE student_id = $1', [
        student,
      ]);
      expect(rows[0].n).toBe(1);
    } finally {
      await fn.stop();
      await db.end();
    }
  });

  it.each(['mirrorToPartners', 'finalizeArtifact'])(
    '%s acknowledges a documented push body',
    async (name) => {
      const fn = await boot(name, functionEnv(name, suite().env));
      try {
        const res = await post(`${fn.url}/`, pushBody(`boot-${randomUUID()}`).body);
        expect(res.status, await res.text()).toBeLessThan(300);
        const bad = await post(`${fn.url}/`, { message: { data: 'x' } });
        expect(bad.status).toBe(400);
        expect((await bad.json()).errors.map((e: { path: string }) => e.path)).toContain('/subscription');
      } finally {
        await fn.stop();
      }
    },
  );

  it('no function connects to anything at import: each boots with every backend unreachable', {
    timeout: 240_000,
  }, async () => {
    const unreachable = {
      ...suite().env,
      PUBSUB_EMULATOR_HOST: '127.0.0.1:9',
      FIRESTORE_EMULATOR_HOST: '127.0.0.1:9',
      STORAGE_EMULATOR_HOST: 'http://127.0.0.1:9',
      DATABASE_URL: 'postgres://nobody@127.0.0.1:9/ldr',
      UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:9',
      JWKS_URL: 'http://127.0.0.1:9/jwks.json',
    };
    for (const f of topology.functions) {
      const fn = await boot(f.name, functionEnv(f.name, unreachable));
      try {
        // the function's own router answers (a 404 problem), so its module loaded without any connection
        const res = await fetch(`${fn.url}/no-such-route`);
        expect(res.status, f.name).toBe(404);
        expect(res.headers.get('content-type')).toContain('application/problem+json');
      } finally {
        await fn.stop();
      }
    }
  });

  it('a missing variable stops the function at cold start, naming it', async () => {
    const env = functionEnv('ingestInteraction', suite().env);
    delete env.JWKS_URL;
    delete env.UPSTASH_REDIS_REST_TOKEN;
    await expect(boot('ingestInteraction', env)).rejects.toThrow(
      /JWKS_URL: required.*UPSTASH_REDIS_REST_TOKEN: required|UPSTASH_REDIS_REST_TOKEN: required.*JWKS_URL: required/s,
    );
  });
});
