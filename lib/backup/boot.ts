/**
 * Boot: assembles the newest state by the one replay (the newest snapshot, the change sets after it, then
 * the local log's frames after those if the log continues them), or, on a prefix with no snapshot, the
 * legacy object or an empty world; then claims the next seq so an older server still on the prefix is
 * fenced. A failure is a RestoreError naming the cause and what to do.
 */
import { CELL_BYTES } from '../cube.js';
import { CorruptBackupError } from './backup-format.js';
import { applyChange } from './change.js';
import { UnreadableCommitError, type Commit, type SnapshotCommit, type SnapshotRef } from './commit-log.js';
import { compactTime, describe, publicInfo, refOf, type Core } from './core.js';
import { MemoryLog } from './memory-log.js';
import { replayChanges, WorldSizeError } from './replay.js';
import { loadSnapshot, type BackupInfo } from './snapshot.js';
import { LogCorruptError, LogLockedError, WriteAheadLog, type WalSync } from './wal.js';

/** Where the running world came from at boot. */
export type RestoredFrom = { kind: 'backup'; name: string } | { kind: 'legacy'; key: string } | { kind: 'empty' };

/** The world could not be restored at boot; the message says what failed and what to do. */
export class RestoreError extends Error {
  override name = 'RestoreError';
}

/** How the write-ahead log is kept (undefined: in memory only). */
export interface WalConfig { dir: string; sync: WalSync; syncMarks?: boolean; segmentBytes?: number; retryMs?: number }

/** What boot found and did. */
export interface Booted {
  restoredFrom: RestoredFrom;
  /** The newest snapshot, or undefined when the prefix has none yet (the caller takes the first). */
  newest?: BackupInfo;
  wal?: WriteAheadLog;
  /** Frames of the log applied (changes the store lacks). */
  replayed: number;
  /** A torn log tail was cut. */
  cut?: string;
}

/** Opens the write-ahead log of `config` (its lock taken), or throws RestoreError saying what to do. */
export async function openWal(config: WalConfig, cells: number, log: Core['log']): Promise<WriteAheadLog> {
  try {
    return await WriteAheadLog.open({ ...config, cells, log });
  } catch (err) {
    throw new RestoreError(`cannot open the write-ahead log ${config.dir}: ${describe(err)}. ${err instanceof LogLockedError ? 'Stop the other server, or give this one its own WAL_DIR.' : 'Check that WAL_DIR is a folder this process can create and write (disk space, permissions), then start again.'}`);
  }
}

/**
 * Restores the world of `core` (its store, prefix and cube) and sets its change log, store lsn and kept
 * snapshots. As the leader it replays `wal` (opened, not yet recovered) after the store and claims the next
 * seq; as a standby (`standby`) it claims nothing and sets the log's frames aside unread (a standby's own log
 * may hold a former leader's unacknowledged tail): the log then follows the store's newest lineage. Throws
 * RestoreError when any of it cannot be read.
 */
export async function boot(core: Core, options: { legacyKey: string; wal?: WriteAheadLog; walDir?: string; standby?: boolean }): Promise<Booted> {
  const where = `${core.store.location}/${core.prefix}`;
  const bootAt = new Date(core.now());
  const wal = options.wal;
  try {
    const seqs = await core.commits.seqs();
    const newer: Commit[] = [];
    let snapshot: SnapshotCommit | undefined;
    for await (const commit of core.commits.newestFirst(seqs)) {
      if (commit.kind === 'snapshot') { snapshot = commit; break; }
      newer.push(commit);
    }
    const newest = newer[0] ?? snapshot;
    let restoredFrom: RestoredFrom;
    let applied = 0;
    if (snapshot) {
      const expected = core.cube.cells * CELL_BYTES;
      if (snapshot.bytes !== expected) throw new Error(`backup ${snapshot.name} holds ${snapshot.bytes} bytes, but a world of ${core.cube.cells} cells (CUBE_CELLS) is ${expected} bytes`);
      await loadSnapshot(core.store, snapshot.key, core.cube.bytes, snapshot.sha256, `backup ${snapshot.name}`);
      core.cube.loaded();
      core.kept = (await keptSnapshots(core, snapshot, seqs)).slice(0, core.retain);
      restoredFrom = { kind: 'backup', name: snapshot.name };
    } else {
      restoredFrom = await restoreBase(core, options.legacyKey);
    }
    // The change sets after the snapshot; without one (a prefix an older release wrote: change sets shipped
    // before any snapshot), every change set, on the empty or legacy base.
    for await (const change of replayChanges({ store: core.store, commits: core.commits, cells: core.cube.cells }, snapshot, seqs)) {
      applyChange(core.cube, change);
      applied++;
    }
    const storeLineage = newest?.lineage || undefined;
    const storeLsn = newest?.lsn ?? 0;
    let replayed = 0;
    let cut: string | undefined;
    if (options.standby) {
      if (wal && !wal.recovered) await wal.recover(undefined, 0, () => undefined);
      const log = wal ?? new MemoryLog(1);
      await log.follow(storeLineage ?? log.lineage, storeLsn);
      core.changeLog = log;
      core.storeLsn = storeLsn;
      core.commits.lastSeq = Math.max(core.commits.lastSeq, seqs.at(-1) ?? 0);
      core.log.info('world_restored', { from: restoredFrom.kind, ...restoredFrom, changesApplied: applied, store: where, role: 'standby', lineage: log.lineage });
      return { restoredFrom, newest: snapshot && publicInfo(snapshot), wal, replayed, cut };
    }
    if (wal) {
      const recovery = await wal.recover(storeLineage, storeLsn, (change) => applyChange(core.cube, change));
      replayed = recovery.replayed;
      core.changeLog = wal;
      core.storeLsn = wal.lineage === storeLineage ? storeLsn : 0;
      if (recovery.cut) cut = `a torn write-ahead log tail was cut (${recovery.cut.bytes} bytes kept in ${recovery.cut.keptIn})`;
    } else {
      core.changeLog = new MemoryLog(1);
      core.storeLsn = 0;
    }
    const claimed = await core.commits.claim({
      format: 2, kind: 'takeover', seq: (seqs.at(-1) ?? 0) + 1, writer: core.commits.writer, committedAt: bootAt.toISOString(),
      reason: 'takeover', lineage: core.changeLog.lineage, lsn: core.storeLsn,
    });
    if (!claimed) throw new Error('another server committed to this prefix while this one started; start again');
    core.log.info('world_restored', { from: restoredFrom.kind, ...restoredFrom, changesApplied: applied, logReplayed: replayed, store: where, lineage: core.changeLog.lineage });
    // Objects are named by the time their upload began (this server's clock, not the store's): leftovers of
    // uploads begun before this boot are a dead process's; later ones may be another writer's, in flight.
    const bootName = compactTime(bootAt);
    const stale = (key: string) => /^\d{8}T\d{9}Z-/.test(key.slice(key.lastIndexOf('/') + 1)) && key.slice(key.lastIndexOf('/') + 1) < bootName;
    void core.store.cleanup(core.prefix, stale).then(
      (removed) => { if (removed > 0) core.log.info('store_cleaned', { removed, message: 'removed what interrupted uploads left behind' }); },
      (err: unknown) => core.log.warn('store_cleanup_failed', { err }),
    );
    return { restoredFrom, newest: snapshot && publicInfo(snapshot), wal, replayed, cut };
  } catch (err) {
    throw refusal(err, where, options.walDir);
  }
}

/** `err` as the RestoreError a boot (or its first snapshot) ends with. */
export function refusal(err: unknown, where: string, walDir?: string): RestoreError {
  if (err instanceof RestoreError) return err;
  return new RestoreError(`cannot restore the world from ${where}${walDir ? ` and ${walDir}` : ''}: ${describe(err)}. The server does not start with an empty world while a backup exists. ${advice(err)}`);
}

/** The kept snapshots, newest first: the newest one's list, or (commits written before it had one) a walk. */
async function keptSnapshots(core: Core, newest: SnapshotCommit, seqs: number[]): Promise<SnapshotRef[]> {
  if (newest.history) return [refOf(newest), ...newest.history];
  const refs: SnapshotRef[] = [];
  for await (const commit of core.commits.newestFirst(seqs.filter((s) => s <= newest.seq))) {
    if (commit.kind === 'snapshot' && !refs.some((r) => r.name === commit.name)) refs.push(refOf(commit));
    if (refs.length >= core.retain) break;
  }
  return refs;
}

/** No snapshot in the prefix: the legacy object if there is one, else an empty world. */
async function restoreBase(core: Core, key: string): Promise<RestoredFrom> {
  // A 403 here usually means a role without s3:ListBucket (S3 then hides a missing key): the store's AccessDeniedError says so.
  const legacy = key ? await core.store.get(key) : undefined;
  if (legacy === undefined) {
    core.log.warn('world_empty', { message: 'no backup found: starting with an empty world', store: `${core.store.location}/${core.prefix}`, cells: core.cube.cells });
    return { kind: 'empty' };
  }
  const expected = core.cube.cells * CELL_BYTES;
  if (legacy.byteLength !== expected) {
    throw new Error(`the legacy object ${key} holds ${legacy.byteLength} bytes, but a world of ${core.cube.cells} cells is ${expected} bytes (set CUBE_CELLS to ${legacy.byteLength / CELL_BYTES} if that is its size)`);
  }
  core.cube.replace(legacy);
  return { kind: 'legacy', key };
}

/** What to do about a failed boot, by its cause. */
function advice(err: unknown): string {
  if (err instanceof CorruptBackupError || err instanceof UnreadableCommitError) return 'The backup is damaged. To fall back to the previous backup, move its commit object (commits/<seq>.json) out of the prefix, then start again.';
  if (err instanceof WorldSizeError) return 'Set CUBE_CELLS to the size the store\'s world was written with, or point this server at another prefix.';
  if (err instanceof LogCorruptError) return 'Move the write-ahead log folder aside (it is kept for inspection) and start again: the server then starts from the store alone.';
  const code = (err as { code?: string }).code;
  if (code === 'ENOSPC') return 'The disk is full: free space, then start again.';
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return 'This process may not write there: fix the folder\'s permissions, then start again.';
  const name = (err as Error | null)?.name;
  if (name === 'NoSuchBucket') return 'The bucket does not exist: create it or fix S3_BUCKET, then start again.';
  if (name === 'AccessDenied' || (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 403) return 'Access was denied: check the credentials and the instance role\'s policy (iam/instance-role-policy.json), then start again.';
  return 'Check the bucket, the endpoint, the credentials and the network, then start again.';
}
