/** The replication stream's bytes: change frames (the WAL's), the handover, and acks, read at any split. */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FormatError, type Change } from '../lib/backup/change.js';
import { AckReader, encodeAck, encodeChangeFrame, FrameReader, HANDOVER, maxFramePayload, type Message } from '../lib/backup/replication-wire.js';
import { WriteAheadLog } from '../lib/backup/wal.js';
import { memoryLog } from './support/log.js';

const CELLS = 1024;
const a: Change = { lsn: 7, at: 1_700_000_000_123, by: 'player-1', runs: [{ start: 3, bytes: Uint8Array.of(1, 2, 3, 4) }] };
const b: Change = { lsn: 8, at: 1_700_000_000_456, by: '', runs: [{ start: 0, bytes: new Uint8Array(40).fill(9) }, { start: 1000, bytes: Uint8Array.of(5, 6, 7, 8, 9, 10, 11, 12) }] };

const plain = (m: Message) => (m.kind === 'change' ? { kind: m.kind, change: { ...m.change, runs: m.change.runs.map((r) => ({ start: r.start, bytes: [...r.bytes] })) } } : m);
const expected = (change: Change) => plain({ kind: 'change', change });

test('a change frame is the bytes the write-ahead log writes for the same change', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'cubecache-wire-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const wal = await WriteAheadLog.open({ dir, sync: 'write', cells: CELLS, log: memoryLog() });
  t.after(() => wal.close());
  await wal.recover(undefined, 0, () => {});
  await wal.follow('cccccccccccccccc', a.lsn - 1);
  wal.append(a.at, a.by, a.runs);
  assert.equal(await new Promise((resolve) => wal.afterWrite(resolve)), undefined);
  const segment = (await readdir(dir)).find((n) => n.endsWith('.wal'))!;
  assert.deepEqual(await readFile(join(dir, segment)), encodeChangeFrame(a));
});

test('frames and a handover round-trip, several in one chunk, in order', () => {
  const reader = new FrameReader(CELLS);
  const got = reader.push(Buffer.concat([encodeChangeFrame(a), HANDOVER, encodeChangeFrame(b)]));
  assert.deepEqual(got.map(plain), [expected(a), { kind: 'handover' }, expected(b)]);
  assert.deepEqual(reader.push(Buffer.alloc(0)), []);
});

test('two frames split at every byte, and fed a byte at a time, read the same', () => {
  const whole = Buffer.concat([encodeChangeFrame(a), encodeChangeFrame(b)]);
  for (let cut = 0; cut <= whole.length; cut++) {
    const reader = new FrameReader(CELLS);
    const got = [...reader.push(whole.subarray(0, cut)), ...reader.push(whole.subarray(cut))];
    assert.deepEqual(got.map(plain), [expected(a), expected(b)], `split at ${cut}`);
  }
  const reader = new FrameReader(CELLS);
  const got: Message[] = [];
  for (let i = 0; i < whole.length; i++) got.push(...reader.push(whole.subarray(i, i + 1)));
  assert.deepEqual(got.map(plain), [expected(a), expected(b)]);
});

test('a frame of a whole world arriving in thousands of small chunks, with the next frame behind it, reads whole', () => {
  const cells = 65536;
  const world: Change = { lsn: 1, at: 5, by: 'restore', runs: [{ start: 0, bytes: Uint8Array.from({ length: cells * 4 }, (_, i) => i % 251) }] };
  const whole = Buffer.concat([encodeChangeFrame(world), encodeChangeFrame(a)]);
  const reader = new FrameReader(cells);
  const got: Message[] = [];
  for (let at = 0; at < whole.length; at += 97) got.push(...reader.push(whole.subarray(at, at + 97)));
  assert.deepEqual(got.map(plain), [expected(world), expected(a)]);
});

test('a received change owns its bytes: the chunk it came in may be reused', () => {
  const chunk = Buffer.concat([encodeChangeFrame(a), encodeChangeFrame(b).subarray(0, 3)]); // the next frame begun
  const [message] = new FrameReader(CELLS).push(chunk);
  chunk.fill(0);
  assert.deepEqual(plain(message!), expected(a));
});

test('a flipped bit anywhere in a payload is a checksum mismatch', () => {
  const frame = encodeChangeFrame(b);
  for (let at = 8; at < frame.length; at++) {
    const bad = Buffer.from(frame);
    bad[at]! ^= 0x01;
    assert.throws(() => new FrameReader(CELLS).push(bad), (err: unknown) => err instanceof FormatError && /checksum/.test(err.message), `bit at byte ${at}`);
  }
});

test('a length over the bound is refused as soon as the header is in, before its bytes are waited for', () => {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(maxFramePayload(CELLS) + 1, 0);
  assert.throws(() => new FrameReader(CELLS).push(head), (err: unknown) => err instanceof FormatError && /at most/.test(err.message));
  head.writeUInt32LE(maxFramePayload(CELLS), 0);
  assert.deepEqual(new FrameReader(CELLS).push(head), [], 'the bound itself is waited for');
  assert.ok(maxFramePayload(2 ** 28) < 0xffffffff, 'no world makes a frame look like a handover');
  assert.ok(maxFramePayload(2 ** 28) >= 2 ** 28 * 4, 'the whole world of the largest world fits');
});

test('a change naming cells beyond the world, and a handover with a nonzero second word, are refused', () => {
  assert.throws(() => new FrameReader(1000).push(encodeChangeFrame(b)), (err: unknown) => err instanceof FormatError && /does not fit 1000 cells/.test(err.message));
  const bad = Buffer.from(HANDOVER);
  bad.writeUInt32LE(1, 4);
  assert.throws(() => new FrameReader(CELLS).push(bad), FormatError);
});

test('acks round-trip, split anywhere, several to a chunk', () => {
  const bytes = Buffer.concat([encodeAck(0), encodeAck(41), encodeAck(Number.MAX_SAFE_INTEGER)]);
  assert.equal(bytes.toString('latin1'), `0\n41\n${Number.MAX_SAFE_INTEGER}\n`);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const reader = new AckReader();
    assert.deepEqual([...reader.push(bytes.subarray(0, cut)), ...reader.push(bytes.subarray(cut))], [0, 41, Number.MAX_SAFE_INTEGER], `split at ${cut}`);
  }
  assert.throws(() => encodeAck(-1), RangeError);
  assert.throws(() => encodeAck(1.5), RangeError);
});

test('junk acks are refused: not digits, empty, signed, leading zeros, past the largest lsn, and a line over 32 bytes before its newline comes', () => {
  for (const junk of ['x\n', '\n', '-1\n', '+1\n', '1 \n', '1\r\n', '01\n', '1.5\n', '9007199254740993\n', `${'1'.repeat(40)}\n`]) {
    assert.throws(() => new AckReader().push(Buffer.from(junk, 'latin1')), FormatError, JSON.stringify(junk));
  }
  const reader = new AckReader();
  assert.deepEqual(reader.push(Buffer.from('5\n' + '1'.repeat(31), 'latin1')), [5], '31 bytes may still end in a newline');
  assert.throws(() => reader.push(Buffer.from('1', 'latin1')), FormatError, 'the 32nd byte is not a newline: over 32 bytes');
});
