/** Status: the state of the log, shipping and snapshots for /healthcheck, /stats and /metrics, derived where it is read. */
import type { PutBudget } from './budget.js';
import { describe, type Core } from './core.js';
import type { Shipper } from './shipper.js';
import type { Snapshotter } from './snapshotter.js';
import type { RestoredFrom } from './boot.js';
import type { WritePath } from './writes.js';

/** What status reads: the core and its parts, and the settings it reports. */
export interface StatusParts {
  core: Core;
  writes: WritePath;
  shipper: Shipper;
  snapshotter: Snapshotter;
  budget: PutBudget;
  restoredFrom: RestoredFrom;
  replayed: number;
  wal?: { dir: string; sync: string };
  intervalMs: number;
  shipIntervalMs: number;
  putBudget: number;
}

/** The shipping cadence in force (0 when shipping is off): the interval, stretched by the PUT budget. */
export function cadenceMs(parts: Pick<StatusParts, 'budget' | 'shipIntervalMs'>): number {
  return parts.shipIntervalMs > 0 ? parts.budget.cadenceMs(parts.shipIntervalMs) : 0;
}

/**
 * How long unsaved changes may wait before the strict health check fails: three cadences (with shipping off,
 * three snapshot intervals plus the last snapshot's own time, in which the changes it saves keep waiting).
 */
export function saveDeadlineMs(parts: Pick<StatusParts, 'budget' | 'shipIntervalMs' | 'intervalMs' | 'snapshotter'>): number {
  if (parts.shipIntervalMs > 0) return 3 * cadenceMs(parts);
  if (parts.intervalMs <= 0) return 0; // neither shipping nor a schedule: nothing to wait for, no alarm
  return 3 * parts.intervalMs + (parts.snapshotter.stats.lastBackup?.durationMs ?? 0);
}

/** The state of backups and shipping. */
export function backupStatus(parts: StatusParts) {
  const { core, snapshotter, shipper } = parts;
  const unsavedSince = parts.writes.unsavedSince();
  return {
    restoredFrom: parts.restoredFrom,
    replayed: parts.replayed,
    ...snapshotter.stats,
    ...shipper.stats,
    unsavedChanges: unsavedSince !== null,
    unsavedCount: Math.max(0, core.changeLog.lastLsn - core.storeLsn),
    bytesWrittenSinceBackup: snapshotter.bytesSinceSnapshot,
    unsavedSince: unsavedSince === null ? null : new Date(unsavedSince).toISOString(),
    inProgress: snapshotter.busy,
    fenced: core.commits.fenced,
    intervalSeconds: parts.intervalMs / 1000,
    shipping: {
      intervalSeconds: parts.shipIntervalMs / 1000,
      cadenceSeconds: cadenceMs(parts) / 1000,
      putBudgetPerMonth: parts.putBudget,
    },
    log: {
      kind: parts.wal ? 'wal' : 'memory',
      ...(parts.wal ? { dir: parts.wal.dir, sync: parts.wal.sync } : {}),
      lineage: core.changeLog.lineage,
      lastLsn: core.changeLog.lastLsn,
      storeLsn: core.storeLsn,
      failure: core.changeLog.failure ? describe(core.changeLog.failure) : null,
    },
  };
}
