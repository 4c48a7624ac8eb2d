/**
 * The commit log: one small object per commit, `commits/<seq>.json`, created with a conditional write
 * (If-None-Match: *) and never rewritten. The highest seq is the newest state. Whoever takes a seq first
 * owns it, so a server whose next seq is already taken (a newer server claimed it) is fenced: it stops.
 *
 * A commit is a snapshot (the whole world, in `backups/`), a change set (the changes of one shipping
 * interval, inline or in `changes/`), or a takeover (a server started and continues from here).
 */
import { randomBytes } from 'node:crypto';
import type { Log } from '../log.js';
import type { BlobStore } from '../store.js';

/** A kept snapshot, as the newest snapshot commit lists its predecessors; `committedAt` places it in the sequence of commits. */
export interface SnapshotRef { seq: number; name: string; key: string; createdAt: string; committedAt?: string; bytes: number; compressedBytes: number; sha256: string; replayFrom: number }

/** Fields every commit carries. `lineage`/`lsn`: the store holds every change of that log lineage up to lsn. */
interface CommitBase { format: 2; seq: number; writer: string; committedAt: string; reason: string; lineage: string; lsn: number }

/** A full snapshot of the world. Changes of its lineage up to `snapshotLsn` are in it; boot applies change sets from `replayFrom` on. */
export interface SnapshotCommit extends CommitBase {
  kind: 'snapshot';
  name: string; key: string; createdAt: string; cells: number; bytes: number; compressedBytes: number; sha256: string;
  snapshotLsn: number;
  /** The first seq whose change set may hold changes the snapshot lacks (sets shipped while it uploaded); 0: the one after it. */
  replayFrom: number;
  /** The snapshots kept before this one, newest first, so listing and pruning read one commit, not all. */
  history?: SnapshotRef[];
}

/** The changes with lsn in [fromLsn, toLsn] of `lineage`, encoded (change.ts) and gzip-compressed (change-set.ts), inline (base64) or in `key`. */
export interface ChangesCommit extends CommitBase {
  kind: 'changes';
  name: string; fromLsn: number; toLsn: number; count: number; firstAt: string; lastAt: string;
  bytes: number; compressedBytes: number; sha256: string;
  inline?: string; key?: string;
  /** The world's size (CUBE_CELLS) when shipped, so no replay applies the set to a world of another; absent in sets shipped before it was recorded. */
  cells?: number;
}

/** A server started here, continuing the store's state; it holds no data. */
export interface TakeoverCommit extends CommitBase { kind: 'takeover' }

export type Commit = SnapshotCommit | ChangesCommit | TakeoverCommit;

/** Another server committed to this prefix after we last did: our commits would overwrite its world. */
export class FencedError extends Error {
  override name = 'FencedError';
}

/** A commit object that is missing or not a cubecache commit. */
export class UnreadableCommitError extends Error {
  override name = 'UnreadableCommitError';
}

/**
 * Change-set commits kept in memory at most, by count and by the bytes of their inline changes (snapshots and
 * takeovers are always kept). The bytes bound it: a busy world ships a change set of tens of KiB a second, up
 * to INLINE_LIMIT_BYTES, and every one shipped is remembered, so a count alone let an hour of shipping hold
 * 100 MiB of history nobody asked for (up to 1.4 GiB at the inline limit). 16 MiB holds an hour at 100
 * writes/s (about 2.8 KiB a set), so walks over that hour stay in memory (bench:durability, part 5); a busier
 * world keeps its last ten minutes or so. An evicted set is one small GET away.
 */
const CACHED_CHANGE_SETS = 4096;
export const CACHED_CHANGE_SET_BYTES = 16 * 1024 * 1024;
/** What a cached change set counts besides its inline changes: its other fields, roughly. */
const CHANGE_SET_OVERHEAD_BYTES = 512;

/** Reads of commit objects in flight at once when walking the log (each is a small GET). */
const READ_AHEAD = 16;

/** The commit log of one prefix, as one writer (random per start) sees and extends it. */
export class CommitLog {
  readonly writer = randomBytes(8).toString('hex');
  lastSeq = 0;
  fenced: { seq: number; writer: string | undefined } | null = null;
  private readonly cache = new Map<number, Commit>();
  /** The change-set commits in the cache, least recently read first, with the bytes each counts. */
  private readonly changeSets = new Map<number, number>();
  private changeSetBytes = 0;

  constructor(private readonly store: BlobStore, private readonly prefix: string, private readonly log: Log, private readonly now: () => number) {}

  /** The seqs present, oldest first. */
  async seqs(): Promise<number[]> {
    const prefix = `${this.prefix}commits/`;
    const seqs: number[] = [];
    for (const key of await this.store.list(prefix)) {
      const match = /^(\d{12})\.json$/.exec(key.slice(prefix.length));
      if (match) seqs.push(Number(match[1]));
    }
    return seqs.sort((a, b) => a - b);
  }

  /** The commit at `seq` (format 1 commits, written before change shipping, read as snapshots). */
  async read(seq: number): Promise<Commit> {
    const cached = this.cache.get(seq);
    if (cached) return cached;
    const key = this.key(seq);
    const body = await this.store.get(key);
    if (body === undefined) throw new UnreadableCommitError(`commit ${key} is missing`);
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(new TextDecoder().decode(body)) as Record<string, unknown>;
    } catch {
      throw new UnreadableCommitError(`commit ${key} is not valid JSON`);
    }
    const commit = upgrade(raw, seq);
    if (!commit) throw new UnreadableCommitError(`commit ${key} is not a cubecache commit`);
    this.remember(commit); // commits are never rewritten, so a cached one stays true
    return commit;
  }

  /** The commits at `seqs`, newest first (see inOrder). */
  newestFirst(seqs: number[]): AsyncGenerator<Commit> {
    return this.inOrder([...seqs].sort((a, b) => b - a));
  }

  /** The commits at `order`, in that order, read a few at a time ahead of the caller; stops when the caller does. */
  async *inOrder(order: number[]): AsyncGenerator<Commit> {
    const reads: Array<Promise<Commit>> = [];
    const settle = (p: Promise<Commit>) => { p.catch(() => undefined); return p; };
    for (let i = 0; i < Math.min(READ_AHEAD, order.length); i++) reads.push(settle(this.read(order[i]!)));
    for (let i = 0; i < order.length; i++) {
      const next = i + READ_AHEAD;
      if (next < order.length) reads.push(settle(this.read(order[next]!)));
      yield await reads[i]!;
    }
  }

  /** Writes `commit` at its seq if nobody has; false if somebody has. */
  async claim(commit: Commit): Promise<boolean> {
    const body = new TextEncoder().encode(JSON.stringify(commit) + '\n');
    const created = await this.store.putIfAbsent(this.key(commit.seq), body);
    if (created) {
      this.remember(commit);
      this.lastSeq = Math.max(this.lastSeq, commit.seq);
    }
    return created;
  }

  /** Commits at the next seq that is ours to take and returns it; FencedError (and fenced set) if another server took it. */
  async append(fields: Omit<Commit, 'format' | 'seq' | 'writer' | 'committedAt'>): Promise<Commit> {
    if (this.fenced) throw this.fencedError();
    for (;;) {
      const seq = this.lastSeq + 1;
      const commit = { ...fields, format: 2, seq, writer: this.writer, committedAt: new Date(this.now()).toISOString() } as Commit;
      if (await this.claim(commit)) return commit;
      this.forget(seq);
      const holder = await this.read(seq).catch(() => undefined);
      if (holder?.writer === this.writer) {
        this.lastSeq = seq;
        // This very commit had landed, its answer lost (a retry then found the key taken): done.
        if (holder.kind === fields.kind && (holder as { name?: string }).name === (fields as { name?: string }).name) return holder;
        continue; // an earlier attempt of ours that we took for failed had landed: the next seq is ours
      }
      this.fenced = { seq, writer: holder?.writer };
      this.log.error('backups_fenced', { seq, otherWriter: holder?.writer, message: 'another server committed to this prefix; this server stops committing so as not to overwrite its world, and refuses writes' });
      throw this.fencedError();
    }
  }

  /** Caches `commit`; of change sets (which carry their changes) only those read last, within CACHED_CHANGE_SETS and CACHED_CHANGE_SET_BYTES. */
  private remember(commit: Commit): void {
    this.forget(commit.seq);
    this.cache.set(commit.seq, commit);
    if (commit.kind !== 'changes') return;
    const bytes = (commit.inline?.length ?? 0) + CHANGE_SET_OVERHEAD_BYTES;
    this.changeSets.set(commit.seq, bytes);
    this.changeSetBytes += bytes;
    while (this.changeSets.size > CACHED_CHANGE_SETS || this.changeSetBytes > CACHED_CHANGE_SET_BYTES) {
      this.forget(this.changeSets.keys().next().value!);
    }
  }

  /** Drops the commit at `seq` from the cache. */
  private forget(seq: number): void {
    this.cache.delete(seq);
    const bytes = this.changeSets.get(seq);
    if (bytes === undefined) return;
    this.changeSets.delete(seq);
    this.changeSetBytes -= bytes;
  }

  /** Deletes the commit object at `seq`. */
  async delete(seq: number): Promise<void> {
    await this.store.delete(this.key(seq));
    this.forget(seq);
  }

  key(seq: number): string {
    return `${this.prefix}commits/${String(seq).padStart(12, '0')}.json`;
  }

  fencedError(): FencedError {
    const fenced = this.fenced!;
    return new FencedError(`another server committed #${fenced.seq} to this prefix; this server no longer commits (restart it to take over again)`);
  }
}

/** A commit as this version reads it, or undefined if the object is not one. */
function upgrade(raw: Record<string, unknown>, seq: number): Commit | undefined {
  if (raw.format === 1) {
    // Written before change shipping: always a snapshot, of no log lineage.
    if (typeof raw.key !== 'string' || typeof raw.sha256 !== 'string' || typeof raw.bytes !== 'number' || typeof raw.name !== 'string') return undefined;
    return { ...(raw as object), format: 2, kind: 'snapshot', seq, lineage: '', lsn: 0, snapshotLsn: 0, replayFrom: 0 } as SnapshotCommit;
  }
  if (raw.format !== 2 || typeof raw.lineage !== 'string' || typeof raw.lsn !== 'number') return undefined;
  if (raw.kind === 'snapshot' && typeof raw.key === 'string' && typeof raw.sha256 === 'string' && typeof raw.bytes === 'number') return raw as unknown as SnapshotCommit;
  if (raw.kind === 'changes' && typeof raw.sha256 === 'string' && typeof raw.fromLsn === 'number' && typeof raw.toLsn === 'number') return raw as unknown as ChangesCommit;
  if (raw.kind === 'takeover') return raw as unknown as TakeoverCommit;
  return undefined;
}
