/** What the durability parts share: the world, the store and its commit log, the change log, and how far the store holds it. */
import type { Cube } from '../cube.js';
import type { Log } from '../log.js';
import type { BlobStore } from '../store.js';
import type { ChangeLog } from './change-log.js';
import type { CommitLog, SnapshotCommit, SnapshotRef } from './commit-log.js';
import type { ReplaySource } from './replay.js';
import type { Mutex } from './schedule.js';
import type { BackupInfo } from './snapshot.js';

/** The state the parts (boot, shipper, snapshotter, undo, status) read and move forward; one per world. */
export interface Core {
  readonly store: BlobStore;
  /** '' or ending in '/'. */
  readonly prefix: string;
  readonly cube: Cube;
  readonly log: Log;
  readonly now: () => number;
  readonly commits: CommitLog;
  /** The one lock for store commits: a shipment or a snapshot's commit at a time. */
  readonly mutex: Mutex;
  /** How many snapshots to keep. */
  readonly retain: number;
  /** Set at boot: the write-ahead log, or the memory log when it is off. */
  changeLog: ChangeLog;
  /** The store holds every change of the log's lineage up to this lsn. */
  storeLsn: number;
  /** Every change after storeLsn was made at or after this instant (when the shipment that reached it read the log, or the snapshot's instant). */
  storeAt: number;
  /** Kept snapshots, newest first. */
  kept: SnapshotRef[];
  readonly collectGarbage?: () => void;
}

/** What a replay (replay.ts) reads, as the core stands now. */
export function replaySource(core: Core): ReplaySource {
  return { store: core.store, commits: core.commits, cells: core.cube.cells, snapshots: core.kept, changeLog: core.changeLog, storeLsn: core.storeLsn, now: core.now() };
}

/** A snapshot commit as the kept list holds it. */
export function refOf(commit: SnapshotCommit): SnapshotRef {
  const { seq, name, key, createdAt, committedAt, bytes, compressedBytes, sha256, replayFrom } = commit;
  return { seq, name, key, createdAt, committedAt, bytes, compressedBytes, sha256, replayFrom };
}

/** What clients see of a snapshot. */
export function publicInfo(info: BackupInfo): BackupInfo {
  const { name, createdAt, bytes, compressedBytes, sha256 } = info;
  return { name, createdAt, bytes, compressedBytes, sha256 };
}

/** 2026-11-28T16:22:45.123Z → 20261128T162245123Z: sortable, and safe in any key. */
export function compactTime(date: Date): string {
  return date.toISOString().replace(/[-:.]/g, '');
}

/** An error in one line: its name, HTTP status and message (never a secret: the SDK's errors carry none). */
export function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const code = (err as { code?: string }).code;
  return `${err.name}${code && code !== err.name ? ` ${code}` : ''}${status ? ` (HTTP ${status})` : ''}${err.message && err.message !== 'UnknownError' ? `: ${err.message}` : ''}`;
}
