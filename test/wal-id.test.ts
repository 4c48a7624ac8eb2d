/** The id of a write-ahead log's folder: made once, the same at every open, never made anew over a bad file. */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { FolderIdError, WriteAheadLog } from '../lib/backup/wal.js';
import { memoryLog } from './support/log.js';

async function folder(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cubecache-wal-id-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function idOf(dir: string): Promise<string> {
  const wal = await WriteAheadLog.open({ dir, sync: 'write', cells: 16, log: memoryLog() });
  await wal.close();
  return wal.id;
}

test('a folder keeps its id across opens; another folder has another; the id is in ID, and no temporary file is left', async (t) => {
  const a = await folder(t);
  const b = await folder(t);
  const first = await idOf(a);
  assert.match(first, /^[0-9a-f]{16}$/);
  assert.equal(await idOf(a), first, 'the same folder, opened again, is the same server');
  assert.notEqual(await idOf(b), first);
  assert.equal((await readFile(join(a, 'ID'), 'latin1')).trim(), first);
  assert.deepEqual((await readdir(a)).filter((n) => n.startsWith('ID')), ['ID']);
});

test('an ID file that does not hold an id is an error naming it, and is left as it was', async (t) => {
  for (const content of ['', 'not an id\n', '0123456789abcdef0\n']) {
    const dir = await folder(t);
    await writeFile(join(dir, 'ID'), content);
    await assert.rejects(idOf(dir), (err: unknown) => err instanceof FolderIdError && err.message.includes(join(dir, 'ID')), JSON.stringify(content));
    assert.equal(await readFile(join(dir, 'ID'), 'latin1'), content, 'not re-keyed');
    // The lock was given back: the folder opens once the file is fixed.
    await writeFile(join(dir, 'ID'), '00000000deadbeef\n');
    assert.equal(await idOf(dir), '00000000deadbeef');
  }
});
