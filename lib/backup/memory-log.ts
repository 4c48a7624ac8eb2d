/**
 * The change log when the write-ahead log is off (WAL_DIR empty): changes are kept in memory only until
 * they are shipped, so a process crash loses what was not shipped yet. Bounded: past `maxBytes` the log
 * drops everything and reports a gap, and a snapshot carries the world instead (snapshotter.ts).
 */
import { randomBytes } from 'node:crypto';
import { batchOf, NO_CHANGES } from './change-batch.js';
import { changeBytes, type Change, type Run } from './change.js';
import { checkPosition, type ChangeLog, type LogCursor, type UnshippedChanges } from './change-log.js';

/** A ChangeLog in memory; written the moment a change is appended. */
export class MemoryLog implements ChangeLog {
  readonly failure = undefined;
  lineage = randomBytes(8).toString('hex');
  lastLsn: number;
  private changes: Change[] = [];
  private bytes = 0;
  private gapUntil = 0;

  /** `firstLsn`: the lsn the first change gets. Changes are kept until released (shipped or snapshotted), at most `maxBytes` of cells. */
  constructor(firstLsn: number, private readonly maxBytes = 64 * 1024 * 1024) {
    this.lastLsn = firstLsn - 1;
  }

  append(at: number, by: string, runs: Run[]): Change {
    const change: Change = { lsn: ++this.lastLsn, at, by, runs };
    this.changes.push(change);
    this.bytes += changeBytes(change);
    if (this.bytes > this.maxBytes) {
      this.changes = [];
      this.bytes = 0;
      this.gapUntil = this.lastLsn;
    }
    return change;
  }

  /** Every change is durable (as far as this log goes) the moment it is appended. */
  get durableLsn(): number {
    return this.lastLsn;
  }

  afterWrite(done: (err?: Error) => void): void {
    done();
  }

  async unshipped(_cursor: LogCursor | undefined, floor: number, maxBytes: number): Promise<UnshippedChanges> {
    if (this.gapUntil > floor) return { changes: NO_CHANGES, next: undefined, gap: true, more: false };
    const out: Change[] = [];
    let bytes = 0;
    for (const change of this.changes) {
      if (change.lsn <= floor) continue;
      const size = changeBytes(change);
      if ((out.length > 0 && bytes + size > maxBytes) || size > maxBytes) return { changes: batchOf(out), next: undefined, gap: false, more: true };
      out.push(change);
      bytes += size;
    }
    return { changes: batchOf(out), next: undefined, gap: false, more: false };
  }

  async follow(lineage: string, lsn: number): Promise<void> {
    checkPosition(lineage, lsn);
    this.changes = [];
    this.bytes = 0;
    // A reader from below lsn would miss the changes up to it, which this log never held: it must take a snapshot.
    this.gapUntil = lsn;
    this.lineage = lineage;
    this.lastLsn = lsn;
  }

  async release(lsn: number): Promise<void> {
    let drop = 0;
    while (drop < this.changes.length && this.changes[drop]!.lsn <= lsn) this.bytes -= changeBytes(this.changes[drop++]!);
    if (drop > 0) this.changes = this.changes.slice(drop);
  }

  async close(): Promise<void> {}
}
