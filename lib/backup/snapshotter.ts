/**
 * The snapshotter: one loop that takes snapshots (on its schedule, on request, or when the log lost changes
 * the store lacks), each after shipping the changes it covers, then prunes in the same turn. A snapshot is
 * a compaction point only: every change is in a change set too.
 */
import type { SnapshotCommit } from './commit-log.js';
import { describe, publicInfo, refOf, type Core } from './core.js';
import { pruneCommits } from './retention.js';
import { Alarm, every } from './schedule.js';
import type { Shipper } from './shipper.js';
import { writeSnapshot, type BackupInfo } from './snapshot.js';

export type SnapshotInfo = BackupInfo & { durationMs?: number };

interface Waiter { reason: string; joined: boolean; resolve: (info: SnapshotInfo) => void; reject: (err: unknown) => void }

/** Snapshots of one world, taken in the turns of one loop. */
export class Snapshotter {
  readonly stats = {
    lastBackup: null as SnapshotInfo | null,
    lastSuccessAt: null as string | null,
    lastError: null as { at: string; error: string } | null,
    consecutiveFailures: 0,
    failuresTotal: 0,
    backupsTotal: 0,
    skippedUnchanged: 0,
  };
  /** The world's version and bytes written as the newest snapshot holds it. */
  private saved = { version: 0, bytesWritten: 0 };
  private waiters: Waiter[] = [];
  private due = false;
  private inTurn = false;
  private looping = false;
  private current: Promise<unknown> = Promise.resolve();
  private readonly alarm = new Alarm();

  /** `intervalMs`: between scheduled snapshots (taken only if the world changed); 0: on request only. */
  constructor(private readonly core: Core, private readonly shipper: Shipper, private readonly intervalMs: number) {}

  /** True while a snapshot is being taken. */
  get busy(): boolean {
    return this.inTurn;
  }

  /** Bytes written since the newest snapshot. */
  get bytesSinceSnapshot(): number {
    return this.core.cube.bytesWritten - this.saved.bytesWritten;
  }

  /** The loop, until `signal` aborts (then it ends once its turn does). */
  async loop(signal: AbortSignal): Promise<void> {
    this.looping = true;
    try {
      await every(() => (this.intervalMs > 0 ? this.intervalMs : Number.POSITIVE_INFINITY), () => this.turn(), signal, this.core.log, 'snapshot', this.alarm);
    } finally {
      this.looping = false;
      const stopped = new Error('the server is stopping: no snapshot was taken');
      for (const waiter of this.waiters.splice(0)) waiter.reject(stopped);
    }
  }

  /** A snapshot now, in the loop's next turn: the one that turn takes, or the newest when nothing changed since one taken while this waited. */
  request(reason: string): Promise<SnapshotInfo> {
    if (this.core.commits.fenced) return Promise.reject(this.core.commits.fencedError());
    if (!this.looping) return Promise.reject(new Error('snapshots are taken only while the server runs'));
    return new Promise((resolve, reject) => {
      this.waiters.push({ reason, joined: this.inTurn, resolve, reject });
      this.alarm.wake();
    });
  }

  /** The log lost changes the store lacks: the next turn takes a snapshot, whether anything else asks or not. */
  compact(): void {
    this.due = true;
    this.alarm.wake();
  }

  /** Takes a snapshot outside the loop (at boot, before it starts; at shutdown, after it stopped). */
  async take(reason: string, counted = true): Promise<SnapshotInfo> {
    const info = await this.snapshot(reason);
    this.succeeded(info, counted);
    return info;
  }

  /** The world as the boot assembled it is what the newest snapshot holds (plus what the log replayed). */
  booted(saved: { version: number; bytesWritten: number }, lastBackup: SnapshotInfo | null): void {
    this.saved = saved;
    this.stats.lastBackup = lastBackup;
  }

  /** True when the world holds changes the newest snapshot lacks. */
  changed(): boolean {
    return this.core.cube.version !== this.saved.version;
  }

  /** Resolves once the turn running now (its snapshot and its pruning), if any, has ended. */
  async idle(): Promise<void> {
    await this.current;
  }

  /** One turn of the loop (see runTurn), remembered for idle(). */
  private turn(): Promise<void> {
    const work = this.runTurn();
    this.current = work.catch(() => undefined);
    return work;
  }

  /** The snapshot asked for or due (or skipped, nothing having changed), then pruning. */
  private async runTurn(): Promise<void> {
    const asked = this.waiters.splice(0);
    const due = this.due;
    this.due = false;
    if (this.core.commits.fenced) {
      for (const waiter of asked) waiter.reject(this.core.commits.fencedError());
      return;
    }
    const last = this.stats.lastBackup;
    if (!due && !this.changed() && (asked.length === 0 || (last && asked.every((w) => w.joined)))) {
      if (asked.length === 0) this.stats.skippedUnchanged++;
      for (const waiter of asked) waiter.resolve(last!);
      return;
    }
    this.inTurn = true;
    try {
      const info = await this.snapshot(asked[0]?.reason ?? (due ? 'compaction' : 'schedule'));
      // Pruned before anyone hears of the snapshot: a caller that then lists the store finds it as kept.
      await pruneCommits(this.core.store, this.core.commits, this.core.prefix, this.core.kept).catch((err: unknown) => this.core.log.warn('prune_failed', { err }));
      this.succeeded(info, true);
      for (const waiter of asked) waiter.resolve(info);
    } catch (err) {
      for (const waiter of asked) waiter.reject(err);
      throw err;
    } finally {
      this.inTurn = false;
    }
  }

  /** Records a snapshot taken; the first boot's (not `counted`) is the base history starts from, not a backup anyone asked for or scheduled. */
  private succeeded(info: SnapshotInfo, counted: boolean): void {
    if (!counted) return;
    this.stats.lastSuccessAt = new Date(this.core.now()).toISOString();
    this.stats.consecutiveFailures = 0;
    this.stats.backupsTotal++;
  }

  /** Snapshot: one instant of the world, uploaded while requests go on, committed in order with shipments. */
  private async snapshot(reason: string): Promise<SnapshotInfo> {
    const { core } = this;
    const started = core.now();
    try {
      const cow = core.cube.snapshot(); // the world at this instant (copy-on-write slices)
      const world = { version: core.cube.version, bytesWritten: core.cube.bytesWritten };
      // Taken after the instant: every change in the snapshot was made at or before it.
      const createdAt = new Date(core.now());
      // The durable lsn, not the last: a change not yet written may be dropped (and undone) and its lsn given to
      // the next change, which the snapshot must not claim. Those it holds anyway are replayed over it again (harmless).
      const lsn = core.changeLog.durableLsn;
      // The changes up to the instant go to the store as change sets first, cadence or not: the snapshot holds
      // their values, but history (who changed what, and each second in between) lives in the sets only. A
      // shipment that fails is logged (ship_failed) and the snapshot goes on: it still holds every value.
      await core.mutex.run(() => this.shipper.shipThrough(lsn, reason)).catch((err: unknown) => {
        if (core.commits.fenced) throw err;
      });
      let uploaded;
      try {
        uploaded = await writeSnapshot(core.store, core.prefix, cow, createdAt);
      } finally {
        cow.release();
      }
      const commit = await core.mutex.run(() => this.commit(uploaded, reason, lsn));
      if (world.version > this.saved.version) this.saved = world;
      const info = { ...publicInfo(commit), durationMs: core.now() - started };
      this.stats.lastBackup = info;
      core.log.info('backup_committed', { reason, ...info });
      void core.changeLog.release(core.storeLsn).catch((err: unknown) => core.log.warn('wal_release_failed', { err }));
      core.collectGarbage?.();
      return info;
    } catch (err) {
      this.stats.consecutiveFailures++;
      this.stats.failuresTotal++;
      this.stats.lastError = { at: new Date(core.now()).toISOString(), error: describe(err) };
      core.log.error('backup_failed', { reason, consecutiveFailures: this.stats.consecutiveFailures, err });
      throw err;
    }
  }

  /**
   * Commits the uploaded snapshot as the world at `lsn` (the commit lock held): change sets committed since
   * its instant may hold changes it lacks, so its replay starts from the first of them. It lists the
   * `retain - 1` snapshots kept before it, and the kept list becomes it and those.
   */
  private async commit(uploaded: BackupInfo & { key: string }, reason: string, lsn: number): Promise<SnapshotCommit> {
    const { core } = this;
    const others = core.kept.filter((s) => s.name !== uploaded.name).slice(0, Math.max(0, core.retain - 1));
    const { name, key, createdAt, bytes, compressedBytes, sha256 } = uploaded;
    const commit = await core.commits.append({
      kind: 'snapshot', reason, name, key, createdAt, bytes, compressedBytes, sha256, cells: core.cube.cells, lineage: core.changeLog.lineage,
      lsn: Math.max(core.storeLsn, lsn), snapshotLsn: lsn, replayFrom: this.shipper.firstSetAfter(lsn), history: others,
    } as Omit<SnapshotCommit, 'format' | 'seq' | 'writer' | 'committedAt'>) as SnapshotCommit;
    if (lsn >= core.storeLsn) core.storeAt = Math.max(core.storeAt, Date.parse(createdAt)); // every later change was made after the instant
    core.storeLsn = Math.max(core.storeLsn, lsn);
    core.kept = [refOf(commit), ...others];
    return commit;
  }
}
