import type { Firestore } from '@google-cloud/firestore';
import type pg from 'pg';
import { INSTANCES } from '../../shared/registry.ts';
import type { ContentStore, InstanceDirectory, Learners, StoredContent } from './handler.ts';

export const CONTENT = 'content';

/**
 * `content/{id}` holds the newest version (what partnerRoom lists); `content/{id}/versions/{version}`
 * makes each version immutable: its fingerprint, first publish time, audience and whether it was sent.
 */
export function firestoreContent(db: Firestore): ContentStore {
  const versionRef = (id: string, version: number) =>
    db.collection(CONTENT).doc(id).collection('versions').doc(String(version));
  return {
    async record(c: StoredContent, fingerprint: string) {
      const ref = db.collection(CONTENT).doc(c.contentId);
      const vref = versionRef(c.contentId, c.version);
      return db.runTransaction(async (tx) => {
        const [v, cur] = await tx.getAll(vref, ref);
        if (v?.exists) {
          const d = v.data() as { fingerprint: string; publishedAt: string; sentAt?: string | null };
          if (d.fingerprint !== fingerprint)
            return { state: 'conflict' as const, publishedAt: d.publishedAt };
          return { state: d.sentAt ? ('sent' as const) : ('unsent' as const), publishedAt: d.publishedAt };
        }
        tx.create(vref, {
          fingerprint,
          publishedAt: c.publishedAt,
          publishedBy: c.publishedBy,
          audience: c.audience,
          sentAt: null,
        });
        if (!cur?.exists || Number(cur.get('version')) < c.version) tx.set(ref, c);
        return { state: 'new' as const, publishedAt: c.publishedAt };
      });
    },
    async markSent(contentId, version) {
      await versionRef(contentId, version).update({ sentAt: new Date().toISOString() });
    },
  };
}

export function firestoreInstances(db: Firestore): InstanceDirectory {
  return {
    async known(ids) {
      if (!ids.length) return new Set();
      const snaps = await db.getAll(...ids.map((id) => db.collection(INSTANCES).doc(id)));
      return new Set(snaps.filter((s) => s.exists).map((s) => s.id));
    },
  };
}

/** The instances the learner's applied interactions came through. */
export function pgLearners(pool: () => pg.Pool): Learners {
  return {
    async instancesOf(studentId) {
      const { rows } = await pool().query(
        'SELECT DISTINCT instance_id FROM interactions WHERE student_id = $1',
        [studentId],
      );
      return rows.map((r) => r.instance_id as string);
    },
  };
}
