import { v7 as uuidv7 } from 'uuid';
import { firestoreArtifactStore } from '../../shared/artifacts.ts';
import { httpFunction, route } from '../../shared/http.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { serveHttp } from '../../shared/serve.ts';
import { createLfsProxy } from './handler.ts';
import { openapi } from './openapi.ts';
import { parseLfsSettings } from './settings.ts';
import { createStorage, gcsUrlSigner } from './storage.ts';

const rt = createRuntime('lfsProxy');
const settings = parseLfsSettings(rt.config, process.env);
rt.log.info(
  {
    bucket: settings.bucket,
    signer: settings.signer.kind,
    contentTypes: [...settings.policy.contentTypes],
    urlTtlSeconds: settings.urlTtlSeconds,
  },
  'lfs configuration loaded',
);
const storage = createStorage(rt.config.GOOGLE_CLOUD_PROJECT, settings.signer);
const lfs = createLfsProxy({
  verifier: rt.verifier(),
  store: firestoreArtifactStore(rt.firestore()),
  signer: gcsUrlSigner(storage, settings.bucket, settings.signer),
  bucket: settings.bucket,
  policy: settings.policy,
  urlTtlSeconds: settings.urlTtlSeconds,
  log: rt.log,
  newId: uuidv7,
});

const base = rt.health(['firestore', 'redis']);
const bucketReachable = () =>
  Promise.race([
    storage
      .bucket(settings.bucket)
      .getFiles({ maxResults: 1, autoPaginate: false })
      .then(() => 'ok' as const),
    new Promise<'down'>((resolve) => setTimeout(() => resolve('down'), 5000).unref()),
  ]).catch(() => 'down' as const);
const health = async () => {
  const [deps, storageState] = await Promise.all([base(), bucketReachable()]);
  return { ...deps, storage: storageState };
};

serveHttp(
  'lfsProxy',
  httpFunction({
    log: rt.log,
    cors: rt.config.CORS_ORIGINS,
    openapi: (base) => openapi(base, settings.policy),
    health,
    routes: [route('POST', '/uploads', lfs.upload), route('GET', '/objects/:artifactId', lfs.object)],
  }),
);
