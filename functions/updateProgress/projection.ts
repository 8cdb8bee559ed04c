import type { Firestore } from '@google-cloud/firestore';
import type { TopicRow } from './ledger.ts';

/** Port: the current-state view in Firestore `students/{id}/topics/{topic}`. */
export interface ProgressView {
  project(row: TopicRow): Promise<void>;
}

/**
 * Writes the row only when it is newer than what the document holds (version check in a transaction),
 * so a late or repeated projection never moves the view backwards. One document per learner and topic,
 * written only from that learner's ordered stream: no hot documents.
 */
export function firestoreProgressView(db: Firestore): ProgressView {
  return {
    async project(row) {
      const ref = db.collection('students').doc(row.studentId).collection('topics').doc(row.topic);
      await db.runTransaction(async (tx) => {
        const snap = await tx.get(ref);
        if (snap.exists && Number(snap.get('version')) >= row.version) return;
        tx.set(ref, row);
      });
    },
  };
}
