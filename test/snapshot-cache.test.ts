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
});
