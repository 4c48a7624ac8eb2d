/** lib/cube.ts: the cells, their counters, and snapshots. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Cube, SNAPSHOT_SLICE_BYTES } from '../lib/cube.js';

describe('cube', () => {
  test('reads back what it wrote, counts versions, snapshots are copies', () => {
    const cube = new Cube(8);
    cube.write(7, { category: 1, rotation: 2, sideA: 3, sideB: 4 });
    assert.deepEqual(cube.read(7), { category: 1, rotation: 2, sideA: 3, sideB: 4 });
    assert.deepEqual([...cube.bytes.subarray(28)], [1, 2, 3, 4]);
    const snapshot = cube.snapshot();
    cube.write(7, { category: 9, rotation: 9, sideA: 9, sideB: 9 });
    assert.equal(snapshot.slices, 1);
    assert.deepEqual([...snapshot.readSlice(0).subarray(28)], [1, 2, 3, 4]);
    snapshot.release();
    assert.equal(snapshot.version, 1);
    assert.equal(cube.version, 2);
  });

  test('a snapshot is the world at one instant, whatever is written while it is read, slice by slice', () => {
    const cells = (3 * SNAPSHOT_SLICE_BYTES) / 4 + 10; // three whole slices and a short fourth
    const cube = new Cube(cells);
    for (let i = 0; i < cells; i += 1000) cube.write(i, { category: i & 255, rotation: 1, sideA: 0, sideB: 0 });
    const before = cube.bytes.slice();
    const snapshot = cube.snapshot();
    assert.equal(snapshot.slices, 4);
    assert.throws(() => cube.snapshot(), /already/);
    const sliceCells = SNAPSHOT_SLICE_BYTES / 4;
    cube.write(5, { category: 200, rotation: 0, sideA: 0, sideB: 0 }); // slice 0, before it is read
    const read: Uint8Array[] = [snapshot.readSlice(0)];
    cube.write(6, { category: 201, rotation: 0, sideA: 0, sideB: 0 }); // slice 0, after it is read: no copy needed
    cube.writeRange(sliceCells - 1, new Uint8Array(8).fill(9)); // across slices 0 and 1
    cube.write(2 * sliceCells + 3, { category: 202, rotation: 0, sideA: 0, sideB: 0 });
    read.push(snapshot.readSlice(1), snapshot.readSlice(2));
    cube.replace(new Uint8Array(cells * 4).fill(3)); // everything, slice 3 not yet read
    read.push(snapshot.readSlice(3));
    snapshot.release();
    assert.ok(Buffer.concat(read).equals(before));
    assert.equal(cube.cellsInUse, cells);
    cube.snapshot().release(); // released: a new one may start
  });

  test('keeps cells in use, the category histogram and bytes written up to date through every kind of write', () => {
    const cube = new Cube(8);
    const recount = () => {
      const categories = new Array(256).fill(0);
      let used = 0;
      for (let i = 0; i < 8; i++) {
        const c = cube.read(i);
        categories[c.category]++;
        if (c.category || c.rotation || c.sideA || c.sideB) used++;
      }
      assert.equal(cube.cellsInUse, used);
      assert.deepEqual([...cube.categories], categories);
    };
    recount();
    cube.write(1, { category: 5, rotation: 0, sideA: 0, sideB: 0 });
    cube.write(2, { category: 0, rotation: 0, sideA: 0, sideB: 1 });
    cube.write(1, { category: 6, rotation: 0, sideA: 0, sideB: 0 });
    recount();
    cube.write(2, { category: 0, rotation: 0, sideA: 0, sideB: 0 });
    recount();
    cube.writeRange(6, new Uint8Array([7, 0, 0, 0, 0, 0, 0, 0]));
    recount();
    const world = new Uint8Array(32).map((_, i) => (i % 3 === 0 ? i : 0));
    cube.replace(world);
    recount();
    assert.equal(cube.bytesWritten, 4 * 4 + 8 + 32);
    assert.ok(cube.holds(3, { category: 12, rotation: 0, sideA: 0, sideB: 15 }));
    assert.ok(!cube.holds(3, { category: 12, rotation: 0, sideA: 0, sideB: 0 }));
  });

  test('refuses bytes of the wrong size', () => {
    assert.throws(() => new Cube(8).replace(new Uint8Array(33)), RangeError);
  });
});
