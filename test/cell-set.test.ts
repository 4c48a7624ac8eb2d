/** CellSet against a plain Set of numbers: random ranges added, then members, slots and runs compared. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CellSet } from '../lib/backup/cell-set.js';
import { seededRandom } from './support/model.js';

test('members, slots and runs match a plain set, for ranges across word edges and long ranges', () => {
  for (const seed of [1, 2, 3, 4]) {
    const next = seededRandom(seed);
    const cells = 1 + next(5000);
    const set = new CellSet(cells);
    const model = new Set<number>();
    for (let k = next(40); k > 0; k--) {
      const start = next(cells);
      const end = Math.min(cells, start + (next(4) === 0 ? next(cells) : next(70)));
      set.add(start, end);
      for (let i = start; i < end; i++) model.add(i);
    }
    set.seal();
    const members = [...model].sort((a, b) => a - b);
    assert.equal(set.size, members.length, `seed ${seed}`);
    for (let i = 0; i < cells; i++) assert.equal(set.has(i), model.has(i), `seed ${seed}, cell ${i}`);
    members.forEach((cell, slot) => assert.equal(set.slot(cell), slot, `seed ${seed}, slot of ${cell}`));
    const runs: Array<[number, number]> = [];
    const from = next(cells);
    const to = from + next(cells - from + 1);
    set.eachRun(from, to, (a, b) => runs.push([a, b]));
    const expected: Array<[number, number]> = [];
    for (const cell of members.filter((c) => c >= from && c < to)) {
      const last = expected.at(-1);
      if (last && last[1] === cell) last[1]++;
      else expected.push([cell, cell + 1]);
    }
    assert.deepEqual(runs, expected, `seed ${seed}, runs in [${from}, ${to})`);
  }
});

test('a whole world of 2^24 cells is one run, and a set of every other cell has a slot a member', () => {
  const all = new CellSet(1 << 24);
  all.add(0, 1 << 24);
  all.seal();
  const runs: Array<[number, number]> = [];
  all.eachRun(0, 1 << 24, (a, b) => runs.push([a, b]));
  assert.deepEqual(runs, [[0, 1 << 24]]);
  assert.equal(all.slot((1 << 24) - 1), (1 << 24) - 1);
  const alternate = new CellSet(100);
  for (let i = 0; i < 100; i += 2) alternate.add(i, i + 1);
  alternate.seal();
  assert.equal(alternate.size, 50);
  assert.equal(alternate.slot(98), 49);
  assert.equal(alternate.nextGap(0, 100), 1);
  assert.equal(alternate.nextMember(1, 100), 2);
});
