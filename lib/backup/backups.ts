/**
 * Durability of one world in one store prefix, wiring the steps together: boot assembles the newest state
 * (snapshot, then the change sets after it, then the local log), every change is logged before its answer,
 * changes are shipped every SHIP_INTERVAL, snapshots compact them every BACKUP_INTERVAL, retention prunes.
 * One mutex orders commits; each background job is one loop.
 */
import { randomBytes } from 'node:crypto';
import { CorruptBackupError } from '../backup-format.js';
import { CELL_BYTES, type Cube } from '../cube.js';
import type { Log } from '../log.js';
import type { BlobStore } from '../store.js';
import { applyChange, type Run } from './change.js';
import type { ChangeLog, LogCursor } from './change-log.js';
import { INLINE_LIMIT_BYTES, packChangeSet, readChangeSet } from './change-set.js';
import { CommitLog, FencedError, UnreadableCommitError, type ChangesCommit, type Commit, type SnapshotCommit } from './commit-log.js';
import { MemoryLog } from './memory-log.js';
import { pruneCommits, type SnapshotRef } from './retention.js';
import { every, Mutex } from './schedule.js';
import { cellsAt, historyOf, historySpan, mergeRanges, type CellRange, type HistoryQuery, type HistorySource } from './history.js';
import { cellsAtInstants, type PastRead } from './past-reads.js';
import { keepUnwritten, planRollback, type RollbackPlan } from './rollback-plan.js';
import { loadSnapshot, writeSnapshot, type BackupInfo } from './snapshot.js';
import { SnapshotCache } from './snapshot-cache.js';
import { LogCorruptError, LogLockedError, WriteAheadLog, type WalSync } from './wal.js';

export type { BackupInfo } from './snapshot.js';
export { FencedError } from './commit-log.js';
export { OutsideHistoryError, type CellChange, type CellRange, type HistoryCursor, type HistoryQuery } from './history.js';
export type { PastRead } from './past-reads.js';
export type { RollbackPlan } from './rollback-plan.js';

/** Where the running world came from at boot. */
export type RestoredFrom = { kind: 'backup'; name: string } | { kind: 'legacy'; key: string } | { kind: 'empty' };

/** The world could not be restored at boot; the message says what failed and what to do. */
export class RestoreError extends Error {
  override name = 'RestoreError';
}

/** No backup of that name is kept. */
export class UnknownBackupError extends Error {
  override name = 'UnknownBackupError';
}

/** Writes are refused for now (the log cannot be written, or another server took over): the answer is 503. */
export class WritesRefusedError extends Error {
  override name = 'WritesRefusedError';
}

export interface BackupsOptions {
  store: BlobStore;
  cube: Cube;
  /** '' or ending in '/'. */
  prefix: string;
  /** The seed's raw backup object, read when the prefix holds no commit. */
  legacyKey: string;
  /** How many snapshots to keep (and the change sets between them: the span of history). */
  retain: number;
  /** Milliseconds between scheduled snapshots (taken only if the world changed); 0 turns them off. */
  intervalMs: number;
  /** Milliseconds between change shipments; 0 turns shipping off (snapshots alone then). */
  shipIntervalMs: number;
  /** PUT requests a month that shipping may use; 0 for no bound. Under constant writes the cadence stretches to fit. */
  putBudget?: number;
  /** The write-ahead log; undefined keeps changes in memory only (lost on a crash until shipped). */
  wal?: { dir: string; sync: WalSync; syncMarks?: boolean; segmentBytes?: number; retryMs?: number };
  log: Log;
  now?: () => number;
  /** A full garbage collection, run after restores and backups (see AppOptions.collectGarbage). */
  collectGarbage?: () => void;
}

/** How shutdown ended for the world. */
export type FinalBackup = { outcome: 'unchanged' } | { outcome: 'written'; backup?: BackupInfo } | { outcome: 'failed'; error: unknown };

/** A change set may carry at most this many bytes of cells; beyond it (a whole-world import) a snapshot is cheaper. */
const SHIP_MAX_BYTES = 8 * 1024 * 1024;
const MONTH_MS = 30 * 24 * 3600 * 1000;
/** The longest shutdown waits for its final shipment (Elastic Beanstalk stops a process 30 s after SIGTERM). */
const FINAL_DEADLINE_MS = 25_000;

/** Backups of one world to one store prefix. Call restore() once before serving, then start(). */
export class Backups {
  private readonly store: BlobStore;
  private readonly cube: Cube;
  private readonly log: Log;
  private readonly now: () => number;
  private readonly commits: CommitLog;
  private readonly mutex = new Mutex();
  private changeLog: ChangeLog = new MemoryLog(1);
  private wal: WriteAheadLog | undefined;
  /** The store holds every change of the log's lineage up to this lsn. */
  private storeLsn = 0;
  private cursor: LogCursor | undefined;
  /** Kept snapshots, newest first. */
  private snapshots: SnapshotRef[] = [];
  /** The snapshot the map's reads of the past start from, kept a minute after the last (see cellsAt's `keep`). */
  private readonly keptSnapshot = new SnapshotCache(60_000);
  /** Recent shipments, so a snapshot knows which of them it does not cover. */
  private recentShips: Array<{ seq: number; toLsn: number }> = [];
  /** The world's version and bytes written as of the newest snapshot (for "changed since a snapshot"). */
  private saved = { version: 0, bytesWritten: 0 };
  /** True while the world rests on the legacy object, not yet written in this format. */
  private legacyBase = false;
  private snapshotDue = false;
  private running: Promise<BackupInfo> | undefined;
  private pruning: Promise<void> | undefined;
  private pruneAgain = false;
  private unsavedSinceMs: number | null = null;
  /** The first change recorded after the running shipment read the log, and after the running snapshot's instant. */
  private firstWriteAfterReadMs: number | null = null;
  private firstWriteAfterSnapshotMs: number | null = null;
  private tokens = 0;
  private tokensAt = 0;
  private loops: AbortController | undefined;
  private loopsDone: Promise<unknown> = Promise.resolve();
  private readonly state = {
    restoredFrom: { kind: 'empty' } as RestoredFrom,
    lastBackup: null as (BackupInfo & { durationMs?: number }) | null,
    lastSuccessAt: null as string | null,
    lastError: null as { at: string; error: string } | null,
    consecutiveFailures: 0,
    failuresTotal: 0,
    backupsTotal: 0,
    skippedUnchanged: 0,
    shipsTotal: 0,
    shipFailures: 0,
    shipConsecutiveFailures: 0,
    lastShip: null as { at: string; seq: number; changes: number; compressedBytes: number } | null,
    lastShipError: null as { at: string; error: string } | null,
    replayed: 0,
  };

  constructor(private readonly options: BackupsOptions) {
    this.store = options.store;
    this.cube = options.cube;
    this.log = options.log;
    this.now = options.now ?? Date.now;
    this.commits = new CommitLog(options.store, options.prefix, options.log, this.now);
    this.tokensAt = this.now();
    this.tokens = this.tokenCapacity();
  }

  /** True when the world holds changes the store does not. */
  get dirty(): boolean {
    return this.legacyBase || this.changeLog.lastLsn > this.storeLsn;
  }

  /** Why writes are refused right now (503; FencedError when another server took over), or undefined when they are taken. */
  refusal(): WritesRefusedError | FencedError | undefined {
    if (this.commits.fenced) return this.commits.fencedError();
    const failure = this.changeLog.failure;
    if (failure) return new WritesRefusedError(`the write-ahead log cannot be written (${(failure as { code?: string }).code ?? failure.name}); writes are refused until it can`);
    return undefined;
  }

  /** Records a change already applied to the world (`runs` of cells, by `by`); its answer must wait for afterWrite. */
  record(runs: Run[], by = ''): void {
    const now = this.now();
    this.changeLog.append(now, by, runs);
    this.unsavedSinceMs ??= now;
    this.firstWriteAfterReadMs ??= now;
    this.firstWriteAfterSnapshotMs ??= now;
  }

  /** Calls `done` once every change recorded so far is in the log (or with the error that stopped it). */
  afterWrite(done: (err?: Error) => void): void {
    this.changeLog.afterWrite(done);
  }

  /**
   * Boot: assembles the newest state (the newest snapshot, the change sets after it, then the local log's
   * frames after those if the log continues them), then claims the next seq so an older server still on
   * this prefix is fenced. Throws RestoreError, naming the cause, when any of it cannot be read.
   */
  async restore(): Promise<RestoredFrom> {
    const where = `${this.store.location}/${this.options.prefix}`;
    const bootAt = new Date(this.now());
    try {
      if (this.options.wal) this.wal = await WriteAheadLog.open({ ...this.options.wal, cells: this.cube.cells, log: this.log });
    } catch (err) {
      throw new RestoreError(`cannot open the write-ahead log ${this.options.wal!.dir}: ${describe(err)}. ${err instanceof LogLockedError ? 'Stop the other server, or give this one its own WAL_DIR.' : 'Check that WAL_DIR is a folder this process can create and write (disk space, permissions), then start again.'}`);
    }
    try {
      const seqs = await this.commits.seqs();
      const newer: Commit[] = [];
      let snapshot: SnapshotCommit | undefined;
      for await (const commit of this.commits.newestFirst(seqs)) {
        if (commit.kind === 'snapshot') { snapshot = commit; break; }
        newer.push(commit);
      }
      const newest = newer[0] ?? snapshot;
      if (snapshot) {
        const expected = this.cube.cells * CELL_BYTES;
        if (snapshot.bytes !== expected) throw new Error(`backup ${snapshot.name} holds ${snapshot.bytes} bytes, but a world of ${this.cube.cells} cells (CUBE_CELLS) is ${expected} bytes`);
        await loadSnapshot(this.store, snapshot.key, this.cube.bytes, snapshot.sha256, `backup ${snapshot.name}`);
        this.cube.loaded();
        this.snapshots = await this.snapshotIndex(snapshot, seqs);
        this.state.restoredFrom = { kind: 'backup', name: snapshot.name };
        this.state.lastBackup = publicInfo(snapshot);
      } else {
        await this.restoreBase();
      }
      const chain = [...(snapshot ? await this.uncoveredBefore(snapshot) : []), ...newer.reverse()];
      let applied = 0;
      for (const commit of chain) {
        if (commit.kind !== 'changes') continue;
        for (const change of await readChangeSet(this.store, commit, this.cube.cells)) {
          if (snapshot && commit.lineage === snapshot.lineage && change.lsn <= snapshot.snapshotLsn) continue; // in the snapshot already
          applyChange(this.cube, change);
          applied++;
        }
      }
      this.saved = { version: this.cube.version, bytesWritten: this.cube.bytesWritten };
      const storeLineage = newest?.lineage || undefined;
      const storeLsn = newest?.lsn ?? 0;
      let replayed = 0;
      if (this.wal) {
        const recovery = await this.wal.recover(storeLineage, storeLsn, (change) => applyChange(this.cube, change));
        replayed = recovery.replayed;
        this.changeLog = this.wal;
        this.storeLsn = this.wal.lineage === storeLineage ? storeLsn : 0;
        if (recovery.cut) this.state.lastError = { at: bootAt.toISOString(), error: `a torn write-ahead log tail was cut (${recovery.cut.bytes} bytes kept in ${recovery.cut.keptIn})` };
      } else {
        this.changeLog = new MemoryLog(1);
        this.storeLsn = 0;
      }
      this.state.replayed = replayed;
      if (replayed > 0) this.unsavedSinceMs = this.now();
      const claimed = await this.commits.claim({
        format: 2, kind: 'takeover', seq: (seqs.at(-1) ?? 0) + 1, writer: this.commits.writer, committedAt: bootAt.toISOString(),
        reason: 'takeover', lineage: this.changeLog.lineage, lsn: this.storeLsn,
      });
      if (!claimed) throw new Error('another server committed to this prefix while this one started; start again');
      this.log.info('world_restored', { from: this.state.restoredFrom.kind, ...this.state.restoredFrom, changeSets: chain.length, changesApplied: applied, logReplayed: replayed, store: where, lineage: this.changeLog.lineage });
      // Objects are named by the time their upload began (this server's clock, not the store's): leftovers of
      // uploads begun before this boot are a dead process's; later ones may be another writer's, in flight.
      const bootName = compactTime(bootAt);
      const stale = (key: string) => /^\d{8}T\d{9}Z-/.test(key.slice(key.lastIndexOf('/') + 1)) && key.slice(key.lastIndexOf('/') + 1) < bootName;
      void this.store.cleanup(this.options.prefix, stale).then(
        (removed) => { if (removed > 0) this.log.info('store_cleaned', { removed, message: 'removed what interrupted uploads left behind' }); },
        (err: unknown) => this.log.warn('store_cleanup_failed', { err }),
      );
      return this.state.restoredFrom;
    } catch (err) {
      await this.wal?.close().catch(() => undefined);
      if (err instanceof RestoreError) throw err;
      throw new RestoreError(`cannot restore the world from ${where}${this.wal ? ` and ${this.options.wal!.dir}` : ''}: ${describe(err)}. The server does not start with an empty world while a backup exists. ${advice(err)}`);
    }
  }

  /** Starts the background loops: shipping, scheduled snapshots. */
  start(): void {
    if (this.loops) return;
    this.loops = new AbortController();
    const signal = this.loops.signal;
    const loops: Array<Promise<void>> = [];
    if (this.options.shipIntervalMs > 0) loops.push(every(() => this.cadenceMs(), () => this.shipStep(), signal, this.log, 'ship'));
    if (this.options.intervalMs > 0) loops.push(every(() => this.options.intervalMs, () => this.scheduledSnapshot(), signal, this.log, 'snapshot'));
    if (this.legacyBase) this.snapshotDue = true;
    this.loopsDone = Promise.all(loops);
  }

  /** Stops the loops and waits for work in progress to end (its outcome is already logged). */
  async stop(): Promise<void> {
    this.loops?.abort();
    await this.loopsDone;
    await Promise.allSettled([this.running, this.mutex.run(async () => undefined)]);
    await this.pruned();
  }

  /** Shutdown: ships (or snapshots) what the store lacks, within FINAL_DEADLINE_MS, then closes the log. The log keeps whatever failed. */
  async finish(): Promise<FinalBackup> {
    await this.stop();
    this.keptSnapshot.clear();
    let final: FinalBackup = { outcome: 'unchanged' };
    if (this.dirty) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`the store did not answer within ${FINAL_DEADLINE_MS / 1000} s`)), FINAL_DEADLINE_MS); });
      try {
        const work = (async (): Promise<FinalBackup> => {
          if (this.shipsChangeSets) {
            await this.shipAll('shutdown');
            if (!this.snapshotDue && !this.dirty) return { outcome: 'written' };
          }
          return { outcome: 'written', backup: await this.backup('shutdown') };
        })();
        work.catch(() => undefined);
        final = await Promise.race([work, deadline]);
      } catch (error) {
        this.log.error('final_backup_failed', { err: error, message: this.wal ? 'the write-ahead log keeps the changes: the next start ships them' : 'changes not in the store are lost' });
        final = { outcome: 'failed', error };
      } finally {
        clearTimeout(timer);
      }
    }
    await this.pruned();
    await this.changeLog.close();
    return final;
  }

  /** Takes a snapshot now (`reason` is logged). One runs at a time: a call during one waits for it, then snapshots again if the world changed. */
  async backup(reason: string): Promise<BackupInfo & { durationMs?: number }> {
    if (this.commits.fenced) throw this.commits.fencedError();
    while (this.running) {
      await this.running.catch(() => undefined);
      // The snapshot just finished holds everything this caller wrote before asking, unless the world changed since.
      if (!this.running && this.state.lastBackup && !this.changedSinceSnapshot()) return this.state.lastBackup;
    }
    if (this.commits.fenced) throw this.commits.fencedError();
    const run = this.snapshot(reason);
    this.running = run;
    run.finally(() => { if (this.running === run) this.running = undefined; }).catch(() => undefined);
    return run;
  }

  /** The kept snapshots, newest first. */
  async list(): Promise<BackupInfo[]> {
    return this.snapshots.map(publicInfo);
  }

  /**
   * Makes the kept snapshot `name` the world, as one change (logged, shipped, fenced like any other): loaded
   * and verified aside first, so a failure changes nothing. Then a snapshot is taken in the background.
   */
  async restoreBackup(name: string, by = ''): Promise<BackupInfo> {
    const refused = this.refusal();
    if (refused) throw refused;
    await this.pruned(); // a prune still running may have chosen to delete this very backup
    const ref = this.snapshots.find((s) => s.name === name);
    if (!ref) throw new UnknownBackupError(`no kept backup is named ${JSON.stringify(name)}`);
    const cells = new Uint8Array(this.cube.bytes.byteLength);
    await loadSnapshot(this.store, ref.key, cells, ref.sha256, `backup ${name}`);
    const again = this.refusal();
    if (again) throw again;
    this.cube.replace(cells);
    this.record([{ start: 0, bytes: cells }], by);
    const lsn = this.changeLog.lastLsn;
    await new Promise<void>((resolve, reject) => this.afterWrite((err) => (err ? reject(new WritesRefusedError(`the restore is applied but the write-ahead log could not write it, and dropped it (${err.message})`)) : resolve())));
    this.log.info('world_restored', { from: 'backup', name, reason: 'request', lsn });
    // The restored world is that snapshot's object: when nothing was written since, commit it as the newest
    // snapshot without uploading it again. It is in the log already, so a failure here only delays that.
    await this.mutex.run(async () => {
      if (this.changeLog.lastLsn !== lsn) {
        this.snapshotDue = true;
        return;
      }
      // The changes before the restore keep their place in history (see snapshot()); the restore itself is the snapshot.
      await this.shipForSnapshot(lsn - 1, 'restore');
      if (this.changeLog.lastLsn !== lsn) {
        this.snapshotDue = true; // written while it shipped: the snapshot object is no longer the world
        return;
      }
      const commit = await this.commitSnapshot(ref, 'restore', lsn, 0, this.cube);
      this.state.lastBackup = publicInfo(commit);
    }).catch((err: unknown) => {
      this.snapshotDue = true;
      this.log.warn('restore_commit_failed', { err, message: 'the restored world is in the write-ahead log; the next snapshot commits it' });
    });
    void this.changeLog.release(this.storeLsn).catch(() => undefined);
    this.options.collectGarbage?.();
    return publicInfo(ref);
  }

  /** The span of history that can be read and restored, and its granularity; undefined before the first snapshot. */
  history(): { earliest: string; latest: string; granularity: 'change' | 'snapshot' } | undefined {
    const span = historySpan({ snapshots: this.snapshots, now: this.now() });
    // Without shipping the store keeps snapshots only: an instant between two older ones reads as the earlier snapshot.
    return span && { ...span, granularity: this.options.shipIntervalMs > 0 ? 'change' : 'snapshot' };
  }

  /**
   * The cells of `ranges` as they were at `at` (ms): one buffer per range. OutsideHistoryError outside history().
   * `keep`: reads that will come again near this instant (the map) keep the snapshot they start from in memory for a minute.
   */
  async cellsAt(at: number, ranges: CellRange[], options: { keep?: boolean } = {}): Promise<Uint8Array[]> {
    await this.pruned(); // a prune running may be deleting the snapshot this read starts from
    const merged = mergeRanges(ranges);
    if (!options.keep) return (await this.readsAt([{ at, ranges }]))[0]!;
    const parts = await cellsAt(this.historySource(), at, merged, this.keptSnapshot);
    // Each asked range out of the merged one that holds it.
    return ranges.map((r) => {
      const i = lastStartingAtOrBefore(merged, r.start); // a binary search: a box can be 65,536 ranges
      const offset = (r.start - merged[i]!.start) * CELL_BYTES;
      return parts[i]!.subarray(offset, offset + r.count * CELL_BYTES);
    });
  }

  /** The cells of each read as they were at its instant, all from one replay (see cellsAtInstants). OutsideHistoryError outside history(). */
  async readsAt(reads: PastRead[]): Promise<Uint8Array[][]> {
    await this.pruned(); // a prune running may be deleting the snapshot this read starts from
    return cellsAtInstants(this.historySource(), reads);
  }

  /**
   * Restores `ranges` (or, undefined, the whole world) to what they were at `at`, as one change logged,
   * shipped and fenced like any other, made by `by`; every other cell keeps its newest value. Resolves once
   * the log holds it, with the number of cells restored.
   */
  async restoreAt(at: number, ranges: CellRange[] | undefined, by: string): Promise<number> {
    const refused = this.refusal();
    if (refused) throw refused;
    const wanted = mergeRanges(ranges ?? [{ start: 0, count: this.cube.cells }]);
    const past = await this.cellsAt(at, wanted);
    const again = this.refusal();
    if (again) throw again;
    // One step, no await between: no request interleaves with the restore.
    const runs = wanted.map((r, i) => ({ start: r.start, bytes: past[i]! }));
    for (const run of runs) this.cube.writeRange(run.start, run.bytes);
    this.record(runs, by);
    await new Promise<void>((resolve, reject) => this.afterWrite((err) => (err ? reject(new WritesRefusedError(`the restore is applied but the write-ahead log could not write it, and dropped it (${err.message})`)) : resolve())));
    const cells = wanted.reduce((n, r) => n + r.count, 0);
    this.log.info('world_restored', { from: 'history', at: new Date(at).toISOString(), ranges: wanted.length, cells, by });
    return cells;
  }

  /** Gives back the buffers a cellsAt with `keep` answered, once nothing reads them any more: the next such read reuses them. */
  givePastBack(parts: Uint8Array[]): void {
    for (const part of parts) this.keptSnapshot.giveBack(part);
  }

  /** A page of the changes to a region, or by an author, newest first (see historyOf). */
  async historyOf(query: HistoryQuery): Promise<Awaited<ReturnType<typeof historyOf>>> {
    await this.pruned();
    return historyOf(this.historySource(), { ...query, ranges: query.ranges && mergeRanges(query.ranges) });
  }

  /**
   * Rolls back what `by` changed in (since, until] (within `region`, when given): each such cell gets the
   * value it had before their first change in the window, unless someone else changed it after their last
   * (those are skipped and listed). One change by `operator`, logged, shipped and fenced like any other;
   * `preview` answers the plan and changes nothing. A cell written between the plan and the step is skipped too.
   */
  async rollback(by: string, since: number, until: number, region: CellRange[] | undefined, operator: string, preview: boolean): Promise<RollbackPlan> {
    if (!preview) {
      const refused = this.refusal();
      if (refused) throw refused;
    }
    await this.pruned();
    const plan = await planRollback(this.historySource(), by, since, until, region && mergeRanges(region));
    if (preview) return keepUnwritten(plan, this.cube.bytes);
    const again = this.refusal();
    if (again) throw again;
    // One step from here, no await: each cell put back only if it still holds what the plan saw.
    const applied = keepUnwritten(plan, this.cube.bytes);
    if (applied.restore.length > 0) {
      for (const run of applied.restore) this.cube.writeRange(run.start, run.bytes);
      this.record(applied.restore, operator);
      await new Promise<void>((resolve, reject) => this.afterWrite((err) => (err ? reject(new WritesRefusedError(`the rollback is applied but the write-ahead log could not write it, and dropped it (${err.message})`)) : resolve())));
    }
    this.log.info('rollback', { by, since: new Date(since).toISOString(), until: new Date(until).toISOString(), restored: applied.restored, skipped: applied.skipped, operator });
    return applied;
  }

  private historySource(): HistorySource {
    return { store: this.store, commits: this.commits, cells: this.cube.cells, snapshots: this.snapshots, changeLog: this.changeLog, storeLsn: this.storeLsn, now: this.now() };
  }

  /** Resolves when no prune is running (for tests and shutdown). */
  async pruned(): Promise<void> {
    while (this.pruning) await this.pruning;
  }

  /** The state of backups and shipping, for health and metrics. */
  status() {
    const dirty = this.dirty;
    const shipping = this.options.shipIntervalMs > 0;
    return {
      ...this.state,
      unsavedChanges: dirty,
      unsavedCount: Math.max(0, this.changeLog.lastLsn - this.storeLsn),
      bytesWrittenSinceBackup: this.cube.bytesWritten - this.saved.bytesWritten,
      unsavedSince: dirty && this.unsavedSinceMs !== null ? new Date(this.unsavedSinceMs).toISOString() : null,
      inProgress: this.running !== undefined,
      fenced: this.commits.fenced,
      intervalSeconds: this.options.intervalMs / 1000,
      shipping: {
        intervalSeconds: this.options.shipIntervalMs / 1000,
        cadenceSeconds: shipping ? this.cadenceMs() / 1000 : 0,
        putBudgetPerMonth: this.options.putBudget ?? 0,
      },
      log: {
        kind: this.wal ? 'wal' : 'memory',
        ...(this.wal ? { dir: this.options.wal!.dir, sync: this.options.wal!.sync } : {}),
        lineage: this.changeLog.lineage,
        lastLsn: this.changeLog.lastLsn,
        storeLsn: this.storeLsn,
        failure: this.changeLog.failure ? describe(this.changeLog.failure) : null,
      },
    };
  }

  /** How long unsaved changes may wait before the strict health check fails. */
  get saveDeadlineMs(): number {
    return 3 * (this.options.shipIntervalMs > 0 ? this.cadenceMs() : this.options.intervalMs);
  }

  private async shipStep(): Promise<void> {
    if (this.commits.fenced) return;
    if (this.changeLog.lastLsn > this.storeLsn) await this.shipAll('schedule');
    if (this.snapshotDue) await this.backup('compaction');
  }

  /** True when the world holds changes the newest snapshot lacks (or still rests on the legacy object). */
  private changedSinceSnapshot(): boolean {
    return this.legacyBase || this.cube.version !== this.saved.version;
  }

  private async scheduledSnapshot(): Promise<void> {
    if (this.commits.fenced) return;
    if (!this.changedSinceSnapshot()) {
      this.state.skippedUnchanged++;
      return;
    }
    await this.backup('schedule');
  }

  /**
   * Ships every change the log held when it began (see shipThrough). Changes made while it ships wait for
   * the next cadence: under constant writes that is one shipment a cadence, the PUT bill the README
   * promises, not one shipment after another.
   */
  private shipAll(reason: string): Promise<void> {
    return this.mutex.run(() => this.shipThrough(this.changeLog.lastLsn, reason));
  }

  /**
   * Ships change sets until the store holds the log through `target` (more than one set only for a backlog
   * over SHIP_MAX_BYTES); stops early when snapshotDue says a snapshot must carry the rest. Holds the mutex.
   */
  private async shipThrough(target: number, reason: string): Promise<void> {
    try {
      while (this.storeLsn < target && !this.snapshotDue) {
        if (!(await this.shipOnce(reason))) break;
      }
      this.state.shipConsecutiveFailures = 0;
    } catch (err) {
      this.state.shipFailures++;
      this.state.shipConsecutiveFailures++;
      this.state.lastShipError = { at: new Date(this.now()).toISOString(), error: describe(err) };
      if (!(err instanceof FencedError)) this.log.error('ship_failed', { reason, consecutiveFailures: this.state.shipConsecutiveFailures, err });
      throw err;
    }
  }

  /** True when changes go to the store as change sets: shipping is on and a snapshot of ours is the base (not the legacy object). */
  private get shipsChangeSets(): boolean {
    return this.options.shipIntervalMs > 0 && !this.legacyBase;
  }

  /**
   * Before a snapshot of the world at `lsn` is committed: ships the changes through `target` (see snapshot()),
   * when shipping is on. Holds the mutex. A change too big for a set, or a gap, would set snapshotDue: the
   * snapshot being made carries those, so the flag is left as it was (one after the instant is found again
   * by the next shipment).
   */
  private async shipForSnapshot(target: number, reason: string): Promise<void> {
    if (!this.shipsChangeSets) return;
    const due = this.snapshotDue;
    try {
      await this.shipThrough(target, reason);
    } finally {
      this.snapshotDue = due;
    }
  }

  /** Ships one change set; false when there was nothing to ship. Holds the mutex (see shipAll). */
  private async shipOnce(reason: string): Promise<boolean> {
    this.firstWriteAfterReadMs = null;
    const read = await this.changeLog.unshipped(this.cursor, this.storeLsn, SHIP_MAX_BYTES);
    if (read.gap || (read.more && read.changes.length === 0)) {
      this.snapshotDue = true;
      return false;
    }
    if (read.changes.length === 0) {
      this.cursor = read.next;
      return false;
    }
    this.spendToken();
    const packed = await packChangeSet(read.changes);
    const first = read.changes[0]!;
    const last = read.changes.at(-1)!;
    const name = `${compactTime(new Date(last.at))}-${randomBytes(4).toString('hex')}`;
    const inline = packed.body.byteLength <= INLINE_LIMIT_BYTES;
    const key = `${this.options.prefix}changes/${name}.bin`;
    if (!inline) {
      this.spendToken();
      await this.store.put(key, packed.body);
    }
    const commit = await this.commits.append({
      kind: 'changes', reason, name, lineage: this.changeLog.lineage, lsn: last.lsn, fromLsn: first.lsn, toLsn: last.lsn, count: read.changes.length,
      firstAt: new Date(first.at).toISOString(), lastAt: new Date(last.at).toISOString(), bytes: packed.bytes, compressedBytes: packed.body.byteLength,
      sha256: packed.sha256, ...(inline ? { inline: packed.body.toString('base64') } : { key }),
    } as Omit<ChangesCommit, 'format' | 'seq' | 'writer' | 'committedAt'>);
    this.storeLsn = last.lsn;
    this.cursor = read.next;
    this.recentShips.push({ seq: commit.seq, toLsn: last.lsn });
    if (this.recentShips.length > 1000) this.recentShips.splice(0, this.recentShips.length - 1000);
    this.state.shipsTotal++;
    this.state.lastShip = { at: new Date(this.now()).toISOString(), seq: commit.seq, changes: read.changes.length, compressedBytes: packed.body.byteLength };
    this.settleUnsavedSince();
    void this.changeLog.release(this.storeLsn).catch((err: unknown) => this.log.warn('wal_release_failed', { err }));
    return true;
  }

  /** Snapshot: one instant of the world, uploaded while requests go on, committed in order with shipments. */
  private async snapshot(reason: string): Promise<BackupInfo & { durationMs?: number }> {
    const started = this.now();
    try {
      const cow = this.cube.snapshot(); // the world at this instant (copy-on-write slices)
      // Taken after the instant: every change in the snapshot was made at or before it (time travel relies on it).
      const createdAt = new Date(this.now());
      this.firstWriteAfterSnapshotMs = null;
      // The durable lsn, not the last: a change not yet written may be dropped and its lsn given to the next
      // change, which the snapshot must not claim. Those it holds anyway are replayed over it again (harmless).
      const lsn = this.changeLog.durableLsn;
      this.snapshotDue = false;
      // The changes up to the instant go to the store as change sets first: the snapshot holds their values,
      // but history (who changed what, and each second in between) lives in the sets only. A shipment that
      // fails is logged (ship_failed) and the snapshot goes on: it still holds every value.
      await this.mutex.run(() => this.shipForSnapshot(lsn, reason)).catch((err: unknown) => {
        if (err instanceof FencedError) throw err;
      });
      let uploaded;
      try {
        uploaded = await writeSnapshot(this.store, this.options.prefix, cow, createdAt);
      } finally {
        cow.release();
      }
      const info = await this.mutex.run(async () => {
        // Shipments committed since the instant may hold changes the snapshot lacks: boot replays from the first.
        const replayFrom = this.recentShips.find((s) => s.toLsn > lsn)?.seq ?? 0;
        const commit = await this.commitSnapshot(uploaded, reason, lsn, replayFrom, cow);
        return publicInfo(commit);
      });
      const durationMs = this.now() - started;
      this.state.lastBackup = { ...info, durationMs };
      this.state.lastSuccessAt = new Date(this.now()).toISOString();
      this.state.consecutiveFailures = 0;
      this.state.backupsTotal++;
      this.log.info('backup_committed', { reason, ...info, durationMs });
      void this.changeLog.release(this.storeLsn).catch((err: unknown) => this.log.warn('wal_release_failed', { err }));
      this.pruneSoon();
      this.options.collectGarbage?.();
      return { ...info, durationMs };
    } catch (err) {
      this.state.consecutiveFailures++;
      this.state.failuresTotal++;
      this.state.lastError = { at: new Date(this.now()).toISOString(), error: describe(err) };
      this.log.error('backup_failed', { reason, consecutiveFailures: this.state.consecutiveFailures, err });
      throw err;
    }
  }

  /** Prunes in the background, one prune at a time (deleting old objects is no reason to delay the next commit). */
  /**
   * Commits the snapshot object `info` as the world at `lsn` (holding the mutex): the store then holds the log
   * up to there, and `world` (its version and bytes written) is saved. The kept list moves `info` to the front.
   */
  private async commitSnapshot(info: BackupInfo & { key: string }, reason: string, lsn: number, replayFrom: number, world: { version: number; bytesWritten: number }): Promise<SnapshotCommit> {
    const others = this.snapshots.filter((s) => s.name !== info.name);
    const { name, key, createdAt, bytes, compressedBytes, sha256 } = info;
    const commit = await this.commits.append({
      kind: 'snapshot', reason, name, key, createdAt, bytes, compressedBytes, sha256, cells: this.cube.cells, lineage: this.changeLog.lineage,
      lsn: Math.max(this.storeLsn, lsn), snapshotLsn: lsn, replayFrom, history: others.slice(0, this.options.retain),
    } as Omit<SnapshotCommit, 'format' | 'seq' | 'writer' | 'committedAt'>) as SnapshotCommit;
    this.storeLsn = Math.max(this.storeLsn, lsn);
    if (world.version > this.saved.version) this.saved = { version: world.version, bytesWritten: world.bytesWritten };
    this.legacyBase = false; // a snapshot holds the whole world, the legacy base included
    this.snapshots = [refOf(commit), ...others];
    this.unsavedSinceMs = this.dirty ? (this.firstWriteAfterSnapshotMs ?? this.now()) : null;
    return commit;
  }

  private pruneSoon(): void {
    if (this.pruning) {
      this.pruneAgain = true; // the running prune started before the newest snapshot
      return;
    }
    this.snapshots = this.snapshots.slice(0, this.options.retain);
    this.pruning = pruneCommits(this.store, this.commits, this.options.prefix, this.snapshots)
      .catch((err: unknown) => this.log.warn('prune_failed', { err }))
      .finally(() => {
        this.pruning = undefined;
        if (this.pruneAgain) {
          this.pruneAgain = false;
          this.pruneSoon();
        }
      });
  }

  /** After a commit: the oldest unsaved change is the first one recorded after the shipped range was read, if any. */
  private settleUnsavedSince(): void {
    this.unsavedSinceMs = this.dirty ? (this.firstWriteAfterReadMs ?? this.now()) : null;
  }

  /** The kept snapshots, newest first: the newest one's history, or (commits written before it had one) a walk. */
  private async snapshotIndex(newest: SnapshotCommit, seqs: number[]): Promise<SnapshotRef[]> {
    if (newest.history) return [refOf(newest), ...newest.history];
    const refs: SnapshotRef[] = [];
    for await (const commit of this.commits.newestFirst(seqs.filter((s) => s <= newest.seq))) {
      if (commit.kind === 'snapshot' && !refs.some((r) => r.name === commit.name)) refs.push(refOf(commit));
      if (refs.length >= this.options.retain) break;
    }
    return refs;
  }

  /** Change sets committed before `snapshot` (while it uploaded) that hold changes it lacks. */
  private async uncoveredBefore(snapshot: SnapshotCommit): Promise<Commit[]> {
    if (!snapshot.replayFrom || snapshot.replayFrom >= snapshot.seq) return [];
    const out: Commit[] = [];
    for (let seq = snapshot.replayFrom; seq < snapshot.seq; seq++) out.push(await this.commits.read(seq));
    return out;
  }

  /** No snapshot in the prefix: the legacy object if there is one, else an empty world. */
  private async restoreBase(): Promise<void> {
    const key = this.options.legacyKey;
    // A 403 here usually means a role without s3:ListBucket (S3 then hides a missing key): the store's AccessDeniedError says so.
    const legacy = key ? await this.store.get(key) : undefined;
    if (legacy === undefined) {
      this.state.restoredFrom = { kind: 'empty' };
      this.log.warn('world_empty', { message: 'no backup found: starting with an empty world', store: `${this.store.location}/${this.options.prefix}`, cells: this.cube.cells });
      return;
    }
    const expected = this.cube.cells * CELL_BYTES;
    if (legacy.byteLength !== expected) {
      throw new Error(`the legacy object ${key} holds ${legacy.byteLength} bytes, but a world of ${this.cube.cells} cells is ${expected} bytes (set CUBE_CELLS to ${legacy.byteLength / CELL_BYTES} if that is its size)`);
    }
    this.cube.replace(legacy);
    this.legacyBase = true; // not in the new format yet: the first snapshot writes it
    this.unsavedSinceMs = this.now();
    this.state.restoredFrom = { kind: 'legacy', key };
  }

  private tokenCapacity(): number {
    const budget = this.options.putBudget ?? 0;
    return budget > 0 ? Math.max(2, (budget / MONTH_MS) * 3_600_000) : Infinity; // bursts of up to an hour's share
  }

  private refillTokens(): void {
    const budget = this.options.putBudget ?? 0;
    if (budget <= 0) return;
    const now = this.now();
    this.tokens = Math.min(this.tokenCapacity(), this.tokens + ((now - this.tokensAt) * budget) / MONTH_MS);
    this.tokensAt = now;
  }

  private spendToken(): void {
    this.refillTokens();
    this.tokens--;
  }

  /** The shipping cadence in force: the interval, stretched while the PUT budget's bucket is empty. */
  private cadenceMs(): number {
    const budget = this.options.putBudget ?? 0;
    if (budget <= 0) return this.options.shipIntervalMs;
    this.refillTokens();
    const wait = this.tokens >= 1 ? 0 : ((1 - this.tokens) * MONTH_MS) / budget;
    return Math.max(this.options.shipIntervalMs, Math.ceil(wait));
  }
}

function refOf(commit: SnapshotCommit): SnapshotRef {
  const { seq, name, key, createdAt, bytes, compressedBytes, sha256, replayFrom } = commit;
  return { seq, name, key, createdAt, bytes, compressedBytes, sha256, replayFrom };
}

function publicInfo(info: BackupInfo): BackupInfo {
  const { name, createdAt, bytes, compressedBytes, sha256 } = info;
  return { name, createdAt, bytes, compressedBytes, sha256 };
}

/** 2026-11-28T16:22:45.123Z → 20261128T162245123Z: sortable, and safe in any key. */
function compactTime(date: Date): string {
  return date.toISOString().replace(/[-:.]/g, '');
}

/** What to do about a failed boot, by its cause. */
function advice(err: unknown): string {
  if (err instanceof CorruptBackupError || err instanceof UnreadableCommitError) return 'The backup is damaged. To fall back to the previous backup, move its commit object (commits/<seq>.json) out of the prefix, then start again.';
  if (err instanceof LogCorruptError) return 'Move the write-ahead log folder aside (it is kept for inspection) and start again: the server then starts from the store alone.';
  const code = (err as { code?: string }).code;
  if (code === 'ENOSPC') return 'The disk is full: free space, then start again.';
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return 'This process may not write there: fix the folder\'s permissions, then start again.';
  const name = (err as Error | null)?.name;
  if (name === 'NoSuchBucket') return 'The bucket does not exist: create it or fix S3_BUCKET, then start again.';
  if (name === 'AccessDenied' || (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 403) return 'Access was denied: check the credentials and the instance role\'s policy (iam/instance-role-policy.json), then start again.';
  return 'Check the bucket, the endpoint, the credentials and the network, then start again.';
}

/** An error in one line: its name, HTTP status and message (never a secret: the SDK's errors carry none). */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const code = (err as { code?: string }).code;
  return `${err.name}${code && code !== err.name ? ` ${code}` : ''}${status ? ` (HTTP ${status})` : ''}${err.message && err.message !== 'UnknownError' ? `: ${err.message}` : ''}`;
}

/** The index of the last of the sorted `ranges` that starts at or before cell `index` (0 if none does). */
function lastStartingAtOrBefore(ranges: CellRange[], index: number): number {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ranges[mid]!.start <= index) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
