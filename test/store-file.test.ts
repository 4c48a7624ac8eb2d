import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir, utimes, writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import { FileStore, LOCK_STALE_MS } from '../lib/store-file.js';
import { openFileStore } from './support/app.js';
import { storeContract } from './store-contract.js';

storeContract('FileStore', openFileStore);

test('FileStore refuses keys that would leave its folder', async (t) => {
  const { store } = await openFileStore(t);
  await assert.rejects(store.put('../escape', new Uint8Array(1)), /invalid key/);
  await assert.rejects(store.get('/etc/passwd'), /invalid key/);
});

test('FileStore leaves no temp files behind, even when putIfAbsent loses', async (t) => {
  const { store, dir } = await openFileStore(t);
  await store.put('k/a', new Uint8Array([1]));
  assert.equal(await store.putIfAbsent('k/a', new Uint8Array([2])), false);
  assert.deepEqual(await readdir(`${dir}/k`), ['a']);
});

test('FileStore on a folder that does not exist yet lists nothing and creates it on write', async (t) => {
  const { dir } = await openFileStore(t);
  const store = new FileStore(`${dir}/not/yet`);
  assert.deepEqual(await store.list('p/'), []);
  await store.put('p/x', new Uint8Array([1]));
  assert.deepEqual(await store.list('p/'), ['p/x']);
});

test('FileStore putIfMatch is a compare-and-swap across processes: two of them counting on one key lose no increment', async (t) => {
  const { store, dir } = await openFileStore(t);
  await store.put('counter', new TextEncoder().encode('0'));
  const workers = [0, 1].map(() => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/cas-worker.ts', dir, 'counter', '150', '2'], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk; });
    return { child, done: once(child, 'exit').then(([code]) => { assert.equal(code, 0); return JSON.parse(out) as { won: number; lost: number }; }) };
  });
  for (const { child } of workers) child.stdin.end('go\n');
  const results = await Promise.all(workers.map((w) => w.done));
  assert.equal(new TextDecoder().decode(await store.get('counter')), '300', JSON.stringify(results));
  assert.ok(results.every((r) => r.lost > 0), `the processes raced: ${JSON.stringify(results)}`);
  assert.deepEqual(await readdir(dir), ['counter'], 'no lock or temp file left');
});

test('FileStore putIfMatch waits for a held lock, and breaks one a crashed process left', async (t) => {
  const { store, dir } = await openFileStore(t);
  await store.put('k', new TextEncoder().encode('a'));
  const { version } = (await store.getVersioned('k'))!;
  await writeFile(`${dir}/k.lock.tmp`, 'someone'); // a live holder's lock
  let settled = false;
  const swap = store.putIfMatch('k', new TextEncoder().encode('b'), version).finally(() => { settled = true; });
  assert.equal(new TextDecoder().decode(await store.get('k')), 'a');
  assert.deepEqual(await store.list(''), ['k'], 'a lock is not listed');
  // Aged past LOCK_STALE_MS, as if its holder had crashed: the waiting swap breaks it and goes through.
  assert.equal(settled, false);
  const old = new Date(Date.now() - LOCK_STALE_MS - 1000);
  await utimes(`${dir}/k.lock.tmp`, old, old);
  assert.equal(await swap, true);
  assert.equal(new TextDecoder().decode(await store.get('k')), 'b');
  assert.deepEqual(await readdir(dir), ['k']);
});

test('FileStore cleanup leaves a lock alone', async (t) => {
  const { store, dir } = await openFileStore(t);
  await store.put('p/k', new Uint8Array([1]));
  await writeFile(`${dir}/p/k.lock.tmp`, 'someone');
  assert.equal(await store.cleanup('p/', () => true), 0);
  assert.deepEqual((await readdir(`${dir}/p`)).sort(), ['k', 'k.lock.tmp']);
});
