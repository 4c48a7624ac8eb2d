/**
 * The one write path: every change to the world's cells goes through apply() (on a standby, through
 * replicate(), the leader's changes in its order). It refuses while writes are refused, keeps the cells'
 * before-images, writes the world, appends to the log (its only caller) and settles once the log holds the
 * change and the gate lets it (the leader's sync standby holds it too, and the lease is held); when the log
 * fails it undoes every change not yet durable, newest first, so the world never keeps a change the log lost.
 * Reads wait on settled().
 */
import { CELL_BYTES, type Cube } from '../cube.js';
import type { Change, Run } from './change.js';
import type { ChangeLog } from './change-log.js';
import { mergeRanges, type CellRange } from './history.js';

/** Writes are refused for now (the log cannot be written, or another server took over): the answer is 503. */
export class WritesRefusedError extends Error {
  override name = 'WritesRefusedError';
}

/** A change as routes hand it over: cells written from each run's start (later runs win), and its author ('' when unknown). */
export interface ChangeRequest { runs: Run[]; by: string }

/** A change applied to the world and appended, not yet settled (known written and let through by the gate). */
interface Pending {
  lsn: number;
  runs: Run[];
  before: Uint8Array[];
  settle: (err?: Error) => void;
  /** Set by abandon(): the error this change gets when it lands, instead of its acknowledgement. */
  abandoned?: Error;
}

/** The leader lost its lease before a change could be acknowledged: it may or may not survive (503). */
export class LeadershipLostError extends WritesRefusedError {
  override name = 'LeadershipLostError';
}

/** Ranges a watcher holds at most; beyond them it says tooMany and forgets them. */
const WATCH_CAP = 65_536;
/** Marks of the first change after a pause, one a second at most (for "unsaved since"). */
const MARK_EVERY_MS = 1000;
const SETTLED: Promise<void> = Promise.resolve();

/** Collects the cells written by apply() from its creation until close(); see WritePath.watchWrites. */
export interface WriteWatcher {
  /** True when more ranges were written than it keeps: treat every cell as written. */
  readonly tooMany: boolean;
  /** `runs` without the cells written since the watcher began (kept), and those cells (skipped, sorted and disjoint). */
  filter(runs: Run[]): { kept: Run[]; skipped: CellRange[] };
  close(): void;
}

/** The write path of one world and its log. */
export class WritePath {
  private pending: Pending[] = [];
  private readonly settlers: Array<{ lsn: number; resolve: () => void }> = [];
  private readonly watchers = new Set<Watcher>();
  private marks: Array<{ lsn: number; at: number }> = [];
  /** The newest lsn the log has told durable. */
  private localDurable = 0;
  private readonly durableListeners = new Set<(lsn: number) => void>();
  /**
   * The newest lsn that may settle now (Infinity: every durable one), asked whenever something may have moved;
   * undefined: durable is enough. The leader's replication sets it (lib/backup/replicator.ts).
   */
  gate: (() => number) | undefined;

  /**
   * `changeLog` is read at each call (boot replaces the log); `refusal` says why writes are refused now, if
   * they are; `store` is how far the store holds the log, and since when later changes were made.
   */
  constructor(
    private readonly cube: Cube,
    private readonly changeLog: () => ChangeLog,
    private readonly refusal: () => Error | undefined,
    private readonly store: () => { storeLsn: number; storeAt: number },
    private readonly now: () => number,
  ) {}

  /**
   * Applies `change` as one step: refused (WritesRefusedError or FencedError, nothing written) while writes
   * are; else the world, then the log; resolves once the log holds it (and the gate lets it through). On the
   * log's failure the change (and every other one not durable) is undone and the promise rejects with
   * WritesRefusedError.
   */
  apply(change: ChangeRequest): Promise<void> {
    return new Promise((resolve, reject) => this.applyThen(change, (err) => (err ? reject(err) : resolve())));
  }

  /** apply() with a callback instead of a promise: POST /request's hot path makes none. `done` is called once. */
  applyThen(change: ChangeRequest, done: (err?: Error) => void): void {
    const refused = this.refusal();
    if (refused) {
      done(refused);
      return;
    }
    this.record(this.now(), change.by, change.runs, undefined, done);
  }

  /**
   * A standby's step: the leader's change `change`, applied and logged under the same lsn (its log follows
   * the leader's lineage, see ChangeLog.follow). Throws, writing nothing, unless it is the next lsn.
   */
  replicate(change: Change, done: (err?: Error) => void): void {
    const expected = this.changeLog().lastLsn + 1;
    if (change.lsn !== expected) throw new RangeError(`change ${change.lsn} arrived where ${expected} was due`);
    this.record(change.at, change.by, change.runs, change.lsn, done);
  }

  /** The lsn of the newest change appended (a standby's position). */
  get lastLsn(): number {
    return this.changeLog().lastLsn;
  }

  /** Calls `listener` with the lsn each time the log reports changes durable (the leader's stream sends them); returns a function that stops it. */
  onDurable(listener: (lsn: number) => void): () => void {
    this.durableListeners.add(listener);
    return () => this.durableListeners.delete(listener);
  }

  /**
   * Switches the log to continue `lineage` after `lsn` (ChangeLog.follow: a standby following a new leader, a
   * takeover's own lineage), and counts durable lsns from there. Call once settled(): nothing may be pending.
   */
  async follow(lineage: string, lsn: number): Promise<void> {
    if (this.pending.length > 0) throw new Error('follow() with changes pending');
    await this.changeLog().follow(lineage, lsn);
    this.localDurable = lsn;
    this.marks = [];
  }

  /** The gate may have moved (an ack, a state change, a renewed lease): settle what it lets through now. */
  reconsider(): void {
    this.advance();
  }

  /**
   * This server stopped leading: every change not yet acknowledged fails with `err` (it stays in the world and
   * the log; the caller reloads the world from the new leader's state, which may or may not hold it). Those
   * already durable fail now. Those still on their way to the disk stay pending, so reads and settled() still
   * wait for them and a failing log still undoes them, but they fail too once they land: the gate goes with the
   * replicator, and landing would otherwise acknowledge a write the new leader never got (a zombie's 200).
   */
  abandon(err: Error): void {
    const waiting = this.pending.filter((p) => p.lsn <= this.localDurable);
    this.pending = this.pending.filter((p) => p.lsn > this.localDurable);
    for (const change of waiting) change.settle(err);
    for (const change of this.pending) change.abandoned = err;
    this.wakeReaders();
  }

  /** The world, the log, and the pending entry of one change; `lsn` is the number it must get (a standby's), if any. */
  private record(at: number, by: string, runs: Run[], lsn: number | undefined, done: (err?: Error) => void): void {
    const bytes = this.cube.bytes;
    const before = runs.map((run) => bytes.slice(run.start * CELL_BYTES, run.start * CELL_BYTES + run.bytes.byteLength));
    for (const run of runs) this.cube.writeRange(run.start, run.bytes);
    const log = this.changeLog();
    const appended = log.append(at, by, runs).lsn;
    if (lsn !== undefined && appended !== lsn) throw new RangeError(`the log numbered change ${lsn} as ${appended}`);
    this.mark(appended, at);
    for (const watcher of this.watchers) watcher.add(runs);
    this.pending.push({ lsn: appended, runs, before, settle: done });
    log.afterWrite((err) => (err ? this.undo(err) : this.durable(appended)));
  }

  /** True when no change waits for the log: a read may answer from the world at once. */
  get idle(): boolean {
    return this.pending.length === 0;
  }

  /** Resolves once every change applied before the call is durable or undone: a read after it shows only what the log holds. */
  settled(): Promise<void> {
    const last = this.pending.at(-1);
    if (!last) return SETTLED;
    return new Promise((resolve) => this.settlers.push({ lsn: last.lsn, resolve }));
  }

  /** A watcher of the cells apply() writes from now until it is closed (bounded: over a cap it says tooMany). */
  watchWrites(): WriteWatcher {
    const watcher = new Watcher(() => this.watchers.delete(watcher));
    this.watchers.add(watcher);
    return watcher;
  }

  /**
   * When the oldest change the store lacks was made, or null when it lacks none: the mark at or before it, or
   * the instant the store's coverage was taken when that is later (never later than the change itself).
   */
  unsavedSince(): number | null {
    const { storeLsn: floor, storeAt } = this.store();
    if (this.changeLog().lastLsn <= floor) return null;
    this.dropMarksBelow(floor);
    return Math.max(this.marks[0]?.at ?? storeAt, storeAt);
  }

  /**
   * After a boot (the first, or a demoted leader's reload as a standby): durable lsns count from the log's
   * position, and changes the log replayed that the store lacks count as unsaved from now.
   */
  replayed(): void {
    const { storeLsn } = this.store();
    this.localDurable = this.changeLog().lastLsn;
    this.marks = this.changeLog().lastLsn > storeLsn ? [{ lsn: storeLsn + 1, at: this.now() }] : [];
  }

  /** Drops the marks of changes the store holds through `floor`, keeping the one at or before the first it lacks. */
  private dropMarksBelow(floor: number): void {
    while (this.marks.length > 1 && this.marks[1]!.lsn <= floor + 1) this.marks.shift();
  }

  private mark(lsn: number, at: number): void {
    const last = this.marks.at(-1);
    const floor = this.store().storeLsn;
    if (last && at - last.at < MARK_EVERY_MS && last.lsn > floor) return;
    this.marks.push({ lsn, at });
    this.dropMarksBelow(floor);
  }

  private durable(lsn: number): void {
    if (lsn <= this.localDurable) return;
    this.localDurable = lsn;
    for (const listener of this.durableListeners) listener(lsn);
    this.advance();
  }

  /** Settles the pending changes that are durable and that the gate lets through. */
  private advance(): void {
    const limit = Math.min(this.localDurable, this.gate?.() ?? Number.POSITIVE_INFINITY);
    let n = 0;
    while (n < this.pending.length && this.pending[n]!.lsn <= limit) n++;
    if (n === 0) return;
    for (const change of this.pending.splice(0, n)) change.settle(change.abandoned);
    this.wakeReaders();
  }

  /** The log lost every change not yet durable: put their cells back, newest first, and refuse them. */
  private undo(cause: Error): void {
    // Durable changes waiting for the gate are kept: the log holds them.
    const first = this.pending.findIndex((p) => p.lsn > this.localDurable);
    if (first < 0) return;
    const lost = this.pending.splice(first);
    for (let i = lost.length - 1; i >= 0; i--) {
      const change = lost[i]!;
      for (let r = change.runs.length - 1; r >= 0; r--) this.cube.writeRange(change.runs[r]!.start, change.before[r]!);
    }
    const refused = new WritesRefusedError(`the change could not be written to the log (${cause.message}); nothing was changed, retry`);
    for (const change of lost) change.settle(refused);
    this.wakeReaders();
  }

  private wakeReaders(): void {
    const oldest = this.pending[0]?.lsn ?? Number.POSITIVE_INFINITY;
    let n = 0;
    while (n < this.settlers.length && this.settlers[n]!.lsn < oldest) n++;
    for (const settler of this.settlers.splice(0, n)) settler.resolve();
  }
}

/** The ranges written while a rollback plans (see WriteWatcher). */
class Watcher implements WriteWatcher {
  tooMany = false;
  private ranges: CellRange[] = [];

  constructor(private readonly stop: () => void) {}

  add(runs: Run[]): void {
    if (this.tooMany) return;
    for (const run of runs) this.ranges.push({ start: run.start, count: run.bytes.byteLength / CELL_BYTES });
    if (this.ranges.length > WATCH_CAP) {
      this.tooMany = true;
      this.ranges = [];
    }
  }

  filter(runs: Run[]): { kept: Run[]; skipped: CellRange[] } {
    if (this.tooMany) return { kept: [], skipped: runs.map((r) => ({ start: r.start, count: r.bytes.byteLength / CELL_BYTES })) };
    const written = mergeRanges(this.ranges);
    const kept: Run[] = [];
    const skipped: CellRange[] = [];
    for (const run of runs) {
      let at = run.start;
      const end = run.start + run.bytes.byteLength / CELL_BYTES;
      for (const w of written) {
        const from = Math.max(at, w.start);
        const to = Math.min(end, w.start + w.count);
        if (from >= to) continue;
        if (from > at) kept.push({ start: at, bytes: run.bytes.subarray((at - run.start) * CELL_BYTES, (from - run.start) * CELL_BYTES) });
        skipped.push({ start: from, count: to - from });
        at = to;
      }
      if (at < end) kept.push({ start: at, bytes: run.bytes.subarray((at - run.start) * CELL_BYTES) });
    }
    return { kept, skipped: mergeRanges(skipped) };
  }

  close(): void {
    this.stop();
  }
}
