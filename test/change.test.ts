/** The change format on its own: frames and change sets round-trip; a large set is encoded in turns. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHANGES_A_TURN, decodeChangeSet, decodeFramePayload, encodeChangeSet, FormatError, type Change } from '../lib/backup/change.js';
import { encodeFramePayload } from './support/change.js';

const CELLS = 1 << 20;

function changes(n: number): Change[] {
  const out: Change[] = [];
  for (let i = 0; i < n; i++) {
    // A clock that steps back once (svarint deltas), several authors and the unknown one, runs of 1 and 3 cells.
    out.push({ lsn: 10 + i, at: 1_800_000_000_000 + i * 7 - (i === 2 ? 100 : 0), by: ['P1', '', 'A1B2C3D4E5F60718'][i % 3]!, runs: [{ start: i * 5, bytes: Uint8Array.of(i & 255, 1, 2, 3) }, ...(i % 2 ? [{ start: CELLS - 3, bytes: new Uint8Array(12).fill(i & 255) }] : [])] });
  }
  return out;
}

const plain = (list: Change[]) => list.map((c) => ({ ...c, runs: c.runs.map((r) => ({ start: r.start, bytes: [...r.bytes] })) }));

test('a change set round-trips: lsns, instants (one stepping back), authors from its table, runs', async () => {
  const original = changes(9);
  assert.deepEqual(plain(decodeChangeSet(await encodeChangeSet(original), CELLS)), plain(original));
});

test('a frame payload round-trips, and a run past the world is a FormatError', () => {
  const [change] = changes(2).slice(1);
  assert.deepEqual(plain([decodeFramePayload(encodeFramePayload(change!), CELLS)]), plain([change!]));
  assert.throws(() => decodeFramePayload(encodeFramePayload(change!), CELLS - 1), FormatError);
});

test(`a set of more than ${CHANGES_A_TURN} changes is encoded in turns: the event loop runs in between`, async () => {
  const small = changes(CHANGES_A_TURN);
  let ran = false;
  setImmediate(() => { ran = true; });
  await encodeChangeSet(small);
  assert.equal(ran, false, 'one turn of changes needs no yield');
  const large = changes(CHANGES_A_TURN * 3);
  setImmediate(() => { ran = true; });
  const encoded = await encodeChangeSet(large);
  assert.equal(ran, true, 'a callback queued before the encode ran before it finished');
  assert.equal(decodeChangeSet(encoded, CELLS).length, large.length);
});
