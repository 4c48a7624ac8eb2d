/**
 * The lock of a write-ahead log's folder: one owner at a time, told apart from a dead one without flock
 * (Node has none), even when PIDs repeat, as they do in containers (a server that ran as PID 1 of its PID
 * namespace, killed, is restarted as PID 1 of another).
 *
 * `LOCK` holds the owner's record: pid, start time (field 22 of /proc/self/stat), PID namespace (the inode of
 * /proc/self/ns/pid), boot id, a random token and a heartbeat counter that the owner rewrites in place every
 * `heartbeatMs`. A newcomer that finds the file judges its owner:
 * - same boot and PID namespace: alive iff /proc/<pid>/stat exists with the recorded start time;
 * - another namespace, another host or an unknown one: alive iff the file changes while it watches for
 *   `watchMs` (several heartbeats).
 * A dead owner's lock is taken by writing a new file and renaming it over `LOCK` (atomic), then, after
 * `settleMs`, reading it back: of two newcomers that raced, the one whose rename came last wins and the
 * other refuses. The owner checks its token at every heartbeat: if another process took the lock (this one
 * stalled past the watch), it reports the loss and must stop writing.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, readlink, rename, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isCode, syncDir } from '../fs-util.js';

/** Another live process (or another log in this one) holds the folder's lock. */
export class LogLockedError extends Error {
  override name = 'LogLockedError';
}

/** How often the owner proves it lives, and how long a newcomer watches for that. */
export interface LockTiming {
  /** The owner rewrites its record this often. */
  heartbeatMs?: number;
  /** A newcomer that cannot check the owner's process watches the record this long for a heartbeat. */
  watchMs?: number;
  /** After a takeover's rename, the wait before reading back who won. */
  settleMs?: number;
}

/** Who owns the lock, as its record says. Fields a process could not read are null. */
interface Owner { pid: number; start: string | null; ns: string | null; boot: string | null; host: string; token: string; beat: number }

/** The record is written in place at a fixed width, so a heartbeat never needs a new block (a full disk). */
const RECORD_BYTES = 384;
const LOCK = 'LOCK';

/** The folder lock, held from take() until release(). */
export class FolderLock {
  private beat = 0;
  private timer: NodeJS.Timeout | undefined;
  private beating = false;
  private released = false;

  private constructor(private readonly dir: string, private readonly me: Owner, private readonly file: FileHandle, private readonly onLost: (err: LogLockedError) => void) {}

  /**
   * Takes the lock of `dir` (which must exist), or throws LogLockedError naming the live owner. `onLost` is
   * called if another process takes it later (this one stalled past the watch): writing must stop.
   */
  static async take(dir: string, timing: LockTiming, onLost: (err: LogLockedError) => void): Promise<FolderLock> {
    const heartbeatMs = timing.heartbeatMs ?? 1000;
    const watchMs = timing.watchMs ?? 4 * heartbeatMs;
    const settleMs = timing.settleMs ?? 250;
    const me = await whoAmI();
    const path = join(dir, LOCK);
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const file = await open(path, 'wx');
        return await FolderLock.held(dir, me, file, heartbeatMs, onLost);
      } catch (err) {
        if (!isCode(err, 'EEXIST')) throw err;
      }
      const raw = await readFile(path, 'utf8').catch((err: unknown) => (isCode(err, 'ENOENT') ? undefined : Promise.reject(err)));
      if (raw === undefined) continue; // released meanwhile: try again
      const owner = parse(raw);
      const verdict = await judge(path, raw, owner, me, watchMs, heartbeatMs);
      if (verdict === 'gone') continue;
      if (verdict === 'alive') throw new LogLockedError(`the write-ahead log ${dir} is in use by ${describe(owner, me)} (its LOCK file): two servers must not share one WAL_DIR`);
      const file = await takeOver(dir, path, raw, me, settleMs);
      if (file) return await FolderLock.held(dir, me, file, heartbeatMs, onLost);
      // Another newcomer took it at the same moment: the next round judges that one (alive, so refused).
    }
    throw new LogLockedError(`cannot take the lock of the write-ahead log ${dir}: its LOCK file keeps changing hands`);
  }

  private static async held(dir: string, me: Owner, file: FileHandle, heartbeatMs: number, onLost: (err: LogLockedError) => void): Promise<FolderLock> {
    const lock = new FolderLock(dir, me, file, onLost);
    try {
      await lock.write();
      await syncDir(dir);
    } catch (err) {
      // A lock this process could not write (disk full) would make the next start watch it for nothing.
      await file.close().catch(() => undefined);
      const held = parse(await readFile(join(dir, LOCK), 'utf8').catch(() => ''));
      if (!held || held.token === me.token) await unlink(join(dir, LOCK)).catch(() => undefined);
      throw err;
    }
    lock.timer = setInterval(() => void lock.heartbeat(), heartbeatMs);
    lock.timer.unref();
    return lock;
  }

  /** Gives the lock up: `LOCK` is removed if it is still this process's. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    const held = await readFile(join(this.dir, LOCK), 'utf8').catch(() => '');
    if (parse(held)?.token === this.me.token) await unlink(join(this.dir, LOCK)).catch(() => undefined);
    await this.file.close().catch(() => undefined);
  }

  /** Rewrites the record with the next count, after checking that it is still ours. */
  private async heartbeat(): Promise<void> {
    if (this.beating || this.released) return;
    this.beating = true;
    try {
      const raw = await readFile(join(this.dir, LOCK), 'utf8').catch(() => '');
      if (this.released) return;
      const owner = parse(raw);
      if (owner?.token !== this.me.token) {
        clearInterval(this.timer);
        this.released = true;
        await this.file.close().catch(() => undefined);
        this.onLost(new LogLockedError(`the lock of the write-ahead log ${this.dir} was taken by ${owner ? describe(owner, this.me) : 'another process'} while this one held it (it stalled for longer than a newcomer watches): this server stops writing`));
        return;
      }
      this.beat++;
      await this.write().catch(() => undefined); // a missed beat is harmless; the next one tries again
    } finally {
      this.beating = false;
    }
  }

  private async write(): Promise<void> {
    const body = Buffer.alloc(RECORD_BYTES, 0x20);
    body.write(JSON.stringify({ ...this.me, beat: this.beat }), 'utf8');
    body[RECORD_BYTES - 1] = 0x0a;
    await this.file.write(body, 0, RECORD_BYTES, 0);
  }
}

/** This process as a lock record would name it. */
async function whoAmI(): Promise<Owner> {
  const [stat, ns, boot] = await Promise.all([
    readFile('/proc/self/stat', 'utf8').catch(() => undefined),
    readlink('/proc/self/ns/pid').catch(() => undefined),
    readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => undefined),
  ]);
  // A /proc of another PID namespace (not remounted in a container) describes another process as "self".
  const ours = stat !== undefined && Number(stat.slice(0, stat.indexOf(' '))) === process.pid;
  return {
    pid: process.pid, start: ours ? startTime(stat) : null, ns: ours ? (ns ?? null) : null, boot: boot?.trim() || null,
    host: hostname(), token: randomBytes(8).toString('hex'), beat: 0,
  };
}

/** Field 22 of /proc/<pid>/stat (the start time in clock ticks since boot); the name in field 2 may hold spaces and parentheses. */
function startTime(stat: string): string | null {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[22 - 3] ?? null;
}

/** A record, or undefined when the file holds none (a lock of an older version: "<pid> <token>"). */
function parse(raw: string): Owner | undefined {
  try {
    const owner = JSON.parse(raw) as Owner;
    return typeof owner?.token === 'string' && typeof owner.pid === 'number' ? owner : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the owner of the record `raw` lives: by its process when it shares ours, else by its heartbeat. */
async function judge(path: string, raw: string, owner: Owner | undefined, me: Owner, watchMs: number, heartbeatMs: number): Promise<'alive' | 'dead' | 'gone'> {
  if (owner && owner.start !== null && owner.ns !== null && owner.ns === me.ns && owner.boot === me.boot && me.start !== null) {
    if (owner.pid === me.pid && owner.start === me.start) return 'alive'; // another log in this very process
    const stat = await readFile(`/proc/${owner.pid}/stat`, 'utf8').catch((err: unknown) => (isCode(err, 'ENOENT') || isCode(err, 'ESRCH') ? null : undefined));
    if (stat === null) return 'dead'; // no such process
    if (stat !== undefined) {
      // A zombie (killed, not yet reaped) has a stat file but holds nothing.
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      return startTime(stat) === owner.start && state !== 'Z' && state !== 'X' ? 'alive' : 'dead';
    }
    // /proc would not say (hidepid, another user's process): the heartbeat will.
  }
  // Another PID namespace (another container), another host or boot, or an older version's lock: watch it.
  const deadline = Date.now() + watchMs;
  while (Date.now() < deadline) {
    await sleep(Math.max(10, Math.min(heartbeatMs / 4, deadline - Date.now())));
    const now = await readFile(path, 'utf8').catch((err: unknown) => (isCode(err, 'ENOENT') ? undefined : Promise.reject(err)));
    if (now === undefined) return 'gone';
    if (now !== raw) return 'alive';
  }
  return 'dead';
}

/**
 * Replaces the dead owner's record `raw` with ours: a new file renamed over `LOCK`, then read back after
 * `settleMs`. The open file when we won; undefined when another newcomer's rename came after ours.
 */
async function takeOver(dir: string, path: string, raw: string, me: Owner, settleMs: number): Promise<FileHandle | undefined> {
  const temp = join(dir, `${LOCK}.${me.token}`);
  const file = await open(temp, 'wx');
  try {
    const body = Buffer.alloc(RECORD_BYTES, 0x20);
    body.write(JSON.stringify(me), 'utf8');
    body[RECORD_BYTES - 1] = 0x0a;
    await file.write(body, 0, RECORD_BYTES, 0);
    // The dead record must still be there: a newcomer that took it already is alive, and its lock stays.
    if ((await readFile(path, 'utf8').catch(() => undefined)) !== raw) throw new Lost();
    await rename(temp, path);
    await syncDir(dir);
    await sleep(settleMs);
    if (parse(await readFile(path, 'utf8').catch(() => ''))?.token !== me.token) throw new Lost();
    return file;
  } catch (err) {
    await file.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    if (err instanceof Lost) return undefined;
    throw err;
  }
}

class Lost extends Error {}

function describe(owner: Owner | undefined, me: Owner): string {
  if (!owner) return 'another process (a lock file of another format that changed while watched)';
  const where = owner.ns === me.ns && owner.boot === me.boot ? '' : ` in another PID namespace or host (${owner.host}, ${owner.ns ?? 'namespace unknown'}), whose lock file is alive`;
  return `process ${owner.pid}${where}`;
}
