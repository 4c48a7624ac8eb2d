/** The write-ahead log's folder lock (wal-lock.ts): a live owner refuses a newcomer, a dead one is taken over, even when PIDs repeat. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { FolderLock, LogLockedError } from '../lib/backup/wal-lock.js';

async function folder(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cubecache-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const never = () => { throw new Error('the lock was lost'); };

/** This process's start time (field 22 of /proc/<pid>/stat), PID namespace and boot id, as the lock records them. */
async function identity(pid: number | 'self') {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return {
    start: stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!,
    ns: await readlink(`/proc/${pid}/ns/pid`),
    boot: (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim(),
  };
}

/** A lock record as an owner writes it. */
const record = (owner: { pid: number; start: string | null; ns: string | null; boot: string | null }) => JSON.stringify({ ...owner, host: 'h', token: 'deadbeefdeadbeef', beat: 7 });

test('a lock that names this very PID but another start time (a previous process that had our PID, as PID 1 of a container) is taken at once', async (t) => {
  const dir = await folder(t);
  const me = await identity('self');
  await writeFile(join(dir, 'LOCK'), record({ pid: process.pid, start: String(Number(me.start) - 1), ns: me.ns, boot: me.boot }));
  const started = Date.now();
  const lock = await FolderLock.take(dir, {}, never);
  t.after(() => lock.release());
  assert.ok(Date.now() - started < 2000, 'no watching: the kernel says the recorded process is gone');
  assert.equal(JSON.parse(await readFile(join(dir, 'LOCK'), 'utf8')).pid, process.pid);
});

test('in one PID namespace, a live owner refuses at once; a reused PID (same PID, another start time) does not', async (t) => {
  const dir = await folder(t);
  const other = spawn('sleep', ['60']);
  t.after(() => other.kill('SIGKILL'));
  await once(other, 'spawn');
  const it = await identity(other.pid!);
  await writeFile(join(dir, 'LOCK'), record({ pid: other.pid!, ...it }));
  await assert.rejects(FolderLock.take(dir, {}, never), (err: unknown) => err instanceof LogLockedError && err.message.includes(`process ${other.pid}`));
  await writeFile(join(dir, 'LOCK'), record({ pid: other.pid!, ...it, start: String(Number(it.start) + 1) }));
  const lock = await FolderLock.take(dir, {}, never);
  await lock.release();
});

test('an owner in another namespace is judged by its heartbeat: a record that does not change is taken after the watch', async (t) => {
  const dir = await folder(t);
  const me = await identity('self');
  await writeFile(join(dir, 'LOCK'), record({ pid: 1, start: '5', ns: 'pid:[1]', boot: me.boot }));
  const started = Date.now();
  const lock = await FolderLock.take(dir, { heartbeatMs: 100, watchMs: 400 }, never);
  t.after(() => lock.release());
  assert.ok(Date.now() - started >= 350, 'it watched first');
});

test('the owner beats: its record changes every heartbeat; an owner whose lock another process took is told at its next beat', async (t) => {
  const dir = await folder(t);
  let lost: Error | undefined;
  const lock = await FolderLock.take(dir, { heartbeatMs: 50 }, (err) => { lost = err; });
  t.after(() => lock.release());
  const first = await readFile(join(dir, 'LOCK'), 'utf8');
  const deadline = Date.now() + 10_000;
  while ((await readFile(join(dir, 'LOCK'), 'utf8')) === first && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(JSON.parse(await readFile(join(dir, 'LOCK'), 'utf8')).beat > JSON.parse(first).beat, 'the record changed');
  // Another process takes the lock (this one stalled past a newcomer's watch): the next beat notices.
  await writeFile(join(dir, 'LOCK'), record({ pid: 1, start: '5', ns: 'pid:[1]', boot: null }));
  while (!lost && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(lost instanceof LogLockedError, 'the owner learns it lost the lock');
  assert.match(lost.message, /was taken by process 1/);
});

test('two newcomers racing for a dead owner\'s lock: exactly one takes it', async (t) => {
  const dir = await folder(t);
  const me = await identity('self');
  await writeFile(join(dir, 'LOCK'), record({ pid: process.pid, start: '1', ns: me.ns, boot: me.boot }));
  const results = await Promise.allSettled([FolderLock.take(dir, {}, never), FolderLock.take(dir, {}, never)]);
  const won = results.filter((r) => r.status === 'fulfilled');
  assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status === 'rejected' ? String(r.reason) : 'taken')));
  assert.ok((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason instanceof LogLockedError);
  await (won[0] as PromiseFulfilledResult<FolderLock>).value.release();
});

/** Runs test/support/hold-log.ts on `dir` as PID 1 of a PID namespace of its own; resolves with its first line. */
function holdInNamespace(t: TestContext, dir: string) {
  const child = spawn('unshare', ['--pid', '--fork', '--mount-proc', '--kill-child', process.execPath, '--import', 'tsx', 'test/support/hold-log.ts', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  let out = '';
  const line = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(JSON.parse(out.slice(0, out.indexOf('\n'))));
    });
    void exited.then(() => reject(new Error(`exited without a word: ${out}`)));
  });
  return { child, line, exited };
}

test('two PID namespaces sharing one WAL_DIR: a live owner (PID 1 of one) refuses a starter in another; after its kill -9 another PID 1 takes over', { timeout: 60_000 }, async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root for PID namespaces (CI runs as root)');
    return;
  }
  const dir = await folder(t);
  const a = holdInNamespace(t, dir);
  assert.deepEqual(await a.line, { event: 'held', pid: 1 });
  const b = holdInNamespace(t, dir);
  const refused = await b.line;
  assert.equal(refused.event, 'refused');
  assert.equal(refused.error, 'LogLockedError');
  assert.match(String(refused.message), /in use by process 1 in another PID namespace/);
  // kill -9 of A's owner (the node process that is PID 1 in A; unshare is its parent out here).
  const ownerPid = Number((await readFile(`/proc/${a.child.pid}/task/${a.child.pid}/children`, 'utf8')).trim());
  process.kill(ownerPid, 'SIGKILL');
  await a.exited;
  // C's namespace may even get the dead namespace's inode number back: the start time still tells them apart.
  const c = holdInNamespace(t, dir);
  assert.deepEqual(await c.line, { event: 'held', pid: 1 }, 'the dead owner\'s lock (process 1 of a namespace that is gone) is taken');
});
