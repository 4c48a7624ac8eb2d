/** A BlobStore in a local folder: one file per key, written to a temp file, fsynced, then renamed or linked. */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isCode, syncDir } from './fs-util.js';
import type { BlobStore } from './store.js';

const TEMP_SUFFIX = '.tmp';

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
      if (!name.endsWith(TEMP_SUFFIX)) return;
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
