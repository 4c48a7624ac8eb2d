/** The world's shape: index ↔ x, y, z in every order, boxes as ranges (checked against enumerating their cells), box spelling. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BoxError, boxCells, boxRangeCount, boxRanges, boxSpan, coordsOf, indexOf, isOrder, MAX_BOX_RANGES, parseBoxJson, parseBoxQuery, parseShape, type Box, type Shape } from '../lib/shape.js';
import { seededRandom } from './support/model.js';

const ORDERS = ['xyz', 'xzy', 'yxz', 'yzx', 'zxy', 'zyx'];

describe('shape', () => {
  test('xzy: x varies fastest, then z, then y (up), so one height is one run of cells', () => {
    const shape: Shape = { x: 4, y: 3, z: 5, order: 'xzy' };
    assert.equal(indexOf(shape, 1, 0, 0), 1);
    assert.equal(indexOf(shape, 0, 0, 1), 4);
    assert.equal(indexOf(shape, 0, 1, 0), 20);
    assert.equal(indexOf(shape, 3, 2, 4), 59);
    assert.deepEqual(coordsOf(shape, 59), { x: 3, y: 2, z: 4 });
    assert.deepEqual(boxRanges(shape, { x: 0, y: 1, z: 0, w: 4, h: 1, d: 5 }), [{ start: 20, count: 20 }]);
  });

  test('index → x, y, z → index is the identity, and indexes cover the world once, in every order', () => {
    for (const order of ORDERS) {
      const shape: Shape = { x: 3, y: 4, z: 5, order };
      const seen = new Set<number>();
      for (let x = 0; x < 3; x++) for (let y = 0; y < 4; y++) for (let z = 0; z < 5; z++) {
        const index = indexOf(shape, x, y, z);
        assert.deepEqual(coordsOf(shape, index), { x, y, z }, order);
        seen.add(index);
      }
      assert.equal(seen.size, 60);
      assert.equal(Math.max(...seen), 59);
      // The fastest axis is order[0]: one step along it is one index.
      assert.equal(indexOf(shape, order[0] === 'x' ? 1 : 0, order[0] === 'y' ? 1 : 0, order[0] === 'z' ? 1 : 0), 1, order);
    }
  });

  test('a box becomes its cells in ascending index order as sorted, disjoint, non-touching ranges (random boxes, every order)', () => {
    const next = seededRandom(19);
    for (const order of ORDERS) {
      const shape: Shape = { x: 5, y: 4, z: 6, order };
      for (let round = 0; round < 200; round++) {
        const x = next(5); const y = next(4); const z = next(6);
        const box: Box = { x, y, z, w: 1 + next(5 - x), h: 1 + next(4 - y), d: 1 + next(6 - z) };
        const expected: number[] = [];
        for (let i = box.x; i < box.x + box.w; i++) for (let j = box.y; j < box.y + box.h; j++) for (let k = box.z; k < box.z + box.d; k++) expected.push(indexOf(shape, i, j, k));
        expected.sort((a, b) => a - b);
        const ranges = boxRanges(shape, box);
        const cells = ranges.flatMap((r) => Array.from({ length: r.count }, (_, i) => r.start + i));
        assert.deepEqual(cells, expected, `${order} ${JSON.stringify(box)}`);
        for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i]!.start > ranges[i - 1]!.start + ranges[i - 1]!.count, 'ranges neither overlap nor touch');
        assert.equal(boxRangeCount(shape, box), ranges.length);
        assert.equal(boxCells(box), expected.length);
        assert.deepEqual(boxSpan(shape, box), { start: expected[0], count: expected.at(-1)! - expected[0]! + 1 });
      }
    }
  });

  test('boxes are spelled x,y,z,w,h,d or [x,y,z,w,h,d]; anything else, or outside the world, is a BoxError naming why', () => {
    const shape: Shape = { x: 16, y: 8, z: 12, order: 'xzy' };
    assert.deepEqual(parseBoxQuery('1,2,3,4,5,6', shape), { x: 1, y: 2, z: 3, w: 4, h: 5, d: 6 });
    assert.deepEqual(parseBoxJson([0, 0, 0, 16, 8, 12], shape), { x: 0, y: 0, z: 0, w: 16, h: 8, d: 12 });
    for (const raw of ['', '1,2,3,4,5', '1,2,3,4,5,6,7', '1,2,3,4,5,x', '-1,0,0,1,1,1', '1.5,0,0,1,1,1', ' 1,0,0,1,1,1', '0,0,0,0,1,1']) {
      assert.throws(() => parseBoxQuery(raw, shape), BoxError, raw);
    }
    for (const value of [undefined, 'a', [1, 2, 3], [0, 0, 0, 1, 1, 1.5], [0, 0, 0, 1, 1, -1], [0, 0, 0, '1', 1, 1], { x: 0 }]) {
      assert.throws(() => parseBoxJson(value, shape), BoxError, JSON.stringify(value));
    }
    assert.throws(() => parseBoxQuery('15,0,0,2,1,1', shape), /outside the world along x: 15 \+ 2 > 16/);
    assert.throws(() => parseBoxQuery('0,7,0,1,2,1', shape), /along y/);
    assert.throws(() => parseBoxJson([0, 0, 12, 1, 1, 1], shape), /along z/);
    // A box of too many separate runs is refused before any is built.
    const tall: Shape = { x: 2, y: 1024, z: 1024, order: 'xzy' };
    assert.ok(1024 * 1024 > MAX_BOX_RANGES);
    assert.throws(() => parseBoxQuery('0,0,0,1,1024,1024', tall), /separate runs/);
    assert.equal(boxRangeCount(tall, parseBoxQuery('0,0,0,2,1024,1024', tall)), 1, 'the whole world is one run');
  });

  test('orders and shapes are spelled as in the configuration', () => {
    for (const order of ORDERS) assert.ok(isOrder(order), order);
    for (const order of ['xxy', 'xy', 'xyzz', 'abc', '']) assert.ok(!isOrder(order), order);
    assert.deepEqual(parseShape('256x128x64', 'xzy'), { x: 256, y: 128, z: 64, order: 'xzy' });
    for (const raw of ['256x256', '0x1x1', '1x1x1x1', 'axbxc', '1.5x1x1']) assert.equal(parseShape(raw, 'xzy'), undefined, raw);
  });
});
