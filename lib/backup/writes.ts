/**
 * The one write path: every change to the world's cells goes through apply(). It refuses while writes are
 * refused, keeps the cells' before-images, writes the world, appends to the log (its only caller) and
 * resolves once the log holds the change; when the log fails it undoes every change not yet durable, newest
 * first, so the world never keeps a change the log lost. Reads wait on settled().
 */
import { CELL_BYTES, type Cube } from '../cube.js';
import type { Run } from './change.js';
import type { ChangeLog } from './change-log.js';
import { mergeRanges, type CellRange } from './history.js';

/** Writes are refused for now (the log cannot be written, or another server took over): the answer is 503. */
export class WritesRefusedError extends Error {
  override name = 'WritesRefusedError';
}

/** A change as routes hand it over: cells written from each run's start (later runs win), and its author ('' when unknown). */
export interface ChangeRequest { runs: Run[]; by: string }

/** A change applied to the world and appended, not yet known written. */
interface Pending { lsn: number; runs: Run[]; before: Uint8Array[]; settle: (err?: Error) => void }

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
   * are; else the world, then the log; resolves once the log holds it. On the log's failure the change (and
   * every other one not durable) is undone and the promise rejects with WritesRefusedError.
   */
  apply(change: ChangeRequest): Promise<void> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    const bytes = this.cube.bytes;
    const before = change.runs.map((run) => bytes.slice(run.start * CELL_BYTES, run.start * CELL_BYTES + run.bytes.byteLength));
    for (const run of change.runs) this.cube.writeRange(run.start, run.bytes);
    const log = this.changeLog();
    const at = this.now();
    const { lsn } = log.append(at, change.by, change.runs);
    this.mark(lsn, at);
    for (const watcher of this.watchers) watcher.add(change.runs);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ lsn, runs: change.runs, before, settle: (err) => (err ? reject(err) : resolve()) });
      log.afterWrite((err) => (err ? this.undo(err) : this.durable(lsn)));
    });
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

  /** After boot: changes the log replayed that the store lacks count as unsaved from now. */
  replayed(): void {
    const { storeLsn } = this.store();
    if (this.changeLog().lastLsn > storeLsn) this.marks = [{ lsn: storeLsn + 1, at: this.now() }];
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
    while (this.pending.length > 0 && this.pending[0]!.lsn <= lsn) this.pending.shift()!.settle();
    this.wakeReaders();
  }

  /** The log lost every change not yet durable: put their cells back, newest first, and refuse them. */
  private undo(cause: Error): void {
    if (this.pending.length === 0) return;
    const lost = this.pending;
    this.pending = [];
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
