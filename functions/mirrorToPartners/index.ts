import { registerEventFunction } from '../../shared/event-function.ts';
import { TOPICS } from '../../shared/events.ts';
import { dirPartnerSecrets } from '../../shared/partner-secrets.ts';
import { redisMirrorMarks } from '../../shared/redis-ports.ts';
import { PARTNERS, type Partner } from '../../shared/registry.ts';
import { createRuntime } from '../../shared/runtime.ts';
import { loadTopology, partnerNames } from '../../shared/topology.ts';
import { createMirror, LOG, type PartnerDirectory } from './handler.ts';

const rt = createRuntime('mirrorToPartners');
const topology = loadTopology();

/** Partner records, re-read at most once a second (a new partner is served within a second). */
function firestorePartners(): PartnerDirectory {
  let cached: { at: number; list: Promise<Partner[]> } | undefined;
  return {
    list() {
      if (!cached || Date.now() - cached.at > 1000) {
        const list = rt
          .firestore()
          .collection(PARTNERS)
          .get()
          .then((s) => s.docs.map((d) => d.data() as Partner));
        list.catch(() => {
          cached = undefined;
        });
        cached = { at: Date.now(), list };
      }
      return cached.list;
    },
  };
}

const mirror = createMirror({
  partners: firestorePartners(),
  secrets: dirPartnerSecrets(rt.config.PARTNER_SECRETS_DIR),
  bus: rt.bus(),
  marks: redisMirrorMarks(rt.redis()),
  topicOf: (slug) => partnerNames(topology, slug).topic,
  retryTopic: TOPICS.mirrorRetry,
  log: rt.log,
});

registerEventFunction(rt, async (ev, delivery) => {
  const { delivered, retrying } = await mirror.handle(ev, delivery);
  // per event at debug only: the copies are on the partners' topics; failures and retries log on their own
  if (delivered.length || retrying.length)
    rt.log.debug({ eventId: ev.id, type: ev.type, partners: delivered, retrying }, LOG.mirrored);
});
