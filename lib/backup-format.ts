/** The backup format: the raw cells gzip-compressed (so `gunzip` gives them back) and their SHA-256. */
import { createHash } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { promisify } from 'node:util';
import { constants, gzip, gunzip } from 'node:zlib';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

// Compression runs on libuv's thread pool; only these slices of work touch the event loop.
const HASH_SLICE_BYTES = 1024 * 1024;
const ZLIB_CHUNK_BYTES = 1024 * 1024;

/** A backup's body and what it records about the cells. */
export interface EncodedBackup { body: Uint8Array; bytes: number; sha256: string }

/** Why a backup could not be read: corrupt, wrong size or wrong checksum. */
export class CorruptBackupError extends Error {
  override name = 'CorruptBackupError';
}

/** Compresses and hashes `cells` without blocking the event loop for more than a slice at a time. */
export async function encodeBackup(cells: Uint8Array): Promise<EncodedBackup> {
  // Fastest level: a sparse world still shrinks a hundredfold, random bytes do not shrink at any level.
  const [body, sha256] = await Promise.all([
    gzipAsync(cells, { level: constants.Z_BEST_SPEED, chunkSize: ZLIB_CHUNK_BYTES }),
    sha256Hex(cells),
  ]);
  return { body, bytes: cells.byteLength, sha256 };
}

/** The cells in `body`, checked to be a whole gzip stream of exactly `bytes` bytes with SHA-256 `sha256`; else CorruptBackupError. */
export async function decodeBackup(body: Uint8Array, bytes: number, sha256: string): Promise<Uint8Array> {
  let cells: Buffer;
  try {
    // One byte over the expected size is enough to tell "too big" without inflating a bomb.
    cells = await gunzipAsync(body, { chunkSize: ZLIB_CHUNK_BYTES, maxOutputLength: bytes + 1 });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new CorruptBackupError(`holds more than ${bytes} bytes`);
    throw new CorruptBackupError(`is not a valid gzip stream (${(err as Error).message})`);
  }
  if (cells.byteLength !== bytes) throw new CorruptBackupError(`holds ${cells.byteLength} bytes, expected ${bytes}`);
  const actual = await sha256Hex(cells);
  if (actual !== sha256) throw new CorruptBackupError(`has SHA-256 ${actual}, expected ${sha256}`);
  return cells;
}

/** The SHA-256 of `data` in hex, hashed a slice per event-loop turn so requests go on meanwhile. */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  const hash = createHash('sha256');
  for (let at = 0; at < data.byteLength; at += HASH_SLICE_BYTES) {
    hash.update(data.subarray(at, at + HASH_SLICE_BYTES));
    if (at + HASH_SLICE_BYTES < data.byteLength) await yieldToEventLoop();
  }
  return hash.digest('hex');
}
