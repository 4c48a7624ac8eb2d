/** Batches: an array of commands in one POST /request, end to end. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_BATCH } from '../lib/protocol.js';
import { openFileStore, startServer, TEST_CELLS } from './support/app.js';
import { cell } from './support/http.js';

describe('batches', () => {
  test('an array of commands answers an array, in order; reads see the batch\'s earlier writes', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const answer = await s.post('/request', [
      { action: 1, index: 1, category: 1 }, { index: 1 }, { action: 1, index: 1, category: 2, sideB: 9 }, { index: 2 }, null,
    ]);
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.json, [
      { status: 200, ...cell(1) }, { status: 200, ...cell(1) }, { status: 200, ...cell(2, 0, 0, 9) }, { status: 200, ...cell(0) }, { status: 200, ...cell(0) },
    ]);
    assert.deepEqual((await s.post('/request', { index: 1 })).json, { status: 200, ...cell(2, 0, 0, 9) });
    assert.deepEqual((await s.post('/request', [])).json, []);
  });

  test('one bad element: 400 naming the first one, and nothing written', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const answer = await s.post('/request', [{ action: 1, index: 1, category: 1 }, { action: 1, index: 2, category: 256 }, { action: 1, index: TEST_CELLS }]);
    assert.equal(answer.status, 400);
    assert.match(answer.json.error, /^element 1: category must be between 0 and 255/);
    assert.equal((await s.post('/request', { index: 1 })).json.category, 0);
    assert.match((await s.post('/request', [{}, [1]])).json.error, /^element 1: /);
    assert.match((await s.post('/request', [{}, 'x'])).json.error, /^element 1: /);
    assert.equal(s.app.cube.version, 0);
  });

  test(`more than ${MAX_BATCH} commands: 413`, async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const full = await s.post('/request', Array.from({ length: MAX_BATCH }, (_, i) => ({ action: 1, index: i % TEST_CELLS, category: 1 })));
    assert.equal(full.status, 200);
    assert.equal(full.json.length, MAX_BATCH);
    const over = await s.post('/request', Array.from({ length: MAX_BATCH + 1 }, () => ({})));
    assert.equal(over.status, 413);
    assert.match(over.json.error, /at most 4096 commands/);
  });
});
