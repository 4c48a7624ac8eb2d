/**
 * Backups of the world: point-in-time snapshots written as new objects and committed with a conditional
 * write, restored at boot, kept N deep, taken on a schedule, one at a time.
 *
 * Layout under the prefix:
 *   backups/<name>.gz       the cells, gzip-compressed (see backup-format.ts); written once, never overwritten
 *   commits/<seq>.json      a manifest naming one backup; created with If-None-Match: *, never overwritten
 * The manifest with the highest seq is the world. Whoever takes a seq first owns it, so a server whose
 * next seq is already taken (a newer server restored and claimed it) stops backing up instead of clobbering.
 */
import { randomBytes } from 'node:crypto';
import { CorruptBackupError, decodeBackup, encodeBackup } from './backup-format.js';
import { CELL_BYTES, type Cube } from './cube.js';
import type { Log } from './log.js';
import type { BlobStore } from './store.js';

/** What a backup holds and where; the JSON a client sees for it. */
export interface BackupInfo {
  name: string;
  /** When the snapshot was taken. */
  createdAt: string;
  bytes: number;
  compressedBytes: number;
  sha256: string;
}

/** A commit: one manifest object, naming the backup that was the world at that seq. */
interface Manifest extends BackupInfo {
  format: 1;
  seq: number;
  key: string;
  cells: number;
  committedAt: string;
  /** The process that wrote the commit (random per start), to tell our own late commits from another server's. */
  writer: string;
  reason: string;
}

/** Where the running world came from at boot. */
export type RestoredFrom = { kind: 'backup'; name: string } | { kind: 'legacy'; key: string } | { kind: 'empty' };

/** The state of backups, for health and metrics. */
export interface BackupStatus {
  restoredFrom: RestoredFrom;
  lastBackup: (BackupInfo & { durationMs?: number }) | null;
  lastSuccessAt: string | null;
  lastError: { at: string; error: string } | null;
  consecutiveFailures: number;
  failuresTotal: number;
  backupsTotal: number;
  /** Scheduled ticks that found nothing to save. */
  skippedUnchanged: number;
  unsavedChanges: boolean;
  /** Bytes written since the newest commit's snapshot (rewrites of one cell count each time). */
  bytesWrittenSinceBackup: number;
  /** Time the oldest unsaved write has waited, or null when everything is saved. */
  unsavedSince: string | null;
  inProgress: boolean;
  /** Set when another server took over this prefix: backups have stopped. */
  fenced: { seq: number; writer: string | undefined } | null;
  intervalSeconds: number;
}

/** The world could not be restored at boot; the message says what failed and what to do. */
export class RestoreError extends Error {
  override name = 'RestoreError';
}

/** Another server committed to this prefix after we last did: our backups would overwrite its world. */
export class FencedError extends Error {
  override name = 'FencedError';
}

/** No backup of that name is kept. */
export class UnknownBackupError extends Error {
  override name = 'UnknownBackupError';
}

export interface BackupsOptions {
  store: BlobStore;
  cube: Cube;
  /** '' or ending in '/'. */
  prefix: string;
  /** The seed's raw backup object, read when the prefix holds no commit. */
  legacyKey: string;
  /** How many distinct backups to keep. */
  retain: number;
  /** Milliseconds between scheduled backups; 0 turns the schedule off. */
  intervalMs: number;
  log: Log;
  now?: () => number;
  /** A full garbage collection, run after restores and backups (see AppOptions.collectGarbage). */
  collectGarbage?: () => void;
}

const MAX_BACKOFF_START_MS = 1000;

/** Backups of one world to one store prefix. Build with createBackups; call restore() once before serving. */
export class Backups {
  private readonly store: BlobStore;
  private readonly cube: Cube;
  private readonly log: Log;
  private readonly now: () => number;
  private readonly writer = randomBytes(8).toString('hex');
  private readonly manifests = new Map<number, Manifest>();
  private lastSeq = 0;
  /** The world version and bytes written the newest commit holds; version -1 when the world holds something not committed yet (a legacy restore). */
  private saved = { version: 0, bytesWritten: 0 };
  private unsavedSinceMs: number | null = null;
  /** The first write after the running backup's snapshot: what stays unsaved once that backup commits. */
  private firstWriteAfterSnapshotMs: number | null = null;
  private exclusiveTail: Promise<unknown> = Promise.resolve();
  private running: Promise<BackupInfo> | undefined;
  private queued: Promise<BackupInfo> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pruning: Promise<void> | undefined;
  private pruneAgain = false;
  private stopped = false;
  private state: Omit<BackupStatus, 'unsavedChanges' | 'bytesWrittenSinceBackup' | 'unsavedSince' | 'inProgress' | 'intervalSeconds'> = {
    restoredFrom: { kind: 'empty' },
    lastBackup: null,
    lastSuccessAt: null,
    lastError: null,
    consecutiveFailures: 0,
    failuresTotal: 0,
    backupsTotal: 0,
    skippedUnchanged: 0,
    fenced: null,
  };

  constructor(private readonly options: BackupsOptions) {
    this.store = options.store;
    this.cube = options.cube;
    this.log = options.log;
    this.now = options.now ?? Date.now;
  }

  /** True when the world holds writes no committed backup has. */
  get dirty(): boolean {
    return this.cube.version !== this.saved.version;
  }

  /** Call after every write: starts the clock of the oldest unsaved change. */
  markDirty(): void {
    if (this.unsavedSinceMs !== null && this.firstWriteAfterSnapshotMs !== null) return; // the hot path: both known
    const now = this.now();
    this.unsavedSinceMs ??= now;
    this.firstWriteAfterSnapshotMs ??= now;
  }

  /** A commit holds the world as of `at`: it is saved unless a newer commit already was. */
  private recordSaved(at: { version: number; bytesWritten: number }): void {
    if (at.version > this.saved.version) this.saved = { version: at.version, bytesWritten: at.bytesWritten };
  }

  /** After a commit: the oldest unsaved write is the first one after its snapshot, if any. */
  private settleUnsavedSince(): void {
    this.unsavedSinceMs = this.dirty ? (this.firstWriteAfterSnapshotMs ?? this.now()) : null;
  }

  /** The state of backups for health and metrics. */
  status(): BackupStatus {
    const dirty = this.dirty;
    return {
      ...this.state,
      unsavedChanges: dirty,
      bytesWrittenSinceBackup: dirty ? this.cube.bytesWritten - this.saved.bytesWritten : 0,
      unsavedSince: dirty && this.unsavedSinceMs !== null ? new Date(this.unsavedSinceMs).toISOString() : null,
      inProgress: this.running !== undefined,
      intervalSeconds: this.options.intervalMs / 1000,
    };
  }

  /**
   * Boot: loads the newest committed backup into the world and claims the next seq, so that an older
   * server still running on this prefix stops backing up. With no commit, loads the legacy object if
   * there is one, else leaves the world empty. Throws RestoreError when a backup exists but cannot be read.
   */
  async restore(): Promise<RestoredFrom> {
    const where = `${this.store.location}/${this.options.prefix}`;
    try {
      for (let attempt = 1; ; attempt++) {
        const seqs = await this.commitSeqs();
        const seq = seqs.at(-1);
        if (seq === undefined) return await this.restoreWithoutCommits();
        const manifest = await this.readManifest(seq);
        const cells = await this.load(manifest);
        // Claim the next seq before serving: whoever else commits it later learns it is not the newest.
        const claimed = await this.commit({ ...manifest, seq: seq + 1, reason: 'takeover' });
        if (claimed) {
          this.cube.replace(cells);
          this.recordSaved(this.cube);
          this.lastSeq = seq + 1;
          this.state.lastBackup = publicInfo(manifest);
          this.state.restoredFrom = { kind: 'backup', name: manifest.name };
          this.log.info('world_restored', { from: 'backup', name: manifest.name, seq, bytes: manifest.bytes, store: where });
          return this.state.restoredFrom;
        }
        if (attempt >= 5) throw new Error('another server keeps committing backups to this prefix while we restore');
        this.log.warn('restore_raced', { seq, attempt }); // someone committed meanwhile: restore the newer world
      }
    } catch (err) {
      const cause = describe(err);
      const advice = err instanceof CorruptBackupError || err instanceof UnreadableManifestError
        ? 'The backup is damaged. To fall back to the previous backup, move its commit object (commits/<seq>.json) out of the prefix, then start again.'
        : 'Check the bucket, the endpoint, the credentials and the network, then start again.';
      throw new RestoreError(`cannot restore the world from ${where}: ${cause}. The server does not start with an empty world while a backup exists. ${advice}`);
    }
  }

  /** Takes a backup now (`reason` is logged). One runs at a time: a call during one waits for it, then backs up again if the world changed. */
  backup(reason: string): Promise<BackupInfo> {
    if (this.state.fenced) return Promise.reject(this.fencedError());
    if (!this.running) return this.run(reason);
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        if (this.state.fenced) throw this.fencedError();
        // The backup just finished already holds everything this caller could have written before asking.
        if (!this.dirty && this.state.lastBackup && !this.running) return this.state.lastBackup;
        return this.running ?? this.run(reason);
      });
    return this.queued;
  }

  /** The kept backups, newest first. */
  async list(): Promise<BackupInfo[]> {
    const seen = new Set<string>();
    const out: BackupInfo[] = [];
    for (const seq of (await this.commitSeqs()).reverse()) {
      const manifest = await this.readManifest(seq).catch(() => undefined);
      if (!manifest || seen.has(manifest.name)) continue;
      seen.add(manifest.name);
      out.push(publicInfo(manifest));
    }
    return out;
  }

  /** Loads the kept backup `name` into the running world and commits it as the newest, so a restart keeps it. */
  async restoreBackup(name: string): Promise<BackupInfo> {
    if (this.state.fenced) throw this.fencedError();
    return this.exclusive(async () => {
      // A prune still running from the last backup may have chosen to delete this very backup: let it finish.
      await this.pruned();
      let manifest: Manifest | undefined;
      for (const seq of (await this.commitSeqs()).reverse()) {
        const candidate = await this.readManifest(seq).catch(() => undefined);
        if (candidate?.name === name) { manifest = candidate; break; }
      }
      if (!manifest) throw new UnknownBackupError(`no kept backup is named ${JSON.stringify(name)}`);
      const cells = await this.load(manifest);
      this.cube.replace(cells);
      this.firstWriteAfterSnapshotMs = null;
      const { version, bytesWritten } = this.cube;
      this.log.info('world_restored', { from: 'backup', name, reason: 'request' });
      await this.commitNext({ ...manifest, reason: 'restore' });
      this.pruneSoon();
      this.recordSaved({ version, bytesWritten });
      this.settleUnsavedSince();
      this.state.lastBackup = publicInfo(manifest);
      this.options.collectGarbage?.();
      return publicInfo(manifest);
    });
  }

  /** Starts the schedule: every interval, a backup if the world changed; after a failure, sooner retries with backoff. */
  start(): void {
    if (this.options.intervalMs <= 0 || this.stopped) return;
    this.scheduleTick(this.options.intervalMs);
  }

  /** Stops the schedule and waits for a backup in progress to end (its outcome is already logged). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.allSettled([this.running, this.queued, this.exclusiveTail]);
    await this.pruned();
  }

  private scheduleTick(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const interval = this.options.intervalMs;
    if (this.stopped) return;
    if (!this.dirty || this.state.fenced) {
      if (!this.dirty) this.state.skippedUnchanged++;
      return this.scheduleTick(interval);
    }
    try {
      await this.backup('schedule');
      if (!this.stopped) this.scheduleTick(interval);
    } catch {
      // Already logged by run(). Retry sooner, doubling, never later than the interval.
      const failures = Math.max(1, this.state.consecutiveFailures);
      const backoff = Math.min(interval, MAX_BACKOFF_START_MS * 2 ** Math.min(failures - 1, 20));
      if (!this.stopped) this.scheduleTick(backoff);
    }
  }

  private run(reason: string): Promise<BackupInfo> {
    const started = this.now();
    const attempt = this.exclusive(() => this.write(reason)).then(
      (info) => {
        const durationMs = this.now() - started;
        this.state.lastBackup = { ...info, durationMs };
        this.state.lastSuccessAt = new Date(this.now()).toISOString();
        this.state.consecutiveFailures = 0;
        this.state.backupsTotal++;
        this.log.info('backup_committed', { reason, ...info, durationMs });
        return { ...info, durationMs };
      },
      (err: unknown) => {
        this.state.consecutiveFailures++;
        this.state.failuresTotal++;
        this.state.lastError = { at: new Date(this.now()).toISOString(), error: describe(err) };
        this.log.error('backup_failed', { reason, consecutiveFailures: this.state.consecutiveFailures, err });
        throw err;
      },
    );
    const tracked = attempt.finally(() => {
      if (this.running === tracked) this.running = undefined;
    });
    this.running = tracked;
    return tracked;
  }

  /** Snapshot, compress, upload, commit, prune. */
  private async write(reason: string): Promise<BackupInfo> {
    const snapshot = this.cube.snapshot(); // the world at this instant, read slice by slice (copy-on-write)
    this.firstWriteAfterSnapshotMs = null;
    const createdAt = new Date(this.now());
    const name = `${compactTime(createdAt)}-${randomBytes(4).toString('hex')}`;
    const key = `${this.options.prefix}backups/${name}.gz`;
    const encoding = encodeBackup(snapshot);
    try {
      await this.store.put(key, encoding.body);
    } finally {
      snapshot.release();
    }
    const encoded = encoding.result();
    const manifest = {
      name, key, createdAt: createdAt.toISOString(), cells: this.cube.cells, bytes: encoded.bytes,
      compressedBytes: encoded.compressedBytes, sha256: encoded.sha256, reason,
    };
    try {
      await this.commitNext(manifest);
    } catch (err) {
      // Not committed for sure only when fenced; after any other failure the commit may have landed, so keep the data.
      if (err instanceof FencedError) await this.store.delete(key).catch(() => undefined);
      throw err;
    }
    this.recordSaved(snapshot);
    this.settleUnsavedSince();
    this.pruneSoon();
    this.options.collectGarbage?.();
    return publicInfo(manifest);
  }

  /** Commits `manifest` at the next free seq that is ours to take; FencedError if another server took it. */
  private async commitNext(manifest: Omit<Manifest, 'format' | 'seq' | 'committedAt' | 'writer'>): Promise<void> {
    for (;;) {
      const seq = this.lastSeq + 1;
      if (await this.commit({ ...manifest, seq })) {
        this.lastSeq = seq;
        return;
      }
      const holder = await this.readManifest(seq).catch(() => undefined);
      if (holder?.writer === this.writer) {
        this.lastSeq = seq; // an earlier attempt of ours that we took for failed had landed
        continue;
      }
      this.state.fenced = { seq, writer: holder?.writer };
      this.log.error('backups_fenced', { seq, otherWriter: holder?.writer, message: 'another server committed a newer backup to this prefix; this server stops backing up so as not to overwrite it' });
      throw this.fencedError();
    }
  }

  /** Writes the commit object for `manifest.seq` if nobody has; false if somebody has. */
  private async commit(manifest: Omit<Manifest, 'format' | 'committedAt' | 'writer'>): Promise<boolean> {
    const full: Manifest = { format: 1, ...manifest, committedAt: new Date(this.now()).toISOString(), writer: this.writer };
    const body = new TextEncoder().encode(JSON.stringify(full, null, 2) + '\n');
    const created = await this.store.putIfAbsent(this.commitKey(manifest.seq), body);
    if (created) this.manifests.set(manifest.seq, full);
    return created;
  }

  /** Prunes in the background, one prune at a time: deleting old objects is no reason to delay the next backup. */
  private pruneSoon(): void {
    if (this.pruning) {
      this.pruneAgain = true; // the running prune listed before the newest commit
      return;
    }
    this.pruning = this.prune()
      .catch((err: unknown) => this.log.warn('prune_failed', { err }))
      .finally(() => {
        this.pruning = undefined;
        if (this.pruneAgain) {
          this.pruneAgain = false;
          this.pruneSoon();
        }
      });
  }

  /** Resolves when no prune is running or due (for tests and shutdown). */
  async pruned(): Promise<void> {
    while (this.pruning) await this.pruning;
  }

  /** Deletes commits beyond the newest `retain` distinct backups, their backup objects, and stray backup objects older than every kept one. */
  private async prune(): Promise<void> {
    const seqs = (await this.commitSeqs()).reverse();
    const keptNames = new Set<string>();
    const dropped: number[] = [];
    for (const seq of seqs) {
      const manifest = await this.readManifest(seq).catch(() => undefined);
      if (!manifest) continue; // unreadable: leave it for an operator
      if (keptNames.size < this.options.retain || keptNames.has(manifest.name)) keptNames.add(manifest.name);
      else dropped.push(seq);
    }
    for (const seq of dropped) {
      await this.store.delete(this.commitKey(seq));
      this.manifests.delete(seq);
    }
    if (keptNames.size === 0) return;
    const oldestKept = [...keptNames].sort()[0]!;
    const backupsPrefix = `${this.options.prefix}backups/`;
    for (const key of await this.store.list(backupsPrefix)) {
      const name = key.slice(backupsPrefix.length).replace(/\.gz$/, '');
      // Newer strays may be another writer's upload in flight; older ones belong to no kept commit.
      if (!keptNames.has(name) && name < oldestKept) await this.store.delete(key);
    }
  }

  private async restoreWithoutCommits(): Promise<RestoredFrom> {
    const key = this.options.legacyKey;
    const legacy = key ? await this.store.get(key) : undefined;
    if (legacy === undefined) {
      this.recordSaved(this.cube);
      this.state.restoredFrom = { kind: 'empty' };
      this.log.warn('world_empty', { message: 'no backup found: starting with an empty world', store: `${this.store.location}/${this.options.prefix}`, cells: this.cube.cells });
      return this.state.restoredFrom;
    }
    const expected = this.cube.cells * CELL_BYTES;
    if (legacy.byteLength !== expected) {
      throw new Error(`the legacy object ${key} holds ${legacy.byteLength} bytes, but a world of ${this.cube.cells} cells is ${expected} bytes (set CUBE_CELLS to ${legacy.byteLength / CELL_BYTES} if that is its size)`);
    }
    this.cube.replace(legacy);
    this.saved = { version: -1, bytesWritten: 0 }; // not in the new format yet: the first backup writes it
    this.markDirty();
    this.state.restoredFrom = { kind: 'legacy', key };
    this.log.info('world_restored', { from: 'legacy', key, bytes: legacy.byteLength });
    return this.state.restoredFrom;
  }

  /** The cells of a committed backup, verified. */
  private async load(manifest: Manifest): Promise<Uint8Array> {
    const expected = this.cube.cells * CELL_BYTES;
    if (manifest.bytes !== expected) {
      throw new Error(`backup ${manifest.name} holds ${manifest.bytes} bytes, but a world of ${this.cube.cells} cells (CUBE_CELLS) is ${expected} bytes`);
    }
    const body = await this.store.get(manifest.key);
    if (body === undefined) throw new CorruptBackupError(`backup ${manifest.name}: its object ${manifest.key} is missing`);
    try {
      return await decodeBackup(body, manifest.bytes, manifest.sha256);
    } catch (err) {
      if (err instanceof CorruptBackupError) throw new CorruptBackupError(`backup ${manifest.name} ${err.message}`);
      throw err;
    }
  }

  private async commitSeqs(): Promise<number[]> {
    const prefix = `${this.options.prefix}commits/`;
    const seqs: number[] = [];
    for (const key of await this.store.list(prefix)) {
      const match = /^(\d{12})\.json$/.exec(key.slice(prefix.length));
      if (match) seqs.push(Number(match[1]));
    }
    return seqs.sort((a, b) => a - b);
  }

  private async readManifest(seq: number): Promise<Manifest> {
    const cached = this.manifests.get(seq);
    if (cached) return cached;
    const key = this.commitKey(seq);
    const body = await this.store.get(key);
    if (body === undefined) throw new UnreadableManifestError(`commit ${key} is missing`);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(new TextDecoder().decode(body)) as Manifest;
    } catch {
      throw new UnreadableManifestError(`commit ${key} is not valid JSON`);
    }
    if (manifest.format !== 1 || typeof manifest.key !== 'string' || typeof manifest.sha256 !== 'string' || typeof manifest.bytes !== 'number' || typeof manifest.name !== 'string') {
      throw new UnreadableManifestError(`commit ${key} is not a cubecache commit`);
    }
    this.manifests.set(seq, manifest); // commits are never rewritten, so a cached one stays true
    return manifest;
  }

  private commitKey(seq: number): string {
    return `${this.options.prefix}commits/${String(seq).padStart(12, '0')}.json`;
  }

  private fencedError(): FencedError {
    const fenced = this.state.fenced!;
    return new FencedError(`another server committed backup #${fenced.seq} to this prefix; this server no longer backs up (restart it to take over again)`);
  }

  /** Runs `task` after every earlier exclusive task: backups and restores never overlap. */
  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const result = this.exclusiveTail.then(task, task);
    this.exclusiveTail = result.catch(() => undefined);
    return result;
  }
}

class UnreadableManifestError extends Error {
  override name = 'UnreadableManifestError';
}

function publicInfo(manifest: BackupInfo): BackupInfo {
  const { name, createdAt, bytes, compressedBytes, sha256 } = manifest;
  return { name, createdAt, bytes, compressedBytes, sha256 };
}

/** 2026-11-28T16:22:45.123Z → 20261128T162245123Z: sortable, and safe in any key. */
function compactTime(date: Date): string {
  return date.toISOString().replace(/[-:.]/g, '');
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return `${err.name}${status ? ` (HTTP ${status})` : ''}${err.message && err.message !== 'UnknownError' ? `: ${err.message}` : ''}`;
}
