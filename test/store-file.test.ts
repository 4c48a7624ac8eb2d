import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { test } from 'node:test';
import { FileStore } from '../lib/store-file.js';
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
