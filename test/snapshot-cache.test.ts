/** lib/backup/snapshot-cache.ts: one snapshot kept, shared by concurrent reads, replaced by another, dropped after its time or a failed load. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SnapshotCache } from '../lib/backup/snapshot-cache.js';
import { waitFor } from './support/http.js';

describe('snapshot cache', () => {
  test('reads of the same snapshot share one load; another snapshot replaces it', async () => {
    const cache = new SnapshotCache(60_000);
    let loads = 0;
    const load = (fill: number) => async () => { loads++; return new Uint8Array(8).fill(fill); };
    const [a, b] = await Promise.all([cache.get('s1', load(1)), cache.get('s1', load(9))]);
    assert.equal(loads, 1);
    assert.equal(a, b);
    assert.equal((await cache.get('s1', load(9)))[0], 1, 'kept');
    assert.equal((await cache.get('s2', load(2)))[0], 2, 'another snapshot is loaded');
    assert.equal((await cache.get('s1', load(3)))[0], 3, 'and replaced the first');
    assert.equal(loads, 3);
    cache.clear();
    assert.equal(cache.kept, undefined);
  });

  test('a failed load is not kept; a kept snapshot is let go after its time to live', async () => {
    const cache = new SnapshotCache(30);
    await assert.rejects(cache.get('s1', async () => { throw new Error('store down'); }), /store down/);
    await waitFor('the failed load to be dropped', () => cache.kept === undefined);
    assert.equal((await cache.get('s1', async () => new Uint8Array(4).fill(7)))[0], 7, 'the next read tries again');
    assert.equal(cache.kept, 's1');
    await waitFor('the snapshot to be let go', () => cache.kept === undefined);
  });

  test('a buffer given back is lent again (its memory is already touched) while a snapshot is kept, and let go with it', async () => {
    const cache = new SnapshotCache(60_000);
    const first = cache.borrow(16);
    cache.giveBack(first.subarray(4, 8));
    assert.notEqual(cache.borrow(16).buffer, first.buffer, 'nothing is kept: a buffer given back is dropped');
    await cache.get('s1', async () => new Uint8Array(4));
    cache.giveBack(first.subarray(4, 8));
    const again = cache.borrow(8);
    assert.equal(again.buffer, first.buffer, 'the whole buffer, lent again');
    assert.equal(again.byteLength, 8);
    assert.notEqual(cache.borrow(8).buffer, first.buffer, 'lent once');
    cache.giveBack(again);
    assert.notEqual(cache.borrow(32).buffer, first.buffer, 'too small for a larger read');
    cache.giveBack(again);
    cache.clear();
    assert.notEqual(cache.borrow(8).buffer, first.buffer, 'let go with the snapshot');
  });
});
