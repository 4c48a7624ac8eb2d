/**
 * The id of a write-ahead log's folder: made once, kept in `<dir>/ID`, so a server restarted on its own
 * WAL_DIR (after a kill -9) is the same server to the lease and takes back its own stale lease at once.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { isCode, syncDir } from '../fs-util.js';

const ID = 'ID';
const ID_FORMAT = /^[0-9a-f]{16}$/;

/** The folder's id cannot be read: a log that may hold a lease is never given a new id silently. */
export class FolderIdError extends Error {
  override name = 'FolderIdError';
}

/**
 * The id (16 hex digits) in `<dir>/ID`, made durably when the file is missing (written whole to a temporary
 * file, synced, renamed, the folder synced: a crash leaves the old state or the whole id). FolderIdError
 * naming the file when it holds anything else. Call with the folder's lock held: two makers would race.
 */
export async function folderId(dir: string): Promise<string> {
  const path = join(dir, ID);
  let raw: string;
  try {
    raw = await readFile(path, 'latin1');
  } catch (err) {
    if (!isCode(err, 'ENOENT')) throw new FolderIdError(`the server id in ${path} cannot be read (${(err as Error).message}): fix or remove the file`, { cause: err });
    return make(dir, path);
  }
  const id = raw.trim();
  if (!ID_FORMAT.test(id)) throw new FolderIdError(`the server id in ${path} is not 16 hex digits: fix the file, or remove it to give this WAL_DIR a new id (a lease this server held is then waited out)`);
  return id;
}

async function make(dir: string, path: string): Promise<string> {
  const id = randomBytes(8).toString('hex');
  const temporary = `${path}.tmp`;
  const file = await open(temporary, 'w');
  try {
    await file.writeFile(`${id}\n`);
    await file.datasync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
  await syncDir(dir);
  return id;
}
