/**
 * Time travel, model-based: random single writes, batches and range writes over time against a model that
 * keeps the world after every step; then random instants and ranges read through GET /cells?at= and
 * POST /request reads with "at", compared byte for byte; partial and whole restores checked against the
 * model; all again after a restart; in both stores. Plus the edges: before the oldest snapshot, a fenced
 * server, a restore racing writes.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { AUTH, openFileStore, openS3Store, openWalDir, startServer, TEST_CELLS, waitForShipped, type Running, type StoreFixture } from './support/app.js';
import { seededRandom, splittingInstant } from './support/model.js';
import { basicHeader, waitFor } from './support/http.js';

/** The cells the test writes (a region of the world, so that instants differ in many of them). */
const REGION = 512;


async function cellsBytes(s: Running, start: number, count: number, at?: number): Promise<{ status: number; bytes: Buffer; text: string }> {
  const query = `start=${start}&count=${count}${at === undefined ? '' : `&at=${new Date(at).toISOString()}`}`;
  const res = await fetch(`${s.url}/cells?${query}`, { headers: { Authorization: basicHeader(AUTH.user, AUTH.password) } });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { status: res.status, bytes, text: bytes.toString('utf8') };
}


/** Random writes through all three kinds of change, applied to `model` as the server applies them. */
async function randomSteps(s: Running, model: Uint8Array, next: (n: number) => number, steps: number): Promise<void> {
  for (let i = 0; i < steps; i++) {
    const kind = next(3);
    if (kind === 0) {
      const index = next(REGION);
      const cell = [next(256), next(4), next(256), next(256)] as const;
      assert.equal((await s.post('/request', { action: 1, index, category: cell[0], rotation: cell[1], sideA: cell[2], sideB: cell[3] })).status, 200);
      model.set(cell, index * 4);
    } else if (kind === 1) {
      const batch = Array.from({ length: 1 + next(5) }, () => ({ action: 1, index: next(REGION), category: next(256), rotation: next(4), sideA: 1, sideB: 2 }));
      assert.equal((await s.post('/request', batch)).status, 200);
      for (const c of batch) model.set([c.category, c.rotation, c.sideA, c.sideB], c.index * 4);
    } else {
      const start = next(REGION - 8);
      const bytes = Uint8Array.from({ length: (1 + next(8)) * 4 }, () => next(256));
      assert.equal((await s.call(`/cells?start=${start}`, { method: 'PUT', body: bytes, auth: AUTH })).status, 200);
      model.set(bytes, start * 4);
    }
  }
}

/** Every kept instant, read through GET /cells?at= over random ranges and through /request reads with "at", equals the model. */
async function checkPast(s: Running, past: Array<{ at: number; world: Uint8Array }>, next: (n: number) => number, label: string): Promise<void> {
  for (const { at, world } of past) {
    const start = next(REGION / 2);
    const count = 1 + next(REGION / 2);
    const read = await cellsBytes(s, start, count, at);
    assert.equal(read.status, 200, read.text);
    assert.deepEqual(read.bytes, Buffer.from(world.subarray(start * 4, (start + count) * 4)), `${label}: cells ${start}+${count} at ${new Date(at).toISOString()}`);
    const indexes = Array.from({ length: 4 }, () => next(REGION));
    const answer = await s.post('/request', indexes.map((index) => ({ index, at: new Date(at).toISOString() })));
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(answer.json.map((c: { category: number; rotation: number; sideA: number; sideB: number }) => [c.category, c.rotation, c.sideA, c.sideB]),
      indexes.map((i) => [...world.subarray(i * 4, i * 4 + 4)]), `${label}: /request reads at ${new Date(at).toISOString()}`);
  }
}


const STORES: Array<[string, (t: TestContext) => Promise<StoreFixture>]> = [['file', openFileStore], ['s3', () => openS3Store()]];

describe('time travel', () => {
  for (const [kind, open] of STORES) {
    test(`reads and restores any instant, whole or in part, before and after a restart, across snapshots (${kind} store)`, async (t) => {
      const fixture = await open(t);
      const options = { wal: { dir: await openWalDir(t), sync: 'write' as const }, shipIntervalMs: 40 };
      let s = await startServer(t, fixture, options);
      const next = seededRandom(kind === 'file' ? 7 : 11);
      const model = new Uint8Array(TEST_CELLS * 4);
      assert.equal((await s.post('/s3dump')).status, 200); // history starts at the first snapshot
      const past: Array<{ at: number; world: Uint8Array }> = [{ at: await splittingInstant(), world: model.slice() }];
      for (let epoch = 1; epoch <= 10; epoch++) {
        await randomSteps(s, model, next, 12);
        if (epoch === 3 || epoch === 7) assert.equal((await s.post('/s3dump')).status, 200); // instants on both sides of snapshots
        past.push({ at: await splittingInstant(), world: model.slice() });
      }
      const history = (await s.call('/backups', { auth: AUTH })).json.history;
      assert.ok(Date.parse(history.earliest) <= past[0]!.at && Date.parse(history.latest) >= past.at(-1)!.at, JSON.stringify(history));
      assert.equal(history.granularity, 'change');
      await checkPast(s, past, next, 'running');

      // A partial restore: two ranges back to epoch 2, every other cell keeps its newest value.
      const target = past[2]!;
      const ranges = [{ start: 10, count: 30 }, { start: 200, count: 5 }];
      const restored = await s.post('/restore', { at: new Date(target.at).toISOString(), ranges });
      assert.equal(restored.status, 200, restored.text);
      assert.equal(restored.json.restored.cells, 35);
      for (const r of ranges) model.set(target.world.subarray(r.start * 4, (r.start + r.count) * 4), r.start * 4);
      assert.deepEqual((await cellsBytes(s, 0, REGION)).bytes, Buffer.from(model.subarray(0, REGION * 4)), 'after the partial restore');
      past.push({ at: await splittingInstant(), world: model.slice() });

      // A whole restore to before the first snapshot boundary, then undone by a restore to the instant before it.
      const before = past.at(-1)!;
      assert.equal((await s.post('/restore', { at: new Date(past[1]!.at).toISOString() })).status, 200);
      assert.deepEqual((await cellsBytes(s, 0, REGION)).bytes, Buffer.from(past[1]!.world.subarray(0, REGION * 4)), 'after the whole restore');
      assert.equal((await s.post('/restore', { at: new Date(before.at).toISOString() })).status, 200);
      assert.deepEqual((await cellsBytes(s, 0, REGION)).bytes, Buffer.from(before.world.subarray(0, REGION * 4)), 'the restore undone');
      await waitForShipped(s)

      await s.app.close();
      s = await startServer(t, fixture, options);
      await checkPast(s, past, next, 'after a restart');
      assert.deepEqual((await cellsBytes(s, 0, REGION)).bytes, Buffer.from(before.world.subarray(0, REGION * 4)), 'the newest state after the restart');
    });
  }

  test('an instant outside the history kept is refused, naming the span; bad instants and ranges are 400s that change nothing', async (t) => {
    const s = await startServer(t, await openFileStore(t), { wal: { dir: await openWalDir(t), sync: 'write' } });
    const beforeBoot = await cellsBytes(s, 0, 1, Date.now() - 60_000);
    assert.equal(beforeBoot.status, 400, 'history starts at the world\'s first boot');
    assert.match(JSON.parse(beforeBoot.text).error, /outside the history kept/);
    await s.post('/request', { action: 1, index: 1, category: 9 });
    const early = await cellsBytes(s, 0, 1, Date.now() - 3_600_000);
    assert.equal(early.status, 400);
    assert.match(JSON.parse(early.text).error, /outside the history kept, from \S+Z to \S+Z/);
    const future = await s.post('/restore', { at: new Date(Date.now() + 60_000).toISOString() });
    assert.equal(future.status, 400);
    assert.match(future.json.error, /outside the history kept/);
    for (const body of [{ at: 'yesterday' }, { at: 5 }, { at: new Date().toISOString(), start: TEST_CELLS }, { at: new Date().toISOString(), start: 0, count: 0 },
      { at: new Date().toISOString(), ranges: [] }, { at: new Date().toISOString(), ranges: [{ start: 1, count: TEST_CELLS }] }, { at: new Date().toISOString(), start: 0, count: 1, ranges: [{ start: 0, count: 1 }] }]) {
      const answer = await s.post('/restore', body);
      assert.equal(answer.status, 400, JSON.stringify(body));
    }
    assert.equal((await s.post('/request', { action: 1, index: 2, category: 3, at: new Date().toISOString() })).status, 400, 'a write cannot carry at');
    assert.equal((await s.post('/request', { index: 2, at: 'soon' })).status, 400);
    assert.equal((await s.post('/request', { index: 1 })).json.category, 9, 'nothing changed');
  });

  test('a restore racing writes to the same cells is one step: each cell ends as the past value or a later write, never a mix within one write', async (t) => {
    const s = await startServer(t, await openFileStore(t), { wal: { dir: await openWalDir(t), sync: 'write' } });
    assert.equal((await s.post('/s3dump')).status, 200);
    const then = await splittingInstant();
    const writes = Array.from({ length: 40 }, (_, i) => s.post('/request', [{ action: 1, index: i % 20, category: 100 + i, sideA: 100 + i }, { action: 1, index: 20 + (i % 20), category: 100 + i, sideA: 100 + i }]));
    const restore = s.post('/restore', { at: new Date(then).toISOString(), start: 0, count: 40 });
    const answers = await Promise.all([...writes, restore]);
    for (const answer of answers) assert.equal(answer.status, 200, answer.text);
    const world = (await cellsBytes(s, 0, 40)).bytes;
    for (let cell = 0; cell < 40; cell++) {
      const [category, , sideA] = world.subarray(cell * 4, cell * 4 + 4);
      assert.ok((category === 0 && sideA === 0) || (category === sideA && category! >= 100), `cell ${cell} holds a mix: ${category}/${sideA}`);
    }
  });

  test('a fenced server refuses to restore with 503, as every write route', async (t) => {
    const fixture = await openFileStore(t);
    const a = await startServer(t, fixture, { wal: { dir: await openWalDir(t), sync: 'write' }, shipIntervalMs: 30 });
    assert.equal((await a.post('/s3dump')).status, 200);
    await startServer(t, fixture, { wal: { dir: await openWalDir(t), sync: 'write' } });
    await a.post('/request', { action: 1, index: 1, category: 1 }); // its shipment finds the prefix taken
    await waitFor('fenced', async () => (await a.call('/healthcheck')).json.backup.fenced);
    const refused = await a.post('/restore', { at: new Date().toISOString(), start: 0, count: 1 });
    assert.equal(refused.status, 503, refused.text);
    assert.match(refused.json.error, /another server committed/);
    const rollback = await a.post('/rollback', { by: 'p', since: new Date(Date.now() - 100).toISOString() });
    assert.equal(rollback.status, 503, rollback.text);
  });
});
