/**
 * Undo: putting the world back by a restore of a kept snapshot, a restore to an instant (all or part of the
 * world), or a rollback of one author's changes. Each is one change through the write path (logged, shipped,
 * fenced and attributed like any other), so a later undo can undo it too.
 */
import { CELL_BYTES } from '../cube.js';
import { publicInfo, replaySource, type Core } from './core.js';
import { cellsAt, firstRangeEndingAfter, mergeRanges, type CellRange } from './history.js';
import { cellsAtInstants, type PastRead } from './past-reads.js';
import { planRollback, withoutRaced, type RollbackPlan } from './rollback-plan.js';
import { withinSpan } from './replay.js';
import { loadSnapshot, type BackupInfo } from './snapshot.js';
import { SnapshotCache } from './snapshot-cache.js';
import type { WritePath } from './writes.js';

/** No backup of that name is kept. */
export class UnknownBackupError extends Error {
  override name = 'UnknownBackupError';
}

/** Who says why writes are refused now (checked before slow work, so a refused undo reads nothing). */
type Refusal = () => Error | undefined;

/** The undo operations of one world. */
export class Undo {
  /** The snapshot the map's reads of the past start from, kept a minute after the last (see cellsAt's `keep`). */
  readonly keptSnapshot = new SnapshotCache(60_000);

  constructor(private readonly core: Core, private readonly writes: WritePath, private readonly refusal: Refusal) {}

  /**
   * Makes the kept snapshot `name` the world, as one change by `by`: loaded and verified aside first, so a
   * failure changes nothing. The change reaches history like any other.
   */
  async restoreBackup(name: string, by: string): Promise<BackupInfo> {
    this.refuse();
    const ref = this.core.kept.find((s) => s.name === name);
    if (!ref) throw new UnknownBackupError(`no kept backup is named ${JSON.stringify(name)}`);
    const cells = new Uint8Array(this.core.cube.bytes.byteLength);
    await loadSnapshot(this.core.store, ref.key, cells, ref.sha256, `backup ${name}`);
    await this.writes.apply({ runs: [{ start: 0, bytes: cells }], by });
    this.core.log.info('world_restored', { from: 'backup', name, reason: 'request', by });
    this.core.collectGarbage?.();
    return publicInfo(ref);
  }

  /**
   * The cells of `ranges` as they were at `at` (ms): one buffer per range, as asked (they may overlap).
   * `keep`: reads that will come again near this instant (the map) keep the snapshot they start from in memory for a minute.
   */
  async cellsAt(at: number, ranges: CellRange[], options: { keep?: boolean } = {}): Promise<Uint8Array[]> {
    if (!options.keep) return (await this.readsAt([{ at, ranges }]))[0]!;
    const merged = mergeRanges(ranges);
    const parts = await withinSpan(() => replaySource(this.core), at, cellsAt(replaySource(this.core), at, merged, this.keptSnapshot));
    // Each asked range out of the merged one that holds it.
    return ranges.map((r) => {
      if (r.count === 0 || merged.length === 0) return new Uint8Array(0); // an empty range
      const i = firstRangeEndingAfter(merged, r.start); // a binary search: a box can be 65,536 ranges
      const offset = (r.start - merged[i]!.start) * CELL_BYTES;
      return parts[i]!.subarray(offset, offset + r.count * CELL_BYTES);
    });
  }

  /** The cells of each read as they were at its instant, all from one replay (see cellsAtInstants). OutsideHistoryError outside the span. */
  readsAt(reads: PastRead[]): Promise<Uint8Array[][]> {
    const earliest = Math.min(...reads.map((r) => r.at));
    return withinSpan(() => replaySource(this.core), earliest, cellsAtInstants(replaySource(this.core), reads));
  }

  /**
   * Restores `ranges` (or, undefined, the whole world) to what they were at `at`, as one change by `by`;
   * every other cell keeps its newest value. Resolves once the log holds it, with the cells restored.
   */
  async restoreAt(at: number, ranges: CellRange[] | undefined, by: string): Promise<number> {
    this.refuse();
    const wanted = mergeRanges(ranges ?? [{ start: 0, count: this.core.cube.cells }]);
    const past = await this.cellsAt(at, wanted);
    await this.writes.apply({ runs: wanted.map((r, i) => ({ start: r.start, bytes: past[i]! })), by });
    const cells = wanted.reduce((n, r) => n + r.count, 0);
    this.core.log.info('world_restored', { from: 'history', at: new Date(at).toISOString(), ranges: wanted.length, cells, by });
    return cells;
  }

  /**
   * Rolls back what `by` changed in (since, until] (within `region`): each such cell gets the value it had
   * before their first change in the window, unless someone else changed it after their last. One change by
   * `operator`; `preview` answers the plan and changes nothing. A cell written by anyone between the plan and
   * the step (seen by a write watcher, whatever the value) is left and listed as skipped.
   */
  async rollback(by: string, since: number, until: number, region: CellRange[] | undefined, operator: string, preview: boolean): Promise<RollbackPlan> {
    if (!preview) this.refuse();
    const watcher = preview ? undefined : this.writes.watchWrites();
    try {
      const source = replaySource(this.core);
      const plan = await withinSpan(() => replaySource(this.core), since, planRollback(source, by, since, until, region && mergeRanges(region)));
      if (!watcher) return plan;
      this.refuse();
      const { kept, skipped } = watcher.filter(plan.restore);
      const applied = withoutRaced(plan, kept, skipped, this.core.cube.bytes);
      if (applied.restore.length > 0) await this.writes.apply({ runs: applied.restore, by: operator });
      this.core.log.info('rollback', { by, since: new Date(since).toISOString(), until: new Date(until).toISOString(), restored: applied.restored, skipped: applied.skipped, operator });
      return applied;
    } finally {
      watcher?.close();
    }
  }

  private refuse(): void {
    const refused = this.refusal();
    if (refused) throw refused;
  }
}
