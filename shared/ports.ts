/** Narrow ports shared by several functions; adapters live beside them in shared/. */

export interface RateDecision {
  success: boolean;
  limit: number;
  remaining: number;
  /** epoch ms when the window resets */
  reset: number;
}

/** Port: rate limits. `unavailable` when its store is down (the request is then let through). */
export interface RateLimiter {
  limit(key: string, cost: number, perMinute: number): Promise<RateDecision | 'unavailable'>;
}

/**
 * Port: the 24 h de-duplication window. `claim` marks ids as in flight and says which were already
 * published; `confirm` records them as published; `release` forgets claims whose publish failed.
 */
export interface DedupWindow {
  claim(ids: string[]): Promise<Map<string, 'new' | 'pending' | 'done'>>;
  confirm(ids: string[]): Promise<void>;
  release(ids: string[]): Promise<void>;
}

/** Port: artifact records (written by lfsProxy / finalizeArtifact). */
export interface ArtifactRecord {
  state: 'pending' | 'stored' | 'rejected';
  ownerId: string;
  /** `student` when ownerId is a learner (events then carry `ce-subject: students/<id>`), else `platform` */
  ownerKind: 'student' | 'platform';
  instanceId?: string;
}
export interface Artifacts {
  get(id: string): Promise<ArtifactRecord | undefined>;
}
