import type { Firestore } from '@google-cloud/firestore';
import type { TopicRow } from './ledger.ts';

/** Port: the current-state view in Firestore `students/{id}/topics/{topic}`. */
export interface ProgressView {
  project(row: TopicRow): Promise<void>;
}

const ALREADY_EXISTS = 6;
const FAILED_PRECONDITION = 9;

/**
 * Writes the row only when it is newer than what the document holds, with optimistic concurrency
 * (create, or update preconditioned on the read's update time) instead of a transaction: no lock is
 * held, so an instance killed mid-write cannot block the learner's next delivery. One document per
 * learner and topic, written only from that learner's ordered stream: no hot documents.
 */
export function firestoreProgressView(db: Firestore): ProgressView {
  return {
    async project(row) {
      const ref = db.collection('students').doc(row.studentId).collection('topics').doc(row.topic);
      for (let attempt = 0; attempt < 10; attempt++) {
        const snap = await ref.get();
        if (snap.exists && Number(snap.get('version')) >= row.version) return;
        try {
          if (snap.exists) await ref.update({ ...row }, { lastUpdateTime: snap.updateTime! });
          else await ref.create(row);
          return;
        } catch (err) {
          const code = (err as { code?: number }).code;
          if (code !== ALREADY_EXISTS && code !== FAILED_PRECONDITION) throw err;
        }
      }
      throw new Error(`could not project ${row.studentId}/${row.topic}: too much contention`);
    },
  };
}
