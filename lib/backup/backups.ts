/**
 * The durability of one world in one store prefix, as one object for the app: it builds the parts (boot.ts,
 * writes.ts, shipper.ts, snapshotter.ts, undo.ts, status.ts), runs one loop per background job and stops
 * them by cancel-and-wait. It holds no logic of its own beyond that wiring.
 */
import type { Cube } from '../cube.js';
import type { Log } from '../log.js';
import type { BlobStore } from '../store.js';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { ReplicationStatus, RoleView } from '../role.js';
import { boot, openWal, refusal as bootRefusal, type Booted, type RestoredFrom, type WalConfig } from './boot.js';
import { PutBudget } from './budget.js';
import { CommitLog, type FencedError } from './commit-log.js';
import { publicInfo, replaySource, type Core } from './core.js';
import { historyOf, mergeRanges, type CellRange, type HistoryQuery } from './history.js';
import { Leadership } from './leadership.js';
import type { PastRead } from './past-reads.js';
import type { RollbackPlan } from './rollback-plan.js';
import { MemoryLog } from './memory-log.js';
import { historySpan, withinSpan } from './replay.js';
import { every, Mutex } from './schedule.js';
import { Shipper } from './shipper.js';
import type { BackupInfo } from './snapshot.js';
import { Snapshotter, type SnapshotInfo } from './snapshotter.js';
import { backupStatus, cadenceMs, saveDeadlineMs, type StatusParts } from './status.js';
import { Undo } from './undo.js';
import { WritePath, WritesRefusedError } from './writes.js';

export type { BackupInfo } from './snapshot.js';
export { FencedError } from './commit-log.js';
export { RestoreError, type RestoredFrom } from './boot.js';
export { UnknownBackupError } from './undo.js';
export { LeadershipLostError, WritesRefusedError, type ChangeRequest, type WritePath, type WriteWatcher } from './writes.js';
export { OutsideHistoryError } from './replay.js';
export type { CellChange, CellRange, HistoryCursor, HistoryQuery } from './history.js';
export type { RollbackPlan } from './rollback-plan.js';

export interface BackupsOptions {
  store: BlobStore;
  cube: Cube;
  /** '' or ending in '/'. */
  prefix: string;
  /** The seed's raw backup object, read when the prefix holds no snapshot (it becomes the first one). */
  legacyKey: string;
  /** How many snapshots to keep (and the change sets their replays need: the span of history). */
  retain: number;
  /** Milliseconds between scheduled snapshots (taken only if the world changed); 0: on request only. */
  intervalMs: number;
  /** Milliseconds between change shipments; 0 turns the cadence off (snapshots still ship what they cover first). */
  shipIntervalMs: number;
  /** PUT requests a month that shipping may use; 0 for no bound. Under constant writes the cadence stretches to fit. */
  putBudget?: number;
  /** The write-ahead log; undefined keeps changes in memory only (lost on a crash until shipped). */
  wal?: WalConfig;
  log: Log;
  now?: () => number;
  /** A full garbage collection, run after restores and backups (see AppOptions.collectGarbage). */
  collectGarbage?: () => void;
  /** Replication to a standby: `sync` answers a write once the standby holds it too (see replicator.ts). */
  replication?: { mode: 'sync' | 'async'; timeoutMs: number };
  /** The Authorization header both servers of a prefix accept (a standby's stream sends it). */
  authorization?: string;
}

/** How shutdown ended for the world. */
export type FinalBackup = { outcome: 'unchanged' } | { outcome: 'written'; backup?: BackupInfo } | { outcome: 'failed'; error: unknown };

/** The longest shutdown waits for its final shipment (Elastic Beanstalk stops a process 30 s after SIGTERM). */
const FINAL_DEADLINE_MS = 25_000;

/** Backups of one world to one store prefix. Call restore() once before serving, then start(). */
export class Backups {
  /** The one write path: every change to the world's cells goes through writes.apply(). */
  readonly writes: WritePath;
  private readonly core: Core;
  private readonly budget: PutBudget;
  private readonly shipper: Shipper;
  private readonly snapshotter: Snapshotter;
  private readonly undo: Undo;
  private restoredFrom: RestoredFrom = { kind: 'empty' };
  private handedOver = false;
  private replayed = 0;
  private walOpen = false;
  private loops: AbortController | undefined;
  private loopsDone: Promise<unknown> = Promise.resolve();
  private leadership: Leadership | undefined;
  /** Who leads, for the routes: this server until restore() has decided (a server that never restores leads alone). */
  readonly role: RoleView;
  /** Set by handover(): whether finish() ships what the store lacks (a leader that did not hand over). */
  private shipAtFinish: boolean | undefined;

  constructor(private readonly options: BackupsOptions) {
    const now = options.now ?? Date.now;
    this.core = {
      store: options.store, prefix: options.prefix, cube: options.cube, log: options.log, now,
      commits: new CommitLog(options.store, options.prefix, options.log, now), mutex: new Mutex(), retain: options.retain,
      changeLog: new MemoryLog(1), storeLsn: 0, storeAt: 0, kept: [], collectGarbage: options.collectGarbage,
    };
    this.budget = new PutBudget(options.putBudget ?? 0, now);
    this.shipper = new Shipper(this.core, this.budget, () => this.snapshotter.compact());
    this.snapshotter = new Snapshotter(this.core, this.shipper, options.intervalMs);
    this.writes = new WritePath(options.cube, () => this.core.changeLog, () => this.refusal(), () => this.core, now);
    this.undo = new Undo(this.core, this.writes, () => this.refusal());
    const backups = this; // eslint-disable-line @typescript-eslint/no-this-alias -- the getter reads the leadership made at restore()
    this.role = {
      get kind() { return backups.leadership?.kind ?? 'leader'; },
      writeTarget: (forwarded) => this.leadership?.writeTarget(forwarded) ?? Promise.resolve('local'),
      status: (): ReplicationStatus => this.leadership?.status() ?? { role: 'leader', mode: options.replication?.mode ?? 'sync', state: 'none' },
    };
  }

  /** Why writes are refused right now (FencedError when another server took over, WritesRefusedError while the log cannot be written), or undefined. */
  refusal(): WritesRefusedError | FencedError | undefined {
    const role = this.leadership?.refusal();
    if (role) return role;
    if (this.core.commits.fenced) return this.core.commits.fencedError();
    const failure = this.core.changeLog.failure;
    if (failure) return new WritesRefusedError(`the write-ahead log cannot be written (${(failure as { code?: string }).code ?? failure.name}); writes are refused until it can`);
    return undefined;
  }

  /**
   * Opens the log, decides the role through the lease (leadership.ts), boots as leader or standby (boot.ts),
   * then, as a leader on a prefix with no snapshot yet, takes the first snapshot of the world as it starts
   * (empty, or the legacy object): the base its history starts from. RestoreError when any of it fails.
   */
  async restore(): Promise<RestoredFrom> {
    const { options, core } = this;
    const wal = options.wal ? await openWal(options.wal, options.cube.cells, options.log) : undefined;
    try {
      const leadership = new Leadership({
        core, writes: this.writes, shipper: this.shipper,
        boot: async (standby) => this.booted(await boot(core, { legacyKey: options.legacyKey, wal, walDir: options.wal?.dir, standby })),
        startLoops: () => this.start(),
        stopLoops: () => this.stop(),
      }, {
        id: wal?.id ?? randomBytes(8).toString('hex'), mode: options.replication?.mode ?? 'sync', timeoutMs: options.replication?.timeoutMs ?? 1000,
        authorization: options.authorization ?? '', log: options.log,
      });
      this.leadership = leadership;
      const booted = await leadership.start();
      if (!booted.newest && leadership.kind === 'leader') await this.snapshotter.take('first', false);
    } catch (err) {
      await this.leadership?.stop('release').catch(() => undefined); // nothing was served: a later start need not wait a term
      await (wal ?? this.core.changeLog).close().catch(() => undefined);
      throw bootRefusal(err, `${options.store.location}/${options.prefix}`, options.wal?.dir);
    }
    return this.restoredFrom;
  }

  /** After listening at `url` (the address the other server reaches this one at): the leader's loops, or the standby's following. */
  begin(url: string): void {
    this.leadership?.begin(url);
  }

  /** A standby's request to stream from this leader (see Leadership.acceptReplication). */
  acceptReplication(req: IncomingMessage, socket: Socket, head: Buffer): { status: number; error: string } | undefined {
    if (!this.leadership) return { status: 503, error: 'this server is starting' };
    return this.leadership.acceptReplication(req, socket, head);
  }

  /** SIGTERM, before the server stops listening: hands the world to the standby if one holds every change (true). */
  async handover(): Promise<boolean> {
    const leading = this.leadership?.leading ?? true;
    this.handedOver = (await this.leadership?.handover()) ?? false;
    this.shipAtFinish = leading && !this.handedOver;
    return this.handedOver;
  }

  /** What a boot found, recorded for status and the snapshotter. */
  private booted(booted: Booted): Booted {
    this.walOpen = booted.wal !== undefined;
    this.restoredFrom = booted.restoredFrom;
    this.replayed = booted.replayed;
    const cube = this.options.cube;
    this.snapshotter.booted({ version: cube.version, bytesWritten: cube.bytesWritten }, booted.newest ?? null);
    if (booted.cut) this.snapshotter.stats.lastError = { at: new Date(this.core.now()).toISOString(), error: booted.cut };
    this.writes.replayed();
    return booted;
  }

  /** Starts the background loops: the shipper's (when its cadence is on) and the snapshotter's. */
  start(): void {
    if (this.loops) return;
    this.loops = new AbortController();
    const signal = this.loops.signal;
    const loops: Array<Promise<void>> = [this.snapshotter.loop(signal)];
    if (this.options.shipIntervalMs > 0) loops.push(every(() => cadenceMs(this.statusParts()), () => this.shipStep(), signal, this.options.log, 'ship'));
    this.loopsDone = Promise.all(loops);
  }

  /** Stops the loops and waits for their work in progress to end (its outcome is already logged). */
  async stop(): Promise<void> {
    this.loops?.abort();
    await this.loopsDone;
    this.loops = undefined;
  }

  /** Shutdown: ships what the store lacks (a snapshot if the log lost some), within FINAL_DEADLINE_MS, then closes the log. */
  async finish(): Promise<FinalBackup> {
    const ship = this.shipAtFinish ?? this.leadership?.leading ?? true;
    await this.stop();
    this.undo.keptSnapshot.clear();
    let final: FinalBackup = { outcome: 'unchanged' };
    // A standby ships nothing (the store is its leader's), nor does a leader that handed its world over.
    if (ship && this.core.changeLog.lastLsn > this.core.storeLsn) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`the store did not answer within ${FINAL_DEADLINE_MS / 1000} s`)), FINAL_DEADLINE_MS); });
      try {
        const work = (async (): Promise<FinalBackup> => {
          if (this.core.commits.fenced) throw this.core.commits.fencedError();
          await this.shipper.shipAll('shutdown');
          if (this.core.changeLog.lastLsn <= this.core.storeLsn) return { outcome: 'written' };
          return { outcome: 'written', backup: await this.snapshotter.take('shutdown') }; // the log lost some: a snapshot carries them
        })();
        work.catch(() => undefined);
        final = await Promise.race([work, deadline]);
      } catch (error) {
        this.options.log.error('final_backup_failed', { err: error, message: this.walOpen ? 'the write-ahead log keeps the changes: the next start ships them' : 'changes not in the store are lost' });
        final = { outcome: 'failed', error };
      } finally {
        clearTimeout(timer);
      }
    }
    // The lease is let go (a later start takes it at once) only when the store holds every change: else it
    // runs out, and a restart on this WAL_DIR takes it back as its own and replays the log.
    await this.leadership?.stop(this.handedOver || final.outcome === 'failed' ? 'keep' : 'release');
    await this.core.changeLog.close();
    return final;
  }

  /** A snapshot now, taken in the snapshot loop's next turn (a call during one joins the next, which snapshots again only if the world changed). */
  backup(reason: string): Promise<SnapshotInfo> {
    return this.snapshotter.request(reason);
  }

  /** The kept snapshots, newest first. */
  async list(): Promise<BackupInfo[]> {
    return this.core.kept.map(publicInfo);
  }

  /** Makes the kept snapshot `name` the world, as one change by `by` (undo.ts). */
  restoreBackup(name: string, by = ''): Promise<BackupInfo> {
    return this.undo.restoreBackup(name, by);
  }

  /** The span of history that can be read and restored; undefined before the first snapshot. */
  history(): { earliest: string; latest: string; granularity: 'change' } | undefined {
    const span = historySpan({ snapshots: this.core.kept, now: this.core.now() });
    return span && { ...span, granularity: 'change' };
  }

  /** The cells of `ranges` as they were at `at` (ms): one buffer per range (see Undo.cellsAt, `keep` for the map). OutsideHistoryError outside history(). */
  cellsAt(at: number, ranges: CellRange[], options: { keep?: boolean } = {}): Promise<Uint8Array[]> {
    return this.undo.cellsAt(at, ranges, options);
  }

  /** Gives back the buffers a cellsAt with `keep` answered, once nothing reads them any more: the next such read reuses them. */
  givePastBack(parts: Uint8Array[]): void {
    for (const part of parts) this.undo.keptSnapshot.giveBack(part);
  }

  /** The cells of each read as they were at its instant, all from one replay (undo.ts). OutsideHistoryError outside history(). */
  readsAt(reads: PastRead[]): Promise<Uint8Array[][]> {
    return this.undo.readsAt(reads);
  }

  /** Restores `ranges` (or the whole world) to what they were at `at`, as one change by `by` (undo.ts). */
  restoreAt(at: number, ranges: CellRange[] | undefined, by: string): Promise<number> {
    return this.undo.restoreAt(at, ranges, by);
  }

  /** A page of the changes to a region, or by an author, newest first (see historyOf). */
  historyOf(query: HistoryQuery): Promise<Awaited<ReturnType<typeof historyOf>>> {
    const source = replaySource(this.core);
    return withinSpan(() => replaySource(this.core), query.since, historyOf(source, { ...query, ranges: query.ranges && mergeRanges(query.ranges) }));
  }

  /** Rolls back what `by` changed in (since, until] (undo.ts); `preview` changes nothing. */
  rollback(by: string, since: number, until: number, region: CellRange[] | undefined, operator: string, preview: boolean): Promise<RollbackPlan> {
    return this.undo.rollback(by, since, until, region, operator, preview);
  }

  /** Resolves when no snapshot turn (and so no prune) is running. */
  pruned(): Promise<void> {
    return this.snapshotter.idle();
  }

  /** The state of backups and shipping, for health and metrics. */
  status() {
    return backupStatus(this.statusParts());
  }

  /** How long unsaved changes may wait before the strict health check fails. */
  get saveDeadlineMs(): number {
    return saveDeadlineMs(this.statusParts());
  }

  private statusParts(): StatusParts {
    return {
      core: this.core, writes: this.writes, shipper: this.shipper, snapshotter: this.snapshotter, budget: this.budget,
      restoredFrom: this.restoredFrom, replayed: this.replayed, wal: this.walOpen ? this.options.wal : undefined,
      intervalMs: this.options.intervalMs, shipIntervalMs: this.options.shipIntervalMs, putBudget: this.options.putBudget ?? 0,
    };
  }

  /** The ship loop's step: what the log holds now, unless fenced. */
  private async shipStep(): Promise<void> {
    if (this.core.commits.fenced) return;
    if (this.leadership && !this.leadership.mayCommit) return; // a lapsed lease commits nothing: a new leader may be taking over
    if (this.core.changeLog.lastLsn > this.core.storeLsn) await this.shipper.shipAll('schedule');
  }
}
