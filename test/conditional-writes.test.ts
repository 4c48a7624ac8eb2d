/** Conditional writes: a write with `expect` is a 409 unless the cell holds that value, end to end. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openFileStore, startServer } from './support/app.js';
import { cell } from './support/http.js';

describe('conditional writes', () => {
  test('a write that expects the current value writes; one that does not is a 409 with the current value', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', { action: 1, index: 5, category: 3 });
    const ok = await s.post('/request', { action: 1, index: 5, category: 4, expect: cell(3) });
    assert.deepEqual(ok.json, { status: 200, ...cell(4) });
    const clash = await s.post('/request', { action: 1, index: 5, category: 9, expect: cell(3) });
    assert.equal(clash.status, 409);
    assert.deepEqual({ ...clash.json, error: undefined }, { status: 409, error: undefined, index: 5, ...cell(4) });
    assert.equal((await s.post('/request', { index: 5 })).json.category, 4);
    assert.equal((await s.post('/request', { action: 1, index: 6, category: 1, EXPECT: { CATEGORY: 0 } })).status, 200, 'missing expect fields are 0; keys case-insensitive');
    assert.equal((await s.post('/request', { action: 1, index: 6, expect: { category: 1.5 } })).status, 400);
    assert.equal((await s.post('/request', { action: 1, index: 6, expect: 7 })).status, 400);
  });

  test('two players editing one block: exactly one wins', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const answers = await Promise.all([1, 2, 3, 4].map((player) => s.post('/request', { action: 1, index: 9, category: player, expect: cell(0) })));
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 409, 409, 409]);
    const winner = answers.find((a) => a.status === 200)!.json.category;
    for (const loser of answers.filter((a) => a.status === 409)) assert.equal(loser.json.category, winner);
  });

  test('a conflict anywhere in a batch writes nothing, and names the element', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', { action: 1, index: 2, category: 2 });
    const answer = await s.post('/request', [
      { action: 1, index: 1, category: 1 }, { action: 1, index: 1, category: 5, expect: cell(1) }, { action: 1, index: 2, category: 7, expect: cell(9) },
    ]);
    assert.equal(answer.status, 409);
    assert.equal(answer.json.element, 2);
    assert.equal(answer.json.category, 2);
    assert.equal((await s.post('/request', { index: 1 })).json.category, 0, 'the earlier elements were not written either');
  });
});
