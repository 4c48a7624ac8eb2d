/**
 * A BlobStore in a local folder: one file per key, written to a temp file, fsynced, then renamed or linked.
 *
 * putIfMatch (compare-and-swap) serialises writers of one key with a lock file beside it, `<file>.lock.tmp`,
 * created with O_EXCL. Under the lock it reads the file, compares its digest with the expected version, checks
 * that the lock is still its own, and renames its temp file over the key. The guarantee: of putIfMatch calls
 * on one version, from any processes on one machine's folder, exactly one succeeds, as long as no holder of a
 * lock stalls inside it (a read, a comparison, a rename: milliseconds) for LOCK_STALE_MS. A lock older than
 * that is taken for one a crashed process left, and broken, so a crash never wedges the key; a holder stalled
 * that long finds its lock gone and starts over, unless the stall fell between its last check and its rename.
 * The version is a digest of the bytes (as an ETag is), so it needs no state of its own beside the file.
 * Unconditional put and delete take no lock: a key written with putIfMatch should be written only that way.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isCode, syncDir } from './fs-util.js';
import type { BlobStore } from './store.js';

const TEMP_SUFFIX = '.tmp';
/** Ends with TEMP_SUFFIX, so list() never shows a lock; cleanup() leaves locks alone (see lockKey). */
const LOCK_SUFFIX = '.lock.tmp';

/**
 * A lock this old was left by a crashed process (a holder keeps it for a few file system calls): break it.
 * Long enough that a live holder is not stalled that long by a loaded machine; short enough that a crash
 * inside a lease renewal delays a takeover by at most this.
 */
export const LOCK_STALE_MS = 2000;

/** The version of `bytes`: a digest, so equal bytes have equal versions, as with an S3 ETag. */
function versionOf(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 32);
}

/** Stores objects as files below `dir`, created on first write. */
export class FileStore implements BlobStore {
  readonly location: string;
  private readonly root: string;

  constructor(dir: string) {
    this.root = resolve(dir);
    this.location = pathToFileURL(this.root).href;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      return await readFile(this.path(key));
    } catch (err) {
      if (isCode(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  async getStream(key: string): Promise<AsyncIterable<Uint8Array> | undefined> {
    const path = this.path(key);
    try {
      await stat(path);
    } catch (err) {
      if (isCode(err, 'ENOENT')) return undefined;
      throw err;
    }
    return createReadStream(path, { highWaterMark: 1024 * 1024 });
  }

  async put(key: string, body: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
    const path = this.path(key);
    const temp = await this.writeTemp(path, body);
    try {
      await rename(temp, path);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    await syncDir(dirname(path));
  }

  async putIfAbsent(key: string, body: Uint8Array): Promise<boolean> {
    const path = this.path(key);
    const temp = await this.writeTemp(path, body);
    try {
      // link() fails if the name exists, so exactly one of two racing writers wins; the file is whole when it appears.
      await link(temp, path);
      await syncDir(dirname(path));
      return true;
    } catch (err) {
      if (isCode(err, 'EEXIST')) return false;
      throw err;
    } finally {
      await unlink(temp).catch(() => {});
    }
  }

  async getVersioned(key: string): Promise<{ body: Uint8Array; version: string } | undefined> {
    const body = await this.get(key);
    return body === undefined ? undefined : { body, version: versionOf(body) };
  }

  async putIfMatch(key: string, body: Uint8Array, version: string): Promise<boolean> {
    const path = this.path(key);
    const temp = await this.writeTemp(path, body);
    try {
      for (;;) {
        const token = await this.lock(path);
        try {
          let current: Uint8Array;
          try {
            current = await readFile(path);
          } catch (err) {
            if (isCode(err, 'ENOENT')) return false;
            throw err;
          }
          if (versionOf(current) !== version) return false;
          // A holder stalled past LOCK_STALE_MS may have lost its lock to a breaker: then it must not write.
          if (!(await this.holdsLock(path, token))) continue;
          await rename(temp, path);
        } finally {
          await this.unlock(path, token);
        }
        await syncDir(dirname(path));
        return true;
      }
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    await this.walk(prefix, async (key, name) => {
      if (!name.endsWith(TEMP_SUFFIX)) keys.push(key);
    });
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    await unlink(this.path(key)).catch((err) => {
      if (!isCode(err, 'ENOENT')) throw err;
    });
  }

  async cleanup(prefix: string, stale: (key: string) => boolean): Promise<number> {
    let removed = 0;
    await this.walk(prefix, async (temp, name) => {
      if (!name.endsWith(TEMP_SUFFIX) || name.endsWith(LOCK_SUFFIX)) return; // a live lock is never removed here: see lock()
      const key = temp.replace(/\.[0-9a-f]+\.tmp$/, ''); // `<key>.<random>.tmp`, see writeTemp
      if (!stale(key)) return;
      await unlink(join(this.root, ...temp.split('/'))).catch(() => undefined);
      removed++;
    });
    return removed;
  }

  /** Calls `visit` with the key and file name of every file whose key starts with `prefix`, walking only the folder the prefix names. */
  private async walk(prefix: string, visit: (key: string, name: string) => Promise<void>): Promise<void> {
    const walkDir = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isCode(err, 'ENOENT') || isCode(err, 'ENOTDIR')) return;
        throw err;
      }
      for (const entry of entries) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) await walkDir(full);
        else if (entry.isFile()) {
          const key = relative(this.root, full).split(sep).join('/');
          if (key.startsWith(prefix)) await visit(key, entry.name);
        }
      }
    };
    const slash = prefix.lastIndexOf('/');
    await walkDir(slash < 0 ? this.root : this.path(prefix.slice(0, slash)));
  }

  /** Takes the lock of the file at `path` (waiting while another holds it, breaking it once stale); returns the token that marks it ours. */
  private async lock(path: string): Promise<string> {
    const lockPath = path + LOCK_SUFFIX;
    const token = randomBytes(8).toString('hex');
    await mkdir(dirname(path), { recursive: true });
    for (let wait = 1; ; wait = Math.min(wait * 2, 16)) {
      try {
        const handle = await open(lockPath, 'wx');
        try {
          await handle.writeFile(token);
        } finally {
          await handle.close();
        }
        return token;
      } catch (err) {
        if (!isCode(err, 'EEXIST')) throw err;
      }
      try {
        // mtime and Date.now() come from this machine's one clock, so comparing them is sound here.
        if (Date.now() - (await stat(lockPath)).mtimeMs > LOCK_STALE_MS) {
          await unlink(lockPath);
          continue;
        }
      } catch (err) {
        if (isCode(err, 'ENOENT')) continue; // released (or broken by another) meanwhile: try again at once
        throw err;
      }
      await sleep(wait + Math.random() * wait); // jittered, so that waiters do not retry in step
    }
  }

  /** True while the lock of `path` still carries our `token`. */
  private async holdsLock(path: string, token: string): Promise<boolean> {
    try {
      return (await readFile(path + LOCK_SUFFIX, 'utf8')) === token;
    } catch (err) {
      if (isCode(err, 'ENOENT')) return false;
      throw err;
    }
  }

  /** Removes our lock of `path`, but never one a breaker and a new holder put in its place. */
  private async unlock(path: string, token: string): Promise<void> {
    if (await this.holdsLock(path, token)) await unlink(path + LOCK_SUFFIX).catch(() => undefined);
  }

  /** The file for `key`; keys that would escape the folder are refused. */
  private path(key: string): string {
    const path = resolve(this.root, key);
    if (key === '' || key.endsWith('/') || !path.startsWith(this.root + sep)) throw new Error(`invalid key ${JSON.stringify(key)}`);
    return path;
  }

  private async writeTemp(path: string, body: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<string> {
    await mkdir(dirname(path), { recursive: true });
    const temp = `${path}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`;
    const file = await open(temp, 'wx');
    try {
      // writeFile on a handle writes from the current position, whole: the parts follow one another.
      for await (const part of body instanceof Uint8Array ? [body] : body) await file.writeFile(part);
      await file.sync();
    } catch (err) {
      await file.close();
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    await file.close();
    return temp;
  }
}
