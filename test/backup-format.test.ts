/** lib/backup/backup-format.ts: encoding and decoding a backup body. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { CorruptBackupError, decodeBackup, sha256Hex } from '../lib/backup/backup-format.js';
import { encodeBackupWhole as encodeBackup } from './support/backup-format.js';

describe('backup format', () => {
  test('round-trips and gunzip gives the raw cells', async () => {
    const cells = new Uint8Array(3 * 1024 * 1024 + 5).map((_, i) => (i * 31) % 251);
    const encoded = await encodeBackup(cells);
    assert.equal(encoded.sha256, createHash('sha256').update(cells).digest('hex'));
    assert.equal(encoded.bytes, cells.byteLength);
    assert.equal(encoded.compressedBytes, encoded.body.length);
    assert.deepEqual(new Uint8Array(await decodeBackup(encoded.body, cells.byteLength, encoded.sha256)), cells);
    assert.equal(await sha256Hex(cells), encoded.sha256);
  });

  test('refuses a bad stream, a wrong size and a wrong checksum', async () => {
    const cells = new Uint8Array(4096).fill(7);
    const { body, sha256 } = await encodeBackup(cells);
    await assert.rejects(decodeBackup(body.subarray(0, body.length - 10), 4096, sha256), CorruptBackupError);
    await assert.rejects(decodeBackup(new Uint8Array([1, 2, 3]), 4096, sha256), CorruptBackupError);
    await assert.rejects(decodeBackup(body, 4092, sha256), /more than 4092 bytes/);
    await assert.rejects(decodeBackup(gzipSync(cells.subarray(0, 4000)), 4096, sha256), /holds 4000 bytes, expected 4096/);
    await assert.rejects(decodeBackup(body, 4096, '0'.repeat(64)), /SHA-256/);
  });
});
