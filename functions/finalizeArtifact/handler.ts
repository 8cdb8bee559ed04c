import {
  type ArtifactDoc,
  type ArtifactStore,
  artifactIdOf,
  artifactUri,
  OBJECT_PREFIX,
} from '../../shared/artifacts.ts';
import type { Bus } from '../../shared/clients.ts';
import type { LdrEvent } from '../../shared/cloudevents.ts';
import { PoisonMessage } from '../../shared/cloudevents.ts';
import type { RawMessage } from '../../shared/event-function.ts';
import { subjectOf, TOPICS, TYPES } from '../../shared/events.ts';
import type { Logger } from '../../shared/log.ts';
import type { ArtifactObjects } from '../lfsProxy/storage.ts';

/**
 * SPEC §1 finalizeArtifact: a Cloud Storage OBJECT_FINALIZE notification for `artifacts/<id>/<name>`
 * is checked against the artifact's declaration by streaming the object through SHA-256.
 *
 * - match → `stored` (+ storedAt, generation), then `learnflow.artifact.stored.v1` on
 *   `learnflow.artifact.stored`, ordering key = owner, ce-id `<artifactId>.stored`; then `announcedAt`.
 * - mismatch (size, SHA-256 or content type) → `rejected` with the reason, then the object is deleted.
 * - redelivery: a stored and announced artifact changes nothing and publishes nothing; a stored one whose
 *   announcement did not happen (crash in between) is announced, under the same ce-id; a rejected one
 *   has its object deleted again (a re-upload through a still-valid URL stays rejected).
 * - other event types, other buckets, objects outside `artifacts/`, unknown objects: logged and acked.
 */

/** The log catalogue of finalizeArtifact: tests assert on these entries. */
export const LOG = {
  ignored: 'notification ignored',
  unknown: 'unknown object; acknowledged',
  missing: 'object no longer exists; acknowledged',
  stored: 'artifact stored',
  rejected: 'artifact rejected; object deleted',
  announced: 'artifact announced',
  duplicate: 'artifact already stored and announced; nothing to do',
  replaced: 'a stored artifact was notified with another generation; left as is',
} as const;

export type Outcome = keyof typeof LOG;

export interface ArtifactStoredData {
  artifactId: string;
  uri: string;
  ownerId: string;
  instanceId?: string;
  filename: string;
  contentType: string;
  size: number;
  sha256: string;
  storedAt: string;
}

export interface FinalizeDeps {
  store: ArtifactStore;
  objects: ArtifactObjects;
  bus: Bus;
  bucket: string;
  log: Logger;
  now?: () => Date;
}

interface Notification {
  eventType: string;
  bucket: string;
  objectName: string;
  generation?: string;
  resource?: { size?: unknown; contentType?: unknown; generation?: unknown };
}

/** Reads a Cloud Storage Pub/Sub notification (attributes; data = the object resource, JSON_API_V1). */
export function readNotification(msg: RawMessage): Notification {
  const a = msg.attributes;
  if (!a.eventType || !a.bucketId || !a.objectId) {
    throw new PoisonMessage(
      'not a Cloud Storage notification: eventType, bucketId and objectId attributes are required',
    );
  }
  let resource: Notification['resource'];
  if (msg.data.length) {
    try {
      const parsed: unknown = JSON.parse(msg.data.toString('utf8'));
      if (parsed && typeof parsed === 'object') resource = parsed as Notification['resource'];
    } catch {
      // payload format NONE or unreadable: the attributes are enough
    }
  }
  const generation =
    a.objectGeneration ?? (resource?.generation !== undefined ? String(resource.generation) : undefined);
  return {
    eventType: a.eventType,
    bucket: a.bucketId,
    objectName: a.objectId,
    ...(generation ? { generation } : {}),
    ...(resource ? { resource } : {}),
  };
}

export function artifactStoredEvent(
  artifactId: string,
  doc: ArtifactDoc,
  storedAt: string,
): LdrEvent<ArtifactStoredData> {
  return {
    // derived from the artifact: a redelivery or a re-announcement carries the same id
    id: `${artifactId}.stored`,
    source: '/ldr/functions/finalizeArtifact',
    type: TYPES.artifact,
    time: storedAt,
    ...(doc.ownerKind === 'student' ? { subject: subjectOf(doc.ownerId) } : {}),
    data: {
      artifactId,
      uri: artifactUri(artifactId),
      ownerId: doc.ownerId,
      ...(doc.instanceId !== undefined ? { instanceId: doc.instanceId } : {}),
      filename: doc.filename,
      contentType: doc.contentType,
      size: doc.size,
      sha256: doc.sha256,
      storedAt,
    },
    extensions: { 'ldr-instance': doc.instanceId },
  };
}

export function createFinalizeArtifact(deps: FinalizeDeps) {
  const now = () => (deps.now ?? (() => new Date()))().toISOString();

  const done = (outcome: Outcome, fields: Record<string, unknown>): Outcome => {
    const level =
      outcome === 'rejected' || outcome === 'replaced' ? 'warn' : outcome === 'ignored' ? 'debug' : 'info';
    deps.log[level]({ outcome, ...fields }, LOG[outcome]);
    return outcome;
  };

  const announce = async (artifactId: string, doc: ArtifactDoc) => {
    await deps.bus.publish(
      TOPICS.artifact,
      artifactStoredEvent(artifactId, doc, doc.storedAt ?? now()),
      doc.ownerId,
    );
    await deps.store.markAnnounced(artifactId, now());
  };

  return async (msg: RawMessage): Promise<Outcome> => {
    const n = readNotification(msg);
    // never the object name: under artifacts/ it ends in the client's filename (free text of a learner)
    const where = { bucket: n.bucket, generation: n.generation };
    if (
      n.eventType !== 'OBJECT_FINALIZE' ||
      n.bucket !== deps.bucket ||
      !n.objectName.startsWith(OBJECT_PREFIX)
    ) {
      return done('ignored', {
        eventType: n.eventType,
        ...where,
        ours: n.objectName.startsWith(OBJECT_PREFIX),
      });
    }
    const artifactId = artifactIdOf(n.objectName);
    const doc = artifactId ? await deps.store.get(artifactId) : undefined;
    if (!artifactId || !doc || doc.objectName !== n.objectName || doc.bucket !== n.bucket) {
      return done('unknown', { ...(artifactId ? { artifactId } : {}), ...where });
    }
    const ctx = { artifactId, ...where };

    if (doc.state === 'rejected') {
      await deps.objects.remove(n.bucket, n.objectName, n.generation);
      return done('rejected', { ...ctx, reason: doc.reason, again: true });
    }
    if (doc.state === 'stored') {
      if (n.generation && doc.generation && n.generation !== doc.generation) return done('replaced', ctx);
      if (doc.announcedAt) return done('duplicate', ctx);
      await announce(artifactId, doc);
      return done('announced', ctx);
    }

    const reason = await verify(n, doc);
    if (reason === 'missing') return done('missing', ctx);
    const generation = n.generation ?? '';
    const settled = await deps.store.settle(
      artifactId,
      reason
        ? { state: 'rejected', rejectedAt: now(), reason, generation }
        : { state: 'stored', storedAt: now(), generation },
    );
    if (!settled) return done('unknown', ctx);
    const current = settled.doc;
    if (current.state === 'rejected') {
      await deps.objects.remove(n.bucket, n.objectName, n.generation);
      return done('rejected', { ...ctx, reason: current.reason });
    }
    if (current.state === 'stored' && !current.announcedAt) {
      await announce(artifactId, current);
      return done(settled.changed ? 'stored' : 'announced', { ...ctx, size: current.size });
    }
    return done('duplicate', ctx);
  };

  /** Undefined when the object is what was declared; else why not ('missing': gone meanwhile). */
  async function verify(n: Notification, doc: ArtifactDoc): Promise<string | undefined> {
    const declaredType = n.resource?.contentType;
    if (typeof declaredType === 'string' && declaredType.toLowerCase() !== doc.contentType) {
      return `content type mismatch: declared ${doc.contentType}, stored ${declaredType}`;
    }
    const listedSize = n.resource?.size !== undefined ? Number(n.resource.size) : undefined;
    if (listedSize !== undefined && Number.isFinite(listedSize) && listedSize !== doc.size) {
      return `size mismatch: declared ${doc.size} bytes, stored ${listedSize}`;
    }
    const digest = await deps.objects.digest(n.bucket, n.objectName, n.generation);
    if (digest === 'missing') return 'missing';
    if (digest.size !== doc.size) return `size mismatch: declared ${doc.size} bytes, stored ${digest.size}`;
    if (digest.sha256 !== doc.sha256)
      return `sha256 mismatch: declared ${doc.sha256}, stored ${digest.sha256}`;
    return undefined;
  }
}
