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

/** Port: which (partner, event id) copies were already published, so a redelivery does not republish. */
export interface MirrorMarks {
  seen(slug: string, eventId: string): Promise<boolean>;
  mark(slug: string, eventId: string): Promise<void>;
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
 * (`LOG.partnerFailed`). Redis marks keep a partner from getting the same copy twice.
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

  /** Publishes the partner's copy unless already marked; true when published now. */
  async function copyTo(p: Partner, ev: LdrEvent): Promise<boolean> {
    if (await safe(deps.marks.seen(p.slug, ev.id), false)) return false;
    try {
      const { event, orderingKey } = scopedCopy(p, await deps.secrets.get(p.slug), ev);
      await deps.bus.publish(deps.topicOf(p.slug), event, orderingKey);
    } catch (err) {
      throw new PartnerMirrorFailed(p.slug, err);
    }
    await safe(deps.marks.mark(p.slug, ev.id), undefined);
    return true;
  }

  const logFailure = (err: PartnerMirrorFailed, ev: LdrEvent, retry: boolean) =>
    log.error(
      { partner: err.partner, eventId: ev.id, type: ev.type, retry, err: String(err.cause) },
      LOG.partnerFailed,
    );

  /**
   * A normal delivery: mirrors to every entitled partner; returns the partners published to now and
   * those handed to a retry task. Throws (the delivery fails) only when the partner list cannot be
   * read or a retry task cannot be published.
   */
  async function mirror(ev: LdrEvent, opts: { orderingKey?: string } = {}) {
    if (!mirroredTypes.includes(ev.type as never)) return { delivered: [], retrying: [] };
    const targets = (await deps.partners.list()).filter((p) => entitled(p, ev));
    const results = await Promise.allSettled(targets.map((p) => copyTo(p, ev)));
    const delivered: string[] = [];
    const failed: PartnerMirrorFailed[] = [];
    results.forEach((r, n) => {
      if (r.status === 'rejected') failed.push(r.reason as PartnerMirrorFailed);
      else if (r.value) delivered.push(targets[n]!.slug);
    });
    for (const f of failed) logFailure(f, ev, false);
    // A failed retry publish fails the whole delivery: the redelivery skips the partners already
    // marked and tries the others again, so nothing is lost.
    await Promise.all(
      failed.map(async (f) => {
        const task: LdrEvent = { ...ev, extensions: { ...ev.extensions, [RETRY_PARTNER]: f.partner } };
        // keyed by partner and learner: a broken partner holds up only its own retries, in order
        const key = opts.orderingKey ? `${f.partner}/${opts.orderingKey}` : undefined;
        await deps.bus.publish(deps.retryTopic, task, key);
        log.info({ partner: f.partner, eventId: ev.id }, LOG.retryQueued);
      }),
    );
    return { delivered, retrying: failed.map((f) => f.partner) };
  }

  /** A retry task: mirrors to that one partner; a failure throws, so Pub/Sub retries the task. */
  async function mirrorOne(ev: LdrEvent, slug: string) {
    const { [RETRY_PARTNER]: _, ...extensions } = ev.extensions ?? {};
    const original: LdrEvent = { ...ev, extensions };
    const p = (await deps.partners.list()).find((x) => x.slug === slug);
    if (!p || !mirroredTypes.includes(ev.type as never) || !entitled(p, original)) {
      log.warn({ partner: slug, eventId: ev.id }, LOG.retryObsolete);
      return { delivered: [] as string[] };
    }
    try {
      return { delivered: (await copyTo(p, original)) ? [slug] : [] };
    } catch (err) {
      if (err instanceof PartnerMirrorFailed) logFailure(err, ev, true);
      throw err;
    }
  }

  /**
   * One delivery of any of the function's subscriptions: an event carrying `ldr-partner` is a retry
   * task (only this function publishes it, on its retry topic); anything else is a normal event.
   */
  async function handle(ev: LdrEvent, delivery: { orderingKey?: string } = {}) {
    const slug = ev.extensions?.[RETRY_PARTNER];
    if (slug === undefined) return mirror(ev, delivery);
    if (!slug) throw new PoisonMessage(`retry task without a partner (${RETRY_PARTNER})`);
    return { ...(await mirrorOne(ev, slug)), retrying: [] as string[] };
  }

  return { mirror, mirrorOne, handle };
}
