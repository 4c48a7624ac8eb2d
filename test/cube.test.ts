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

  test('a snapshot holds nothing for writes behind its reader, and the old cells (not slices) for writes ahead of it', () => {
    const sliceCells = SNAPSHOT_SLICE_BYTES / 4;
    const cells = 4 * sliceCells;
    const cube = new Cube(cells);
    for (let i = 0; i < cells; i += 7) cube.write(i, { category: i & 255, rotation: 1, sideA: 2, sideB: 3 });
    const instant = cube.bytes.slice();
    const snapshot = cube.snapshot();
    const into = new Uint8Array(SNAPSHOT_SLICE_BYTES);
    const read: Buffer[] = [Buffer.from(snapshot.readSlice(0, into))];
    read.push(Buffer.from(snapshot.readSlice(1, into)));
    // Slices 0 and 1 are uploaded: writes there, single cells and ranges, need nothing kept.
    for (let i = 0; i < 2 * sliceCells; i += 3) cube.write(i, { category: 77, rotation: 0, sideA: 0, sideB: 0 });
    cube.writeRange(10, new Uint8Array(sliceCells * 4).fill(5));
    assert.equal(snapshot.heldBytes, 0);
    assert.equal(snapshot.peakHeldBytes, 0);
    // Slice 2, ahead of the reader: a thousand single-cell writes (the same cell again, too) keep their old cells only.
    for (let k = 0; k < 1000; k++) cube.write(2 * sliceCells + ((k * 7919) % sliceCells), { category: k & 255, rotation: 9, sideA: 9, sideB: 9 });
    assert.ok(snapshot.heldBytes > 0 && snapshot.heldBytes <= 1000 * 8 * 2, `held ${snapshot.heldBytes} bytes for 1000 cells`);
    // Slice 3, written all over: its undo log would outgrow it, so it is copied once, whole, and written on.
    for (let i = 3 * sliceCells; i < cells; i++) cube.write(i, { category: 1, rotation: 1, sideA: 1, sideB: 1 });
    cube.writeRange(3 * sliceCells, new Uint8Array(64).fill(8));
    assert.ok(snapshot.heldBytes <= SNAPSHOT_SLICE_BYTES + SNAPSHOT_SLICE_BYTES / 4 + 1000 * 8 * 2, `held ${snapshot.heldBytes}`);
    read.push(Buffer.from(snapshot.readSlice(2, into)));
    read.push(Buffer.from(snapshot.readSlice(3)));
    assert.equal(snapshot.heldBytes, 0);
    assert.throws(() => snapshot.readSlice(3), /read already/);
    snapshot.release();
    assert.ok(Buffer.concat(read).equals(instant));
  });

  test('a snapshot equals its instant under random writes and ranges anywhere while it is read', () => {
    const sliceCells = SNAPSHOT_SLICE_BYTES / 4;
    const cells = 5 * sliceCells + 123;
    const cube = new Cube(cells);
    let seed = 12345;
    const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const scribble = (n: number) => {
      for (let k = 0; k < n; k++) {
        if (random() < 0.9) cube.write(Math.floor(random() * cells), { category: Math.floor(random() * 256), rotation: 1, sideA: 2, sideB: 3 });
        else {
          const count = 1 + Math.floor(random() * 3000);
          const start = Math.floor(random() * (cells - count));
          cube.writeRange(start, new Uint8Array(count * 4).fill(Math.floor(random() * 256)));
        }
      }
    };
    scribble(20_000);
    const instant = cube.bytes.slice();
    const snapshot = cube.snapshot();
    const into = new Uint8Array(SNAPSHOT_SLICE_BYTES);
    const read: Buffer[] = [];
    for (let i = 0; i < snapshot.slices; i++) {
      scribble(5_000);
      read.push(Buffer.from(snapshot.readSlice(i, into)));
    }
    snapshot.release();
    assert.ok(Buffer.concat(read).equals(instant));
  });

  test('a slice never written reads as zeros without reading the world; written while read, it still reads as the instant saw it', () => {
    const cube = new Cube(4 * (SNAPSHOT_SLICE_BYTES / 4));
    cube.write(SNAPSHOT_SLICE_BYTES / 4, { category: 9, rotation: 0, sideA: 0, sideB: 0 }); // slice 1 is written
    // Bytes put straight into the array (as a boot restore does before loaded()) show whether a slice is read.
    cube.bytes[2 * SNAPSHOT_SLICE_BYTES + 7] = 0xee;
    const snapshot = cube.snapshot();
    const into = new Uint8Array(SNAPSHOT_SLICE_BYTES).fill(0xaa); // a reused buffer holds the previous slice
    cube.writeRange(3 * (SNAPSHOT_SLICE_BYTES / 4), new Uint8Array(SNAPSHOT_SLICE_BYTES).fill(0xff)); // slice 3, whole, before it is read
    cube.write(0, { category: 1, rotation: 1, sideA: 1, sideB: 1 }); // slice 0, one cell, before it is read
    const zeros = Buffer.alloc(SNAPSHOT_SLICE_BYTES);
    assert.ok(Buffer.from(snapshot.readSlice(0, into)).equals(zeros), 'slice 0: zeros, as at the instant');
    const one = Buffer.from(snapshot.readSlice(1, into));
    assert.equal(one[0], 9, 'slice 1 was written: read from the world');
    assert.ok(Buffer.from(snapshot.readSlice(2, into)).equals(zeros), 'slice 2 was never written through the cube: not read');
    assert.ok(Buffer.from(snapshot.readSlice(3, into)).equals(zeros), 'slice 3: zeros, as at the instant');
    snapshot.release();
    cube.loaded(); // now the cube knows its bytes were written
    const after = cube.snapshot();
    for (let i = 0; i < 2; i++) after.readSlice(i, into);
    assert.equal(after.readSlice(2, into)[7], 0xee);
    assert.equal(after.readSlice(3, into)[0], 0xff);
    after.release();
  });

  test('a snapshot of a world never written leaves it out of resident memory', () => {
    const cube = new Cube(16_777_216); // 64 MiB
    const before = process.memoryUsage.rss();
    const snapshot = cube.snapshot();
    const into = new Uint8Array(SNAPSHOT_SLICE_BYTES);
    for (let i = 0; i < snapshot.slices; i++) snapshot.readSlice(i, into);
    snapshot.release();
    // Reading never-written memory made it resident on the bench machine: 64 MiB more for the first boot's snapshot.
    const grown = process.memoryUsage.rss() - before;
    assert.ok(grown < 32 * 1024 * 1024, `RSS grew ${(grown / 1048576).toFixed(1)} MiB`);
    assert.equal(cube.cells, 16_777_216);
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
