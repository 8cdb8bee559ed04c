import { type Bus, BusUnavailable } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
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

export function createMirror(deps: {
  partners: PartnerDirectory;
  secrets: PartnerSecrets;
  bus: Bus;
  marks: MirrorMarks;
  topicOf: (slug: string) => string;
  log: Logger;
}) {
  const safe = async <T>(p: Promise<T>, fallback: T): Promise<T> => {
    try {
      return await p;
    } catch (err) {
      deps.log.warn({ err: String(err) }, 'mirror marks unavailable; copies may be republished (same ce-id)');
      return fallback;
    }
  };
  return async (ev: LdrEvent): Promise<string[]> => {
    if (!mirroredTypes.includes(ev.type as never)) return [];
    const targets = (await deps.partners.list()).filter((p) => entitled(p, ev));
    const delivered: string[] = [];
    for (const p of targets) {
      if (await safe(deps.marks.seen(p.slug, ev.id), false)) continue;
      const { event, orderingKey } = scopedCopy(p, await deps.secrets.get(p.slug), ev);
      try {
        await deps.bus.publish(deps.topicOf(p.slug), event, orderingKey);
      } catch (err) {
        if (err instanceof BusUnavailable && /NOT_FOUND|not found/i.test(err.message)) {
          deps.log.warn({ partner: p.slug }, 'partner topic missing; copy skipped');
          continue;
        }
        throw err;
      }
      await safe(deps.marks.mark(p.slug, ev.id), undefined);
      delivered.push(p.slug);
    }
    return delivered;
  };
}
