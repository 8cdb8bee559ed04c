import type { Bus } from '../../shared/clients.ts';
import { type LdrEvent, PoisonMessage } from '../../shared/cloudevents.ts';
import type { Logger } from '../../shared/log.ts';
import { entitled, scopedCopy } from '../../shared/partner-scope.ts';
import type { PartnerSecrets } from '../../shared/partner-secrets.ts';
import { mirroredTypes, type Partner } from '../../shared/registry.ts';

/** Port: the partner records (Firestore `partners`). */
export interface PartnerDirectory {
  list(): Promise<Partner[]>;
}

/**
 * Port: which partners an event was already mirrored to, so a redelivery does not republish. A normal
 * delivery records all its partners in one write and reads it back only when it is a redelivery; a retry
 * task marks its one (partner, event) copy.
 */
export interface MirrorMarks {
  /** the partners an event's normal delivery already handled (published, or handed to a retry task) */
  handled(ev: LdrEvent): Promise<ReadonlySet<string>>;
  /** records the partners handled for the event (all of them, including those recorded before) */
  record(ev: LdrEvent, slugs: string[]): Promise<void>;
  seen(slug: string, eventId: string): Promise<boolean>;
  mark(slug: string, eventId: string): Promise<void>;
}

/** What the function knows of one delivery: `deliveryAttempt` > 1 is a redelivery of the same message. */
export interface DeliveryInfo {
  orderingKey?: string;
  deliveryAttempt?: number;
}

/** The attribute of a retry task naming the one partner it is for. */
export const RETRY_PARTNER = 'ldr-partner';

/** The log catalogue of mirrorToPartners: tests and log-based alerts match these entries. */
export const LOG = {
  mirrored: 'event mirrored',
  /** severity ERROR, fields `partner` and `eventId`: the alert on a broken partner matches this */
  partnerFailed: 'partner mirror failed',
  retryQueued: 'partner mirror retry queued',
  marksDown: 'mirror marks unavailable; copies may be republished (same ce-id)',
  retryObsolete: 'retry task no longer applies (partner gone or not entitled); acknowledged',
} as const;

/** One partner's copy could not be published (its secret, its topic, or the bus). */
export class PartnerMirrorFailed extends Error {
  constructor(
    readonly partner: string,
    cause: unknown,
  ) {
    super(`mirror to partner ${partner} failed: ${String(cause)}`, { cause });
  }
}

/**
 * Copies each event to every entitled partner, each partner on its own: the copies are published
 * concurrently, and a partner whose copy fails (missing secret, missing topic, publish error) gets a
 * retry task on `retryTopic` (the event plus `ldr-partner=<slug>`) while the delivery is acknowledged
 * for everybody else. A retry task mirrors to that one partner; its failure fails the delivery, so
 * Pub/Sub retries it and finally dead-letters it. Every partner failure is logged at ERROR
 * (`LOG.partnerFailed`). Redis marks keep a redelivery from republishing a copy: a first delivery
 * (`deliveryAttempt` 1) cannot have been handled before, so it only writes its mark (one command per
 * event); a redelivery reads it first. A message published again (outbox relay, dead-letter replay) is a
 * new message and may reach a partner twice under the same ce-id, which partners de-duplicate on (SPEC §3).
 */
export function createMirror(deps: {
  partners: PartnerDirectory;
  secrets: PartnerSecrets;
  bus: Bus;
  marks: MirrorMarks;
  topicOf: (slug: string) => string;
  retryTopic: string;
  log: Logger;
}) {
  const { log } = deps;
  const safe = async <T>(p: Promise<T>, fallback: T): Promise<T> => {
    try {
      return await p;
    } catch (err) {
      log.warn({ err: String(err) }, LOG.marksDown);
      return fallback;
    }
  };

  /** Publishes the partner's copy; PartnerMirrorFailed when it cannot. */
  async function publishCopy(p: Partner, ev: LdrEvent): Promise<void> {
    try {
      const { event, orderingKey } = scopedCopy(p, await deps.secrets.get(p.slug), ev);
      await deps.bus.publish(deps.topicOf(p.slug), event, orderingKey);
    } catch (err) {
      throw new PartnerMirrorFailed(p.slug, err);
    }
  }

  const logFailure = (err: PartnerMirrorFailed, ev: LdrEvent, retry: boolean) =>
    log.error(
      { partner: err.partner, eventId: ev.id, type: ev.type, retry, err: String(err.cause) },
      LOG.partnerFailed,
    );

  /**
   * A normal delivery: mirrors to every entitled partner not handled by an earlier attempt; returns the
   * partners published to now and those handed to a retry task. Throws (the delivery fails) only when the
   * partner list cannot be read or a retry task cannot be published; what was handled is recorded first,
   * so the redelivery publishes only the rest.
   */
  async function mirror(ev: LdrEvent, delivery: DeliveryInfo = {}) {
    if (!mirroredTypes.includes(ev.type as never)) return { delivered: [], retrying: [] };
    const redelivery = (delivery.deliveryAttempt ?? 1) > 1;
    const [partners, before] = await Promise.all([
      deps.partners.list(),
      redelivery ? safe(deps.marks.handled(ev), new Set<string>()) : new Set<string>(),
    ]);
    const targets = partners.filter((p) => !before.has(p.slug) && entitled(p, ev));
    if (!targets.length) return { delivered: [], retrying: [] };
    const results = await Promise.allSettled(targets.map((p) => publishCopy(p, ev)));
    const delivered: string[] = [];
    const failed: PartnerMirrorFailed[] = [];
    results.forEach((r, n) => {
      if (r.status === 'rejected') failed.push(r.reason as PartnerMirrorFailed);
      else delivered.push(targets[n]!.slug);
    });
    for (const f of failed) logFailure(f, ev, false);
    const queued = await Promise.allSettled(
      failed.map(async (f) => {
        const task: LdrEvent = { ...ev, extensions: { ...ev.extensions, [RETRY_PARTNER]: f.partner } };
        // keyed by partner and learner: a broken partner holds up only its own retries, in order
        const key = delivery.orderingKey ? `${f.partner}/${delivery.orderingKey}` : undefined;
        await deps.bus.publish(deps.retryTopic, task, key);
        log.info({ partner: f.partner, eventId: ev.id }, LOG.retryQueued);
        return f.partner;
      }),
    );
    const retrying = queued.flatMap((q) => (q.status === 'fulfilled' ? [q.value] : []));
    const handled = [...before, ...delivered, ...retrying];
    if (handled.length > before.size) await safe(deps.marks.record(ev, handled), undefined);
    // A failed retry publish fails the whole delivery: the redelivery skips the partners recorded above
    // and tries the others again, so nothing is lost.
    const unqueued = queued.find((q): q is PromiseRejectedResult => q.status === 'rejected');
    if (unqueued) throw unqueued.reason;
    return { delivered, retrying };
  }

  /** A retry task: mirrors to that one partner; a failure throws, so Pub/Sub retries the task. */
  async function mirrorOne(ev: LdrEvent, slug: string, redelivery = false) {
    const { [RETRY_PARTNER]: _, ...extensions } = ev.extensions ?? {};
    const original: LdrEvent = { ...ev, extensions };
    const p = (await deps.partners.list()).find((x) => x.slug === slug);
    if (!p || !mirroredTypes.includes(ev.type as never) || !entitled(p, original)) {
      log.warn({ partner: slug, eventId: ev.id }, LOG.retryObsolete);
      return { delivered: [] as string[] };
    }
    // a task's first delivery cannot have been marked by itself: only a redelivery reads the mark
    if (redelivery && (await safe(deps.marks.seen(slug, ev.id), false))) return { delivered: [] as string[] };
    try {
      await publishCopy(p, original);
    } catch (err) {
      if (err instanceof PartnerMirrorFailed) logFailure(err, ev, true);
      throw err;
    }
    await safe(deps.marks.mark(slug, ev.id), undefined);
    return { delivered: [slug] };
  }

  /**
   * One delivery of any of the function's subscriptions: an event carrying `ldr-partner` is a retry
   * task (only this function publishes it, on its retry topic); anything else is a normal event.
   */
  async function handle(ev: LdrEvent, delivery: DeliveryInfo = {}) {
    const slug = ev.extensions?.[RETRY_PARTNER];
    if (slug === undefined) return mirror(ev, delivery);
    if (!slug) throw new PoisonMessage(`retry task without a partner (${RETRY_PARTNER})`);
    const redelivery = (delivery.deliveryAttempt ?? 1) > 1;
    return { ...(await mirrorOne(ev, slug, redelivery)), retrying: [] as string[] };
  }

  return { mirror, mirrorOne, handle };
}
