/** Who takes writes: this server, or the leader it forwards them to (issue 18); what routes and health see of replication. */

/** What the routes see of this server's role. */
export interface RoleView {
  /** 'leader' when this server takes writes itself now; else writes go elsewhere. */
  readonly kind: 'leader' | 'standby';
  /**
   * Where a write goes: 'local', the leader's URL, or undefined while none is known (503 + Retry-After: 1).
   * Waits (bounded) while a handover or takeover is under way.
   */
  writeTarget(forwarded: boolean): Promise<'local' | string | undefined>;
  /** For /healthcheck (authenticated part) and /metrics. */
  status(): ReplicationStatus;
}

/** Replication as this server sees it. */
export interface ReplicationStatus {
  role: 'leader' | 'standby';
  leaderUrl?: string;
  mode: 'sync' | 'async';
  state: 'none' | 'sync' | 'alone' | 'catching-up' | 'following' | 'seeking';
  /** leader: the standby's ack lag; standby: how far behind the leader's stream it is. */
  lagMs?: number;
  lagLsn?: number;
  standbyUrl?: string;
}
