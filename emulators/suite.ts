import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Firestore } from '@google-cloud/firestore';
import { PubSub } from '@google-cloud/pubsub';
import pg from 'pg';
import bucketCors from '../shared/bucket-cors.json' with { type: 'json' };
import { createLogger } from '../shared/log.ts';
import { migrate } from '../shared/migrate.ts';
import { loadTopology } from '../shared/topology.ts';
import { type Bridge, startBridge } from './bridge.ts';
import { requestCounter, startConsole } from './console.ts';
import { latestExport, persistFirestore } from './firestore-persist.ts';
import { requireJava, startFirestoreEmulator, startPubsubEmulator } from './google.ts';
import { startHost } from './host.ts';
import { type DevIdentity, ensureIdentity, LOCAL_AUDIENCE, LOCAL_ISSUER } from './identity.ts';
import { startMetadataServer } from './metadata.ts';
import { startPostgres } from './postgres.ts';
import {
  assertPortFree,
  freePort,
  type Managed,
  portOpen,
  reapStale,
  startProcess,
  waitFor,
} from './procs.ts';
import { provisionTopology } from './provision.ts';
import { startRedisServer } from './redis/redis-server.ts';
import { startUpstashRest } from './redis/upstash-rest.ts';
import { applyRegistry, FilterRelays, partnerSecretsDir } from './registry.ts';
import { ensureServiceAccountKey } from './storage/keys.ts';
import { startStorageEmulator } from './storage/server.ts';

const LFS_BUCKET = 'ldr-artifacts';
/** any local page may call the room (SPEC §4); production lists its origins in Terraform */
export const LOCAL_CORS_ORIGINS = 'http://localhost:*,http://127.0.0.1:*';
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const frameworkMain = fileURLToPath(
  new URL('../node_modules/@google-cloud/functions-framework/build/src/main.js', import.meta.url),
);

/**
 * How the local suite and the boot test start a function: the built artifact (package.json `main`)
 * under the Functions Framework's own CLI, selected by --target, as Cloud Run starts it. Instances are
 * sized like production: a 256 MiB V8 heap, so a leak shows up as a crash. Without source maps, as on
 * Cloud Run: with them every `Error().stack` is mapped, and the Firestore client takes one per commit
 * (docs/performance.md §3). `LDR_SOURCE_MAPS=1` maps stack traces for debugging.
 */
export const frameworkArgs = (name: string, port: number, source?: string) => [
  '--max-old-space-size=256',
  ...(process.env.LDR_SOURCE_MAPS === '1' ? ['--enable-source-maps'] : []),
  frameworkMain,
  `--target=${name}`,
  `--port=${port}`,
  ...(source ? [`--source=${source}`] : []),
];

/** Variables that point the official clients at the emulators instead of Google (not the function's config). */
const EMULATOR_VARS = [
  'PUBSUB_EMULATOR_HOST',
  'FIRESTORE_EMULATOR_HOST',
  'STORAGE_EMULATOR_HOST',
  'GCE_METADATA_HOST',
];

/**
 * A function's environment: exactly the variables its topology `env` list names (what Terraform sets),
 * the emulator hosts, FUNCTION_TARGET, and LISTEN_HOST (the framework has no --host flag; locally every
 * server binds 127.0.0.1). Nothing else of this process leaks in.
 */
export function functionEnv(name: string, values: Record<string, string>): NodeJS.ProcessEnv {
  const spec = loadTopology().functions.find((f) => f.name === name);
  if (!spec) throw new Error(`no function ${name}`);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    FUNCTION_TARGET: name,
    LISTEN_HOST: '127.0.0.1',
    NODE_ENV: 'production',
  };
  for (const k of [...spec.env, ...EMULATOR_VARS]) if (values[k] !== undefined) env[k] = values[k];
  // Application Default Credentials come from the local metadata server, as on Cloud Run from its own
  env.METADATA_SERVER_DETECTION = values.GCE_METADATA_HOST ? 'assume-present' : 'none';
  if (process.env.LOG_LEVEL && spec.env.includes('LOG_LEVEL')) env.LOG_LEVEL = process.env.LOG_LEVEL;
  return env;
}

export interface SuitePorts {
  functions: number;
  pubsub: number;
  firestore: number;
  storage: number;
  postgres: number;
  redis: number;
  redisRest: number;
}

export interface SuiteOptions {
  dataDir: string;
  ports: SuitePorts;
  projectId?: string;
  region?: string;
  /** shorter retry backoff for tests; production timing otherwise */
  bridgeMinBackoffMs?: number;
  bridgeMaxBackoffMs?: number;
  onProgress?: (line: string) => void;
  /** configuration values for the functions beyond the local ones (e.g. the bench's rate limits) */
  functionConfig?: Record<string, string>;
  /** keep consumer subscriptions ordered, without retry back-off or dead-lettering (see provision.ts) */
  orderedConsumers?: boolean;
  /** keep Firestore across restarts under <dataDir>/firestore (npm start); tests start empty */
  persist?: boolean;
  /** start only these functions (`npm start -- --only a,b`); the others' subscriptions keep their backlog */
  only?: string[];
  /** serve the console (emulators/console.ts) on this port (0: any free one); firebase.json `ui` for npm start */
  consolePort?: number;
  /** run the functions from this bundle instead of the built artifact (the bench's bus ceiling) */
  functionSource?: string;
  /**
   * per function, values that replace the suite's in that function's environment only (the bench points the
   * workers' emulator hosts and DATABASE_URL at its counting proxies, bench/counting-proxy.ts); the suite's
   * own clients and `Suite.env` keep the real ones
   */
  functionEnvOverrides?: Record<string, Record<string, string>>;
}

export interface Suite {
  ports: SuitePorts;
  projectId: string;
  identity: DevIdentity;
  /** environment for clients and functions (emulator hosts, URLs, tokens) */
  env: Record<string, string>;
  endpoints: Record<string, string>;
  functionUrl(name: string): string;
  bridge: Bridge;
  workers: Map<string, Worker>;
  processes: Record<string, Managed>;
  /** fault injection for tests and chaos runs: stop or start a backing service */
  control(component: Component, action: 'stop' | 'start'): Promise<void>;
  stop(): Promise<void>;
}

export const components = ['redis', 'pubsub', 'postgres'] as const;
export type Component = (typeof components)[number];

export interface Worker {
  name: string;
  port: number;
  current(): Managed;
  /** resolves when the worker accepts connections again */
  ready(): Promise<void>;
  /** how many times it was restarted after dying */
  restarts(): number;
}

/** Ports of firebase.json, plus defaults for the pieces it does not declare. */
export function defaultPorts(firebaseJson = new URL('../firebase.json', import.meta.url)): SuitePorts {
  const e = JSON.parse(readFileSync(firebaseJson, 'utf8')).emulators;
  return {
    functions: e.functions.port,
    pubsub: e.pubsub.port,
    firestore: e.firestore.port,
    storage: e.storage.port,
    postgres: 5433,
    redis: 6380,
    redisRest: 8079,
  };
}

export async function freePorts(): Promise<SuitePorts> {
  const keys: Array<keyof SuitePorts> = [
    'functions',
    'pubsub',
    'firestore',
    'storage',
    'postgres',
    'redis',
    'redisRest',
  ];
  const ports = {} as SuitePorts;
  const taken = new Set<number>();
  for (const k of keys) {
    let p = await freePort();
    while (taken.has(p)) p = await freePort();
    taken.add(p);
    ports[k] = p;
  }
  return ports;
}

export async function startSuite(opts: SuiteOptions): Promise<Suite> {
  const { dataDir, ports } = opts;
  const projectId = opts.projectId ?? 'demo-ldr';
  const region = opts.region ?? 'europe-west3';
  const progress = opts.onProgress ?? (() => {});
  const log = createLogger('suite', process.env.LDR_SUITE_LOG ?? 'warn');
  mkdirSync(dataDir, { recursive: true });
  await reapStale(dataDir);
  requireJava();
  for (const [what, port] of Object.entries(ports)) await assertPortFree(port, what);

  const topology = loadTopology();
  const unknown = (opts.only ?? []).filter((n) => !topology.functions.some((f) => f.name === n));
  if (unknown.length)
    throw new Error(
      `no function ${unknown.join(', ')}; the functions are ${topology.functions.map((f) => f.name).join(', ')}`,
    );
  const serve = topology.functions.filter((f) => !opts.only?.length || opts.only.includes(f.name));
  const functionUrl = (name: string) => `http://127.0.0.1:${ports.functions}/${projectId}/${region}/${name}`;
  const identity = await ensureIdentity(dataDir);
  const restToken = randomBytes(24).toString('hex');
  // the suite's own credential: /_ldr/* and the storage emulator's JSON API require it, as the real
  // services require credentials
  const adminToken = randomBytes(24).toString('hex');
  const started: Array<{ stop(): Promise<void> }> = [];
  const processes: Record<string, Managed> = {};
  const stopAll = async () => {
    for (const s of started.reverse()) await s.stop().catch(() => {});
  };

  try {
    const settled = await Promise.allSettled([
      startPubsubEmulator(ports.pubsub, dataDir),
      startFirestoreEmulator(
        ports.firestore,
        dataDir,
        projectId,
        opts.persist ? latestExport(join(dataDir, 'firestore')) : undefined,
      ),
      startPostgres(ports.postgres, dataDir),
      startRedisServer({ port: ports.redis, dir: join(dataDir, 'redis') }),
    ] as const);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) {
      await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
      throw (failed as PromiseRejectedResult).reason;
    }
    const values = settled.map((r) => (r as PromiseFulfilledResult<unknown>).value);
    let pubsubEm = values[0] as Managed;
    const firestoreEm = values[1] as Managed;
    let postgres = values[2] as Awaited<ReturnType<typeof startPostgres>>;
    let redis = values[3] as Awaited<ReturnType<typeof startRedisServer>>;
    started.push({
      stop: async () => {
        await Promise.all([pubsubEm.stop(), firestoreEm.stop(), postgres.stop(), redis.stop()]);
      },
    });
    // exported every 10 s after a write and at stop (stopped before the emulators: pushed after them)
    const persistence = opts.persist
      ? persistFirestore({
          url: `http://127.0.0.1:${ports.firestore}`,
          projectId,
          dir: join(dataDir, 'firestore'),
          log,
        })
      : undefined;
    if (persistence) started.push({ stop: () => persistence.stop() });
    processes.pubsub = pubsubEm;
    processes.firestore = firestoreEm;
    processes.postgres = postgres;
    progress(`pubsub, firestore, postgres and redis are up`);
    const rest = await startUpstashRest({ port: ports.redisRest, redisPort: redis.port, token: restToken });
    started.push(rest);

    const signer = await ensureServiceAccountKey(join(dataDir, 'identity'), { projectId });
    // Application Default Credentials as on Cloud Run: a metadata server hands each function an access
    // token (which the storage emulator accepts) and signs blobs for lfsProxy's V4 URLs (LFS_SIGNER=iam)
    const functionAccessToken = randomBytes(24).toString('hex');
    const metadata = await startMetadataServer({
      projectId,
      clientEmail: signer.clientEmail,
      privateKeyPem: signer.privateKeyPem,
      accessToken: functionAccessToken,
    });
    started.push(metadata);
    const notifier = new PubSub({ projectId, apiEndpoint: `127.0.0.1:${ports.pubsub}` });
    const storage = await startStorageEmulator({
      port: ports.storage,
      dataDir: join(dataDir, 'storage'),
      projectId,
      signers: [{ clientEmail: signer.clientEmail, publicKeyPem: signer.publicKeyPem }],
      // the bucket's CORS, from the same file Terraform sets on the bucket
      cors: { origins: LOCAL_CORS_ORIGINS.split(','), rules: bucketCors.cors },
      // the JSON API needs credentials, as Cloud Storage does: the suite's token or a function's
      auth: { tokens: [adminToken, functionAccessToken] },
      notify: async (n) => {
        await notifier.topic(n.topic).publishMessage({ data: n.data, attributes: n.attributes });
      },
    });
    started.push({ stop: () => storage.stop().then(() => notifier.close()) });
    storage.addNotification(LFS_BUCKET, 'learnflow.storage.finalized');
    // the artifacts bucket exists from the start, as Terraform creates it in production (lfsProxy's health checks it)
    const bucket = await fetch(`${storage.url}/storage/v1/b?project=${projectId}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ name: LFS_BUCKET }),
    });
    if (!bucket.ok && bucket.status !== 409)
      throw new Error(`could not create bucket ${LFS_BUCKET}: HTTP ${bucket.status}`);

    const env: Record<string, string> = {
      LFS_BUCKET,
      // production's signer: IAM signBlob (here: the metadata server's), no key file in any function
      LFS_SIGNER: 'iam',
      LFS_SIGNING_ENDPOINT: metadata.signingEndpoint,
      GCE_METADATA_HOST: metadata.host,
      CORS_ORIGINS: LOCAL_CORS_ORIGINS,
      PUBLIC_BASE_URL: functionUrl('partnerRoom'),
      /** for tests and tools that sign URLs themselves (never given to a function) */
      LDR_SIGNER_KEY_FILE: signer.keyFile,
      GOOGLE_CLOUD_PROJECT: projectId,
      GCLOUD_PROJECT: projectId,
      PUBSUB_EMULATOR_HOST: `127.0.0.1:${ports.pubsub}`,
      FIRESTORE_EMULATOR_HOST: `127.0.0.1:${ports.firestore}`,
      STORAGE_EMULATOR_HOST: `http://127.0.0.1:${ports.storage}`,
      METADATA_SERVER_DETECTION: 'none',
      DATABASE_URL: postgres.url,
      UPSTASH_REDIS_REST_URL: rest.url,
      UPSTASH_REDIS_REST_TOKEN: restToken,
      JWKS_URL: `http://127.0.0.1:${ports.functions}/.well-known/jwks.json`,
      JWT_ISSUER: LOCAL_ISSUER,
      JWT_AUDIENCE: LOCAL_AUDIENCE,
      PARTNER_SECRETS_DIR: partnerSecretsDir(dataDir),
      LDR_ADMIN_TOKEN: adminToken,
      ...opts.functionConfig,
    };
    const pubsub = new PubSub({ projectId, apiEndpoint: env.PUBSUB_EMULATOR_HOST });
    // tests shorten the retry back-off of consumer subscriptions as they do the bridge's
    const provisionOpts = {
      orderedConsumers: opts.orderedConsumers,
      backoffSeconds:
        opts.bridgeMinBackoffMs === undefined
          ? undefined
          : ([
              opts.bridgeMinBackoffMs / 1000,
              (opts.bridgeMaxBackoffMs ?? opts.bridgeMinBackoffMs) / 1000,
            ] as [number, number]),
    };
    const pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
    await Promise.all([
      provisionTopology(pubsub, topology, provisionOpts),
      migrate(pool).finally(() => pool.end()),
    ]);
    const firestore = new Firestore({ projectId, host: env.FIRESTORE_EMULATOR_HOST, ssl: false });
    let relays = new FilterRelays(pubsub);
    const registry = () => applyRegistry({ dataDir, topology, pubsub, firestore, relays });
    await registry();
    started.push({ stop: () => relays.closeAll().then(() => firestore.terminate()) });
    progress('topology provisioned, migrations applied');

    let admin: (method: string, path: string) => Promise<{ status: number; body: unknown } | undefined> =
      async () => undefined;
    const workers = new Map<string, Worker>();
    await Promise.all(
      serve.map(async (f) => {
        const w = await startWorker(
          f.name,
          await freePort(),
          {
            dataDir,
            env: functionEnv(f.name, { ...env, ...opts.functionEnvOverrides?.[f.name] }),
            source: opts.functionSource,
          },
          log,
        );
        workers.set(f.name, w);
        started.push({ stop: () => w.current().stop() });
      }),
    );
    await Promise.all([...workers.values()].map((w) => w.ready()));
    progress('functions are serving');

    const requests = requestCounter();
    const host: http.Server = await startHost({
      port: ports.functions,
      projectId,
      region,
      workerPort: (fn) => workers.get(fn)?.port,
      jwks: identity.jwks,
      log,
      admin: (method, path) => admin(method, path),
      adminToken,
      onRequest: (method) => {
        if (!['GET', 'HEAD', 'OPTIONS'].includes(method)) persistence?.markDirty();
      },
      onResponse: requests.count,
    });
    started.push({ stop: () => new Promise<void>((r) => host.close(() => r())) });
    host.closeIdleConnections?.();

    const newBridge = () =>
      startBridge({
        pubsub,
        topology,
        projectId,
        log,
        targetOf: (fn) => `${functionUrl(fn)}/`,
        functions: serve.map((f) => f.name),
        minBackoffMs: opts.bridgeMinBackoffMs,
        maxBackoffMs: opts.bridgeMaxBackoffMs,
      });
    let bridge = newBridge();
    started.push({ stop: () => bridge.stop() });
    // Cloud Scheduler's part: the topology's schedules call their function's route (every minute)
    const timers = topology.schedules.map((job) => {
      if (job.schedule !== '* * * * *')
        throw new Error(`schedule ${job.name}: only "* * * * *" runs locally`);
      const t = setInterval(() => {
        fetch(`${functionUrl(job.function)}${job.path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        })
          .then((r) => r.arrayBuffer())
          .catch((err: Error) => log.warn({ job: job.name, err: err.message }, 'scheduled call failed'));
      }, 60_000);
      t.unref();
      return t;
    });
    started.push({ stop: async () => timers.forEach(clearInterval) });
    const down = new Set<Component>();
    admin = async (method, path) => {
      const m = /^\/_ldr\/control\/(\w+)\/(stop|start)$/.exec(path);
      if (method === 'POST' && m && (components as readonly string[]).includes(m[1]!)) {
        await control(m[1] as Component, m[2] as 'stop' | 'start');
        return { status: 200, body: { component: m[1], state: m[2] === 'stop' ? 'stopped' : 'running' } };
      }
      if (method === 'GET' && path === '/_ldr/workers') {
        return {
          status: 200,
          body: Object.fromEntries([...workers].map(([n, w]) => [n, { pid: w.current().pid, port: w.port }])),
        };
      }
      if (method === 'GET' && path === '/_ldr/bridge') return { status: 200, body: bridge.stats() };
      if (method === 'POST' && path === '/_ldr/registry/apply') {
        const reg = await registry();
        persistence?.markDirty();
        return {
          status: 200,
          body: { partners: Object.keys(reg.partners), instances: Object.keys(reg.instances) },
        };
      }
      return undefined;
    };
    const control = async (component: Component, action: 'stop' | 'start') => {
      if (action === 'stop') {
        if (down.has(component)) return;
        down.add(component);
        if (component === 'redis') await redis.stop();
        if (component === 'postgres') await postgres.stop();
        if (component === 'pubsub') {
          await bridge.stop();
          await relays.closeAll();
          await pubsubEm.stop();
        }
        return;
      }
      if (!down.has(component)) return;
      if (component === 'redis')
        redis = await startRedisServer({ port: ports.redis, dir: join(dataDir, 'redis') });
      if (component === 'postgres') postgres = await startPostgres(ports.postgres, dataDir);
      if (component === 'pubsub') {
        pubsubEm = await startPubsubEmulator(ports.pubsub, dataDir);
        await provisionTopology(pubsub, topology, provisionOpts);
        await relays.closeAll();
        relays = new FilterRelays(pubsub);
        await registry();
        bridge = newBridge();
      }
      down.delete(component);
    };
    started.push({ stop: () => pubsub.close() });

    const endpoints: Record<string, string> = {};
    for (const f of serve) {
      endpoints[f.name] = f.trigger === 'https' ? functionUrl(f.name) : `pubsub ← ${f.topics?.join(', ')}`;
    }
    Object.assign(endpoints, {
      jwks: env.JWKS_URL,
      pubsub: `http://${env.PUBSUB_EMULATOR_HOST}`,
      firestore: `http://${env.FIRESTORE_EMULATOR_HOST}`,
      storage: `${env.STORAGE_EMULATOR_HOST} (bucket ${LFS_BUCKET})`,
      postgres: postgres.url,
      redis: `redis://127.0.0.1:${ports.redis}`,
      'upstash-rest': rest.url,
    });
    if (opts.consolePort !== undefined) {
      const ui = await startConsole({
        port: opts.consolePort,
        pubsub,
        topology,
        projectId,
        functionUrl,
        workers: () => workers,
        processes: () => ({ pubsub: pubsubEm, firestore: firestoreEm, postgres, redis }),
        bridge: () => bridge.stats(),
        requests: requests.snapshot,
        databaseUrl: env.DATABASE_URL,
        firestore,
        logDir: join(dataDir, 'logs'),
      });
      started.push(ui);
      endpoints.console = ui.url;
    }
    // what `npm run partner|instance|demo` need to find this running suite
    const suiteFile = join(dataDir, 'suite.json');
    writeFileSync(
      suiteFile,
      JSON.stringify({ ports, env, projectId, functionsBase: functionUrl('').slice(0, -1) }, null, 2),
    );
    started.unshift({
      stop: async () => {
        rmSync(suiteFile, { force: true });
        rmSync(join(dataDir, 'owner.pid'), { force: true });
      },
    });
    return {
      ports,
      projectId,
      identity,
      env,
      endpoints,
      functionUrl,
      workers,
      get processes() {
        return { ...processes, pubsub: pubsubEm, firestore: firestoreEm, postgres };
      },
      get bridge() {
        return bridge;
      },
      control,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** A supervised function worker: restarted on the same port when it dies (as Cloud Run replaces instances). */
async function startWorker(
  name: string,
  port: number,
  opts: { dataDir: string; env: NodeJS.ProcessEnv; source?: string },
  log: ReturnType<typeof createLogger>,
): Promise<Worker> {
  let stopped = false;
  const spawnOne = (): Managed => {
    const m = startProcess(`fn-${name}`, process.execPath, frameworkArgs(name, port, opts.source), {
      dataDir: opts.dataDir,
      env: opts.env,
      cwd: repoRoot,
    });
    m.exited.then((code) => {
      if (stopped) return;
      log.warn({ fn: name, code }, 'function worker exited; restarting');
      setTimeout(() => {
        if (!stopped) {
          restarts++;
          current = spawnOne();
        }
      }, 100);
    });
    return m;
  };
  let restarts = 0;
  let current = spawnOne();
  return {
    name,
    port,
    restarts: () => restarts,
    current: () => ({
      ...current,
      stop: async () => {
        stopped = true;
        await current.stop();
      },
    }),
    ready: () => waitFor(() => portOpen(port), 60_000, `function ${name} on port ${port}`),
  };
}
