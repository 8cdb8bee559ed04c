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

export interface Quota {
  key: string;
  cost: number;
  perMinute: number;
}

export type ClaimState = 'new' | 'pending' | 'done';

/** What one admission round trip found; `unavailable` parts are what its store could not answer. */
export interface Admission {
  revocation: 'ok' | 'revoked' | 'unavailable';
  /** one per quota, in order; empty when the token was revoked (nothing was counted) */
  limits: Array<RateDecision | 'unavailable'>;
  /** the claims made; empty when revoked or a quota refused (nothing was claimed) */
  claims: Map<string, ClaimState> | 'unavailable';
}

/**
 * Port: admits a request in one round trip on its hot path: checks the token's jti against the deny-list,
 * applies every quota (all or none are counted), and claims the event ids in the de-duplication window.
 * A request the deny-list or a quota refuses keeps nothing counted or claimed.
 */
export interface AdmissionGate {
  admit(q: { jti?: string; quotas: Quota[]; claim: string[] }): Promise<Admission>;
}

/** An admission made of separate ports (several round trips; for stores without scripts, and tests). */
export function portsAdmission(limiter: RateLimiter, dedup: DedupWindow): AdmissionGate {
  return {
    async admit({ quotas, claim }) {
      const limits = await Promise.all(quotas.map((q) => limiter.limit(q.key, q.cost, q.perMinute)));
      if (limits.some((d) => d !== 'unavailable' && !d.success))
        return { revocation: 'ok', limits, claims: new Map() };
      let claims: Admission['claims'] = new Map();
      if (claim.length) claims = await dedup.claim(claim).catch(() => 'unavailable' as const);
      return { revocation: 'ok', limits, claims };
    },
  };
}
