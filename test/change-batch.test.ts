/** Batches of changes read back from a log: frames transcode to the same change set as the decoded changes would. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { batchOf, FrameBatch } from '../lib/backup/change-batch.js';
import { CHANGES_A_TURN, decodeChangeSet, encodeChangeSet, FormatError, type Change } from '../lib/backup/change.js';
import { encodeFramePayload } from './support/change.js';

const CELLS = 1 << 20;

function changes(n: number, from = 1): Change[] {
  const out: Change[] = [];
  for (let i = 0; i < n; i++) {
    // Runs of authors (as a game's scripts write them), an author coming back, the unknown one, a clock step back, runs of 1 and 3 cells.
    const by = ['P1', 'P1', 'P1', '', 'A1B2C3D4E5F60718', 'P1', 'P2', 'P2'][i % 8]!;
    out.push({ lsn: from + i, at: 1_800_000_000_000 + i * 7 - (i === 5 ? 100 : 0), by, runs: [{ start: (i * 5) % CELLS, bytes: Uint8Array.of(i & 255, 1, 2, 3) }, ...(i % 3 ? [] : [{ start: CELLS - 3, bytes: new Uint8Array(12).fill(i & 255) }])] });
  }
  return out;
}

/** The frames of `list` as a FrameBatch, the payloads spread over buffers of `perBuffer` frames each, with bytes between them (as frame headers are). */
function framesOf(list: Change[], perBuffer = list.length): FrameBatch {
  const batch = new FrameBatch(CELLS);
  for (let i = 0; i < list.length; i += perBuffer) {
    const payloads = list.slice(i, i + perBuffer).map(encodeFramePayload);
    const data = Buffer.alloc(payloads.reduce((n, p) => n + 8 + p.byteLength, 0), 0xee);
    let at = 0;
    for (const payload of payloads) {
      data.set(payload, at + 8);
      batch.add(data, at + 8, at + 8 + payload.byteLength);
      at += 8 + payload.byteLength;
    }
  }
  return batch;
}

const plain = (list: Change[]) => list.map((c) => ({ ...c, runs: c.runs.map((r) => ({ start: r.start, bytes: [...r.bytes] })) }));

test('frames transcode to the change set encodeChangeSet makes of the decoded changes, byte for byte', async () => {
  const original = changes(40, 1_000_000);
  const batch = framesOf(original, 7);
  const transcoded = await batch.encodeChangeSet();
  assert.deepEqual(transcoded, await encodeChangeSet(original));
  assert.deepEqual(plain(decodeChangeSet(transcoded, CELLS)), plain(original));
});

test('a batch decodes its changes on demand: count, first, last, list and head', async () => {
  const original = changes(10);
  const batch = framesOf(original, 3);
  assert.equal(batch.count, 10);
  assert.deepEqual(plain([batch.first()!, batch.last()!]), plain([original[0]!, original[9]!]));
  assert.deepEqual(plain(batch.list()), plain(original));
  const head = batch.head(4);
  assert.equal(head.count, 4);
  assert.deepEqual(await head.encodeChangeSet(), await encodeChangeSet(original.slice(0, 4)));
  const empty = new FrameBatch(CELLS);
  assert.equal(empty.first(), undefined);
  assert.deepEqual(await empty.encodeChangeSet(), await encodeChangeSet([]));
});

test('a batch of changes held as objects encodes and slices the same way', async () => {
  const original = changes(6);
  const batch = batchOf(original);
  assert.deepEqual(await batch.encodeChangeSet(), await framesOf(original).encodeChangeSet());
  assert.deepEqual(plain(batch.head(2).list()), plain(original.slice(0, 2)));
  assert.equal(batch.last(), original[5]);
});

test('a batch grows past its first capacity and encodes in turns: the event loop runs in between', async () => {
  const original = changes(CHANGES_A_TURN * 2 + 5);
  const batch = framesOf(original, 1000);
  let ran = false;
  setImmediate(() => { ran = true; });
  const encoded = await batch.encodeChangeSet();
  assert.equal(ran, true, 'a callback queued before the encode ran before it finished');
  assert.deepEqual(encoded, await encodeChangeSet(original));
});

test('a frame of an unknown version, or with an author past its end, is a FormatError', async () => {
  const data = Buffer.from(encodeFramePayload(changes(1)[0]!));
  const bad = Buffer.from(data);
  bad[0] = 2;
  const unknown = new FrameBatch(CELLS);
  unknown.add(bad, 0, bad.length);
  await assert.rejects(unknown.encodeChangeSet(), FormatError);
  const cut = new FrameBatch(CELLS);
  cut.add(data, 0, 5); // the author's bytes run past the frame
  await assert.rejects(cut.encodeChangeSet(), FormatError);
});
