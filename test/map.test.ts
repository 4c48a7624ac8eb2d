/** GET /map.png end to end: a real server holding a pattern, the PNG decoded, every pixel where the shape says. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PALETTE } from '../lib/map.js';
import type { Shape } from '../lib/shape.js';
import { AUTH, openFileStore, openWalDir, startServer, type Running } from './support/app.js';
import { basicHeader } from './support/http.js';
import { splittingInstant } from './support/model.js';
import { decodePng, pixel, type Decoded } from './support/png.js';

/** 16 across (x), 8 up (y), 12 deep (z); x fastest, then z, then y. */
const SHAPE: Shape = { x: 16, y: 8, z: 12, order: 'xzy' };
const CELLS = 16 * 8 * 12;
/** The index of x, y, z in SHAPE, spelled out here rather than taken from lib/shape.ts. */
const at = (x: number, y: number, z: number) => x + 16 * (z + 12 * y);

const TRANSPARENT = [0, 0, 0, 0];
const colour = (category: number) => [...PALETTE.subarray(category * 4, category * 4 + 4)];
/** A category's colour in the top view at height y: 45% bright at the bottom to full at the top. */
const shaded = (category: number, y: number) => colour(category).map((v, i) => (i === 3 ? 255 : Math.round(v * (0.45 + (0.55 * y) / 7))));

/** A floor at y=0 (category 1) but for the column x=15, z=11; a tower at x=3, z=4 up to y=5 (7); one cell at the top at x=10, z=2 (2); a category-0 cell with a side set at x=12, y=3, z=9. */
async function buildPattern(s: Running): Promise<void> {
  const writes: object[] = [];
  for (let x = 0; x < 16; x++) for (let z = 0; z < 12; z++) if (!(x === 15 && z === 11)) writes.push({ action: 1, index: at(x, 0, z), category: 1 });
  for (let y = 0; y <= 5; y++) writes.push({ action: 1, index: at(3, y, 4), category: 7 });
  writes.push({ action: 1, index: at(10, 7, 2), category: 2, rotation: 1 });
  writes.push({ action: 1, index: at(12, 3, 9), category: 0, sideA: 1 });
  for (let i = 0; i < writes.length; i += 100) assert.equal((await s.post('/request', writes.slice(i, i + 100))).status, 200);
}

/** GET /map.png?query: the answer, and its picture when it is a 200. */
async function map(s: Running, query: string): Promise<{ status: number; type: string | null; body: Buffer; picture?: Decoded }> {
  const res = await fetch(`${s.url}/map.png${query}`, { headers: { Authorization: basicHeader(AUTH.user, AUTH.password) } });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, type: res.headers.get('content-type'), body, ...(res.status === 200 ? { picture: decodePng(body) } : {}) };
}

describe('map', () => {
  test('the top view: each column\'s topmost non-empty cell in its category\'s colour, shaded by height; transparent where all is zero', async (t) => {
    const s = await startServer(t, await openFileStore(t), { cells: CELLS, shape: SHAPE });
    await buildPattern(s);
    const top = await map(s, '');
    assert.equal(top.status, 200);
    assert.equal(top.type, 'image/png');
    const p = top.picture!;
    assert.deepEqual([p.width, p.height], [16, 12], 'one pixel per column: x across, z down');
    assert.deepEqual(pixel(p, 3, 4), shaded(7, 5), 'the tower, seen at its top');
    assert.deepEqual(pixel(p, 10, 2), colour(2), 'a cell at the top: the full colour');
    assert.deepEqual(colour(2), [106, 170, 64, 255], 'the palette is fixed');
    assert.deepEqual(pixel(p, 12, 9), shaded(0, 3), 'category 0 with a side set is not empty');
    assert.deepEqual(pixel(p, 0, 0), shaded(1, 0), 'the floor');
    assert.deepEqual(pixel(p, 15, 11), TRANSPARENT, 'an empty column');
    for (let z = 0; z < 12; z++) for (let x = 0; x < 16; x++) {
      if ([[3, 4], [10, 2], [12, 9], [15, 11]].some(([a, b]) => a === x && b === z)) continue;
      assert.deepEqual(pixel(p, x, z), shaded(1, 0), `floor at ${x},${z}`);
    }
    assert.deepEqual((await map(s, '?view=top')).body, top.body, 'top is the default view');
  });

  test('a slice shows the cells at one height, unshaded', async (t) => {
    const s = await startServer(t, await openFileStore(t), { cells: CELLS, shape: SHAPE });
    await buildPattern(s);
    const floor = (await map(s, '?view=slice&y=0')).picture!;
    assert.deepEqual(pixel(floor, 3, 4), colour(7));
    assert.deepEqual(pixel(floor, 10, 2), colour(1), 'the floor under the high cell');
    assert.deepEqual(pixel(floor, 15, 11), TRANSPARENT);
    const high = (await map(s, '?view=slice&y=7')).picture!;
    for (let z = 0; z < 12; z++) for (let x = 0; x < 16; x++) {
      assert.deepEqual(pixel(high, x, z), x === 10 && z === 2 ? colour(2) : TRANSPARENT, `${x},${z} at y=7`);
    }
    assert.deepEqual(pixel((await map(s, '?view=slice&y=3')).picture!, 12, 9), colour(0));
  });

  test('a box draws part of the world; scale enlarges each pixel to a square', async (t) => {
    const s = await startServer(t, await openFileStore(t), { cells: CELLS, shape: SHAPE });
    await buildPattern(s);
    const part = (await map(s, '?box=2,0,3,4,8,3')).picture!;
    assert.deepEqual([part.width, part.height], [4, 3]);
    assert.deepEqual(pixel(part, 1, 1), shaded(7, 5), 'the tower at x=3, z=4 is at 1, 1 of the box');
    assert.deepEqual(pixel(part, 0, 0), shaded(1, 0));
    // A box below the tower's top sees it at the box's top.
    assert.deepEqual(pixel((await map(s, '?box=2,0,3,4,3,3')).picture!, 1, 1), shaded(7, 2));
    assert.deepEqual(pixel((await map(s, '?box=3,1,4,1,2,1&view=slice&y=2')).picture!, 0, 0), colour(7));
    const big = (await map(s, '?scale=3')).picture!;
    assert.deepEqual([big.width, big.height], [48, 36]);
    for (const [dx, dz] of [[0, 0], [2, 2], [1, 2]]) assert.deepEqual(pixel(big, 9 + dx, 12 + dz), shaded(7, 5));
    assert.deepEqual(pixel(big, 12, 12), shaded(1, 0));
  });

  test('with at, the world as it was then', async (t) => {
    const s = await startServer(t, await openFileStore(t), { cells: CELLS, shape: SHAPE, wal: { dir: await openWalDir(t), sync: 'write' } });
    await buildPattern(s);
    assert.equal((await s.post('/s3dump')).status, 200);
    const then = new Date(await splittingInstant()).toISOString();
    assert.equal((await s.post('/request', [{ action: 1, index: at(5, 6, 5), category: 9 }, { action: 1, index: at(3, 0, 4), category: 0 }])).status, 200);
    const later = new Date(await splittingInstant()).toISOString();
    assert.deepEqual(pixel((await map(s, '')).picture!, 5, 5), shaded(9, 6), 'now');
    // Later first: the snapshot the server keeps for the next map must not carry the changes replayed onto it.
    assert.deepEqual(pixel((await map(s, `?at=${later}`)).picture!, 5, 5), shaded(9, 6), 'a moment later');
    const past = (await map(s, `?at=${then}`)).picture!;
    assert.deepEqual(pixel(past, 5, 5), shaded(1, 0), 'then');
    assert.deepEqual(pixel(past, 3, 4), shaded(7, 5));
    assert.deepEqual(pixel((await map(s, `?view=slice&y=0&at=${then}`)).picture!, 3, 4), colour(7), 'the slice then');
    assert.deepEqual(pixel((await map(s, '?view=slice&y=0')).picture!, 3, 4), TRANSPARENT, 'the slice now');
    assert.deepEqual(pixel((await map(s, `?box=4,0,4,3,8,3&at=${then}`)).picture!, 1, 1), shaded(1, 0), 'a box then');
  });

  test('the pattern lands where any index order puts it', async (t) => {
    // z fastest, then y, then x: index = z + 2 * (y + 3 * x).
    const s = await startServer(t, await openFileStore(t), { cells: 24, shape: { x: 4, y: 3, z: 2, order: 'zyx' } });
    await s.post('/request', [{ action: 1, index: 1 + 2 * (2 + 3 * 1), category: 5 }, { action: 1, index: 0 + 2 * (0 + 3 * 3), category: 6 }]);
    const p = (await map(s, '')).picture!;
    assert.deepEqual([p.width, p.height], [4, 2]);
    assert.deepEqual(pixel(p, 1, 1), colour(5), 'x=1, y=2 (the top), z=1');
    assert.deepEqual(pixel(p, 3, 0), colour(6).map((v, i) => (i === 3 ? 255 : Math.round(v * 0.45))), 'x=3, y=0, z=0');
    assert.deepEqual(pixel(p, 0, 0), TRANSPARENT);
  });

  test('bad parameters, a flat world and a stranger get a JSON 4xx', async (t) => {
    const s = await startServer(t, await openFileStore(t), { cells: CELLS, shape: SHAPE });
    for (const [query, error] of [
      ['?view=side', /view must be top or slice/], ['?view=slice', /needs y/], ['?y=3', /use it with view=slice/], ['?view=slice&y=8', /y must be between 0 and 7/],
      ['?view=slice&y=1&box=0,2,0,1,1,1', /y must be between 2 and 2/], ['?scale=0', /scale/], ['?scale=17', /scale must be between 1 and 16/], ['?box=0,0,0,17,1,1', /outside the world along x/],
      ['?box=1,2,3', /box must be x,y,z,w,h,d/], ['?at=yesterday', /at must be an ISO 8601 instant/], [`?at=${new Date(Date.now() - 3_600_000).toISOString()}`, /outside the history kept/],
    ] as const) {
      const answer = await map(s, query);
      assert.equal(answer.status, 400, query);
      assert.match(JSON.parse(answer.body.toString()).error, error, query);
    }
    assert.equal((await s.call('/map.png')).status, 401);
    const flat = await startServer(t, await openFileStore(t));
    const refused = await map(flat, '');
    assert.equal(refused.status, 400);
    assert.match(JSON.parse(refused.body.toString()).error, /needs a world with a shape: this world is flat/);
    assert.equal((await s.call('/map.png', { method: 'POST', auth: AUTH })).status, 405);
  });
});
