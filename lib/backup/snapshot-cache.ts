/**
 * One decoded snapshot kept in memory for a while, so that reads of the past that start from it again (a map
 * dragged through time) skip reading, decompressing and hashing the whole snapshot each time. It holds one
 * world's worth of bytes while in use and lets go of them `ttlMs` after the last read.
 */

interface Entry { key: string; bytes: Promise<Uint8Array>; timer: NodeJS.Timeout | undefined }

/** Keeps the most recently read snapshot (by its object key: a snapshot object never changes). */
export class SnapshotCache {
  private entry: Entry | undefined;

  constructor(private readonly ttlMs: number) {}

  /** The whole snapshot `key`: the kept bytes, or those `load` gives (then kept instead). Never modify them. */
  get(key: string, load: () => Promise<Uint8Array>): Promise<Uint8Array> {
    let entry = this.entry;
    if (entry?.key !== key) {
      this.clear();
      entry = { key, bytes: load(), timer: undefined };
      this.entry = entry;
      // A failed load is not kept: the next read tries again.
      entry.bytes.catch(() => {
        if (this.entry === entry) this.clear();
      });
    }
    this.touch(entry);
    return entry.bytes;
  }

  /** The key of the kept snapshot, or undefined. */
  get kept(): string | undefined {
    return this.entry?.key;
  }

  /** Lets go of the kept snapshot. */
  clear(): void {
    if (this.entry?.timer) clearTimeout(this.entry.timer);
    this.entry = undefined;
  }

  /** Restarts the entry's time to live; the timer never keeps the process up. */
  private touch(entry: Entry): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      if (this.entry === entry) this.entry = undefined;
    }, this.ttlMs);
    entry.timer.unref();
  }
}
