import type { Firestore, Timestamp } from '@google-cloud/firestore';
import type { TopicRow } from './ledger.ts';

/** Port: the current-state view in Firestore `students/{id}/topics/{topic}`. */
export interface ProgressView {
  project(row: TopicRow): Promise<void>;
}

const ALREADY_EXISTS = 6;
const FAILED_PRECONDITION = 9;

/**
 * Writes the row only when it is newer than what the document holds, with optimistic concurrency
 * (create, or update preconditioned on the document's update time) instead of a transaction: no lock is
 * held, so an instance killed mid-write cannot block the learner's next delivery. One document per
 * learner and topic, written only from that learner's ordered stream: no hot documents.
 *
 * Without a read when it can: a document this process has not written is created (a new learner's first
 * event), one it wrote is updated on the update time of its own last write. Either fails when the document
 * is not as assumed (it exists; another instance wrote it since), and then the read decides.
 */
export function firestoreProgressView(db: Firestore): ProgressView {
  /** per document path: the version and update time of this process's last write (bounded) */
  const written = new Map<string, { version: number; updateTime: Timestamp }>();
  const remember = (path: string, version: number, updateTime: Timestamp) => {
    if (written.size >= 20_000) written.clear();
    written.set(path, { version, updateTime });
  };
  return {
    async project(row) {
      const ref = db.collection('students').doc(row.studentId).collection('topics').doc(row.topic);
      const mine = written.get(ref.path);
      if (mine && mine.version >= row.version) return;
      try {
        const w = mine
          ? await ref.update({ ...row }, { lastUpdateTime: mine.updateTime })
          : await ref.create(row);
        remember(ref.path, row.version, w.writeTime);
        return;
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code !== ALREADY_EXISTS && code !== FAILED_PRECONDITION) throw err;
        written.delete(ref.path);
      }
      for (let attempt = 0; attempt < 10; attempt++) {
        const snap = await ref.get();
        if (snap.exists && Number(snap.get('version')) >= row.version) {
          remember(ref.path, Number(snap.get('version')), snap.updateTime!);
          return;
        }
        try {
          const w = snap.exists
            ? await ref.update({ ...row }, { lastUpdateTime: snap.updateTime! })
            : await ref.create(row);
          remember(ref.path, row.version, w.writeTime);
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
