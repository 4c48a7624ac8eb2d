/** Boxes in every route that takes a region: GET and PUT /cells, POST /restore, POST /rollback, GET /history. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Shape } from '../lib/shape.js';
import { AUTH, openFileStore, openWalDir, startServer, type Running } from './support/app.js';
import { basicHeader } from './support/http.js';
import { splittingInstant } from './support/model.js';

/** 8 across (x), 4 up (y), 6 deep (z); x fastest, then z, then y. */
const SHAPE: Shape = { x: 8, y: 4, z: 6, order: 'xzy' };
const CELLS = 8 * 4 * 6;
/** The index of x, y, z in SHAPE, spelled out here rather than taken from lib/shape.ts. */
const at = (x: number, y: number, z: number) => x + 8 * (z + 6 * y);
/** The indexes of a box's cells in ascending order, by enumerating them. */
function boxIndexes(x: number, y: number, z: number, w: number, h: number, d: number): number[] {
  const out: number[] = [];
  for (let i = x; i < x + w; i++) for (let j = y; j < y + h; j++) for (let k = z; k < z + d; k++) out.push(at(i, j, k));
  return out.sort((a, b) => a - b);
}

async function rawGet(s: Running, path: string): Promise<{ status: number; bytes: Buffer }> {
  const res = await fetch(`${s.url}${path}`, { headers: { Authorization: basicHeader(AUTH.user, AUTH.password) } });
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
}

/** Every cell gets its own value: category = index % 251 + 1, sideA = index >> 8. */
function distinctWorld(): Uint8Array {
  const world = new Uint8Array(CELLS * 4);
  for (let i = 0; i < CELLS; i++) world.set([i % 251 + 1, 0, i >> 8, 0], i * 4);
  return world;
}

describe('boxes', () => {
  test('GET /cells?box= reads the box\'s cells in ascending index order; PUT /cells?box= writes exactly them, as one change', async (t) => {
    const s = await startServer(t, await openFileStore(t), { cells: CELLS, shape: SHAPE, wal: { dir: await openWalDir(t), sync: 'write' } });
    const world = distinctWorld();
    assert.equal((await s.call('/cells', { method: 'PUT', body: world, auth: AUTH })).status, 200);
    const box = [2, 1, 3, 3, 2, 2] as const;
    const indexes = boxIndexes(...box);
    const read = await rawGet(s, `/cells?box=${box.join(',')}`);
    assert.equal(read.status, 200);
    assert.deepEqual([...read.bytes], indexes.flatMap((i) => [...world.subarray(i * 4, i * 4 + 4)]));

    assert.equal((await s.post('/s3dump')).status, 200);
    const then = await splittingInstant();
    const body = new Uint8Array(indexes.length * 4);
    indexes.forEach((_, n) => body.set([200, 1, n, 9], n * 4));
    const put = await s.call(`/cells?box=${box.join(',')}&by=builder`, { method: 'PUT', body, auth: AUTH });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(put.json, { status: 200, box: [...box], cells: 12 });
    const after = world.slice();
    indexes.forEach((i, n) => after.set(body.subarray(n * 4, n * 4 + 4), i * 4));
    assert.deepEqual([...(await rawGet(s, '/cells')).bytes], [...after], 'the box\'s cells, and no other, changed');
    assert.deepEqual([...(await rawGet(s, `/cells?box=${box.join(',')}&at=${new Date(then).toISOString()}`)).bytes], [...read.bytes], 'the box as it was');
    assert.deepEqual([...(await rawGet(s, `/cells?box=${box.join(',')}`)).bytes], [...body]);

    // One change: every cell in the history with the same instant and author.
    const history = await s.call(`/history?box=${box.join(',')}&since=${new Date(then).toISOString()}`, { auth: AUTH });
    assert.equal(history.status, 200, history.text);
    assert.deepEqual(history.json.changes.map((c: { index: number }) => c.index).sort((a: number, b: number) => a - b), indexes);
    assert.equal(new Set(history.json.changes.map((c: { at: string; by: string }) => `${c.at} ${c.by}`)).size, 1);
    assert.equal(history.json.changes[0].by, 'builder');
    const outside = await s.call(`/history?box=0,0,0,2,4,6&since=${new Date(then).toISOString()}`, { auth: AUTH });
    assert.deepEqual(outside.json.changes, [], 'no change outside the box');
  });

  test('POST /restore {at, box} puts back the box only; POST /rollback {by, box} undoes that player inside the box only', async (t) => {
    const s = await startServer(t, await openFileStore(t), { cells: CELLS, shape: SHAPE, wal: { dir: await openWalDir(t), sync: 'write' } });
    const world = distinctWorld();
    assert.equal((await s.call('/cells', { method: 'PUT', body: world, auth: AUTH })).status, 200);
    assert.equal((await s.post('/s3dump')).status, 200);
    const then = new Date(await splittingInstant()).toISOString();
    const griefed = new Uint8Array(CELLS * 4).fill(66);
    assert.equal((await s.call('/cells?by=griefer', { method: 'PUT', body: griefed, auth: AUTH })).status, 200);

    const restored = await s.post('/restore', { at: then, box: [0, 0, 0, 8, 1, 6] });
    assert.equal(restored.status, 200, restored.text);
    assert.equal(restored.json.restored.cells, 48);
    const now = (await rawGet(s, '/cells')).bytes;
    for (let i = 0; i < CELLS; i++) assert.deepEqual([...now.subarray(i * 4, i * 4 + 4)], i < 48 ? [...world.subarray(i * 4, i * 4 + 4)] : [66, 66, 66, 66], `cell ${i}`);

    const box = [1, 1, 1, 2, 2, 3];
    const inside = new Set(boxIndexes(1, 1, 1, 2, 2, 3));
    const preview = await s.post('/rollback', { by: 'griefer', since: then, box, preview: true });
    assert.equal(preview.status, 200, preview.text);
    assert.deepEqual(preview.json.cells.map((c: { index: number }) => c.index), [...inside]);
    const done = await s.post('/rollback', { by: 'griefer', since: then, box });
    assert.equal(done.status, 200, done.text);
    assert.equal(done.json.restored, 12);
    const final = (await rawGet(s, '/cells')).bytes;
    for (let i = 48; i < CELLS; i++) assert.deepEqual([...final.subarray(i * 4, i * 4 + 4)], inside.has(i) ? [...world.subarray(i * 4, i * 4 + 4)] : [66, 66, 66, 66], `cell ${i}`);
  });

  test('a bad box, a box beside start, count or ranges, and a box in a flat world are 400s that change nothing', async (t) => {
    const s = await startServer(t, await openFileStore(t), { cells: CELLS, shape: SHAPE, wal: { dir: await openWalDir(t), sync: 'write' } });
    assert.equal((await s.post('/s3dump')).status, 200);
    const now = new Date().toISOString();
    const refusals: Array<[string, Promise<{ status: number; text: string }>, RegExp]> = [
      ['GET box+start', s.call('/cells?box=0,0,0,1,1,1&start=0', { auth: AUTH }), /either box or start\/count/],
      ['GET box+count', s.call('/cells?box=0,0,0,1,1,1&count=1', { auth: AUTH }), /either box or start\/count/],
      ['GET outside', s.call('/cells?box=0,0,0,9,1,1', { auth: AUTH }), /outside the world along x/],
      ['GET spelling', s.call('/cells?box=0,0,0,1,1', { auth: AUTH }), /box must be x,y,z,w,h,d/],
      ['PUT short body', s.call('/cells?box=0,0,0,2,1,1', { method: 'PUT', body: new Uint8Array(4).fill(1), auth: AUTH }), /the box's 2 cells \(8 bytes\), got 4/],
      ['PUT box+start', s.call('/cells?box=0,0,0,1,1,1&start=3', { method: 'PUT', body: new Uint8Array(4).fill(1), auth: AUTH }), /either box or start/],
      ['restore box+ranges', s.post('/restore', { at: now, box: [0, 0, 0, 1, 1, 1], ranges: [{ start: 0, count: 1 }] }), /either box, or start and count, or ranges/],
      ['restore box+start', s.post('/restore', { at: now, box: [0, 0, 0, 1, 1, 1], start: 0, count: 1 }), /either box/],
      ['restore bad box', s.post('/restore', { at: now, box: '0,0,0,1,1,1' }), /box must be \[x, y, z, w, h, d\]/],
      ['restore outside', s.post('/restore', { at: now, box: [0, 0, 5, 1, 1, 2] }), /along z/],
      ['rollback box+start', s.post('/rollback', { by: 'p', since: now, box: [0, 0, 0, 1, 1, 1], start: 0 }), /either box/],
      ['history box+start', s.call('/history?box=0,0,0,1,1,1&start=0', { auth: AUTH }), /either box or start\/count/],
    ];
    for (const [what, answer, error] of refusals) {
      const got = await answer;
      assert.equal(got.status, 400, `${what}: ${got.text}`);
      assert.match(JSON.parse(got.text).error, error, what);
    }
    assert.equal(s.app.cube.version, 0, 'nothing changed');

    const flat = await startServer(t, await openFileStore(t));
    for (const answer of [flat.call('/cells?box=0,0,0,1,1,1', { auth: AUTH }), flat.post('/restore', { at: now, box: [0, 0, 0, 1, 1, 1] }), flat.call('/history?box=0,0,0,1,1,1', { auth: AUTH })]) {
      const got = await answer;
      assert.equal(got.status, 400);
      assert.match(JSON.parse(got.text).error, /this world is flat/);
    }
  });
});
