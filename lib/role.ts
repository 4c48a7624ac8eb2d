/** Who takes writes: the view of this server's role that routes and health read (the standby's machinery implements it). */

/** What routes need to know of this server's role. */
export interface RoleView {
  /** 'leader' when this server takes writes itself now; else writes go elsewhere. */
  readonly kind: 'leader' | 'standby';
  /** Where a write goes: 'local', the leader's URL, or undefined while none is known (503 + Retry-After: 1).
   *  Waits (bounded) while a handover or takeover is under way. */
  writeTarget(forwarded: boolean): Promise<'local' | string | undefined>;
  /** For /healthcheck (authenticated part) and /metrics. */
  status(): ReplicationStatus;
}

/** Replication as /healthcheck and /metrics report it. */
export interface ReplicationStatus {
  role: 'leader' | 'standby'; leaderUrl?: string; mode: 'sync' | 'async';
  state: 'none' | 'sync' | 'alone' | 'catching-up' | 'following' | 'seeking';
  /** leader: the standby's ack lag; standby: how far behind the leader's stream it is */
  lagMs?: number; lagLsn?: number; standbyUrl?: string;
}

/** The replication states, in the order /metrics lists them. */
export const REPLICATION_STATES: readonly ReplicationStatus['state'][] = ['none', 'sync', 'alone', 'catching-up', 'following', 'seeking'];

const LOCAL = Promise.resolve('local' as const);

/** The role of a server that always leads and has no standby: every write is local. */
export function soloRole(mode: 'sync' | 'async' = 'sync'): RoleView {
  return {
    kind: 'leader',
    writeTarget: () => LOCAL,
    status: () => ({ role: 'leader', mode, state: 'none' }),
  };
}
