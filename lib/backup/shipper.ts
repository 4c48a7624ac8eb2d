/**
 * The shipper: reads the changes the store lacks back from the log and commits them as change sets, one
 * shipment a cadence (its loop runs in backups.ts), and before every snapshot the changes it covers. A change
 * of any size goes to a change set: one over SHIP_MAX_BYTES alone in its own, stored as an object.
 */
import { randomBytes } from 'node:crypto';
import type { PutBudget } from './budget.js';
import type { LogCursor } from './change-log.js';
import { INLINE_LIMIT_BYTES, packChangeSet } from './change-set.js';
import { FencedError, type ChangesCommit } from './commit-log.js';
import { compactTime, describe, type Core } from './core.js';

/** A change set carries about this many bytes of cells at most; a bigger change goes alone in its own. */
const SHIP_MAX_BYTES = 8 * 1024 * 1024;
/** Shipments remembered, so a snapshot knows which of them it does not cover. */
const RECENT_SHIPMENTS = 1000;

/** Ships one world's changes to its store. */
export class Shipper {
  readonly stats = {
    shipsTotal: 0,
    shipFailures: 0,
    shipConsecutiveFailures: 0,
    lastShip: null as { at: string; seq: number; changes: number; compressedBytes: number } | null,
    lastShipError: null as { at: string; error: string } | null,
  };
  private cursor: LogCursor | undefined;
  private recent: Array<{ seq: number; toLsn: number }> = [];

  /** `onGap`: the log lost changes the store lacks (a memory log that overflowed): a snapshot must carry them. */
  constructor(private readonly core: Core, private readonly budget: PutBudget, private readonly onGap: () => void) {}

  /**
   * Ships every change the log held when it began, in a turn of the commit lock. Changes made while it ships
   * wait for the next cadence: under constant writes that is one shipment a cadence, not one after another.
   */
  shipAll(reason: string): Promise<void> {
    return this.core.mutex.run(() => this.shipThrough(this.core.changeLog.lastLsn, reason));
  }

  /** Ships change sets until the store holds the log through `target`; the caller holds the commit lock. */
  async shipThrough(target: number, reason: string): Promise<void> {
    try {
      while (this.core.storeLsn < target) {
        if (!(await this.shipOnce(reason))) break;
      }
      this.stats.shipConsecutiveFailures = 0;
    } catch (err) {
      this.stats.shipFailures++;
      this.stats.shipConsecutiveFailures++;
      this.stats.lastShipError = { at: new Date(this.core.now()).toISOString(), error: describe(err) };
      if (!(err instanceof FencedError)) this.core.log.error('ship_failed', { reason, consecutiveFailures: this.stats.shipConsecutiveFailures, err });
      throw err;
    }
  }

  /** The first seq of a change set holding changes after `lsn` (a snapshot at `lsn` lacks them), or 0 when none is committed yet. */
  firstSetAfter(lsn: number): number {
    return this.recent.find((s) => s.toLsn > lsn)?.seq ?? 0;
  }

  /** Ships one change set; false when there was nothing to ship (or the log has a gap). */
  private async shipOnce(reason: string): Promise<boolean> {
    const { core } = this;
    const readAt = core.now(); // every change the read misses is made after this
    let read = await core.changeLog.unshipped(this.cursor, core.storeLsn, SHIP_MAX_BYTES);
    let next = read.next;
    let alone = false;
    if (read.gap) {
      this.onGap();
      return false;
    }
    if (read.more && read.changes.count === 0) {
      // The next change alone is over the limit: it goes in a set of its own; the cursor stays, and the next
      // read steps over it by lsn.
      read = await core.changeLog.unshipped(this.cursor, core.storeLsn, Number.MAX_SAFE_INTEGER);
      read = { ...read, changes: read.changes.head(1) };
      next = this.cursor;
      alone = true;
    }
    if (read.changes.count === 0) {
      this.cursor = next;
      return false;
    }
    this.budget.spend();
    const packed = await packChangeSet(read.changes);
    const first = read.changes.first()!;
    const last = read.changes.last()!;
    const name = `${compactTime(new Date(last.at))}-${randomBytes(4).toString('hex')}`;
    const inline = !alone && packed.body.byteLength <= INLINE_LIMIT_BYTES; // a big change is an object of its own, however well it compresses
    const key = `${core.prefix}changes/${name}.bin`;
    if (!inline) {
      this.budget.spend();
      await core.store.put(key, packed.body);
    }
    const commit = await core.commits.append({
      kind: 'changes', reason, name, lineage: core.changeLog.lineage, lsn: last.lsn, fromLsn: first.lsn, toLsn: last.lsn, count: read.changes.count,
      firstAt: new Date(first.at).toISOString(), lastAt: new Date(last.at).toISOString(), bytes: packed.bytes, compressedBytes: packed.body.byteLength,
      sha256: packed.sha256, cells: core.cube.cells, ...(inline ? { inline: packed.body.toString('base64') } : { key }),
    } as Omit<ChangesCommit, 'format' | 'seq' | 'writer' | 'committedAt'>);
    core.storeLsn = last.lsn;
    core.storeAt = Math.max(core.storeAt, alone ? last.at : readAt);
    this.cursor = next;
    this.recent.push({ seq: commit.seq, toLsn: last.lsn });
    if (this.recent.length > RECENT_SHIPMENTS) this.recent.splice(0, this.recent.length - RECENT_SHIPMENTS);
    this.stats.shipsTotal++;
    this.stats.lastShip = { at: new Date(core.now()).toISOString(), seq: commit.seq, changes: read.changes.count, compressedBytes: packed.body.byteLength };
    void core.changeLog.release(core.storeLsn).catch((err: unknown) => core.log.warn('wal_release_failed', { err }));
    return true;
  }
}
