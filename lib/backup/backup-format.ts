/** The backup format: the raw cells gzip-compressed (so `gunzip` gives them back) and their SHA-256. */
import { createHash } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { promisify } from 'node:util';
import { constants, createGzip, gunzip } from 'node:zlib';
import { SNAPSHOT_SLICE_BYTES, type Snapshot } from '../cube.js';

const gunzipAsync = promisify(gunzip);

// Compression runs on libuv's thread pool; only these slices of work touch the event loop.
const HASH_SLICE_BYTES = 1024 * 1024;
const ZLIB_CHUNK_BYTES = 1024 * 1024;
// The gzip output of a snapshot comes in pieces this small: a piece that waits for the upload (one part goes
// up while the next fills) outlives a few scavenges and then stays until a full GC, so small pieces keep that
// floating garbage to a few MiB (1 MiB pieces let it reach 25 MiB during a backup of random cells).
const GZIP_OUT_BYTES = 64 * 1024;

/** Why a backup could not be read: corrupt, wrong size or wrong checksum. */
export class CorruptBackupError extends Error {
  override name = 'CorruptBackupError';
}

/** What a backup records about the cells, known once its body has been read to the end. */
export interface EncodedBackup { compressedBytes: number; bytes: number; sha256: string }

/** What encodeBackup reads: a world snapshot, slice by slice. */
export type SliceSource = Pick<Snapshot, 'slices' | 'readSlice' | 'byteLength'>;

/**
 * The backup of a snapshot (or plain bytes) as a stream of gzip chunks, produced as fast as the consumer
 * takes them: slices are read, hashed and compressed one per event-loop turn (compression runs on libuv's
 * thread pool), and neither the whole world nor the whole compressed body is ever held. `result()` is the
 * record once the body has been read to the end.
 */
export function encodeBackup(source: SliceSource | Uint8Array): { body: AsyncIterable<Uint8Array>; result(): EncodedBackup } {
  const slices = source instanceof Uint8Array ? slicesOf(source) : source;
  const hash = createHash('sha256');
  let compressedBytes = 0;
  let sha256: string | undefined;
  async function* body(): AsyncGenerator<Uint8Array> {
    // Fastest level: a sparse world still shrinks a hundredfold, random bytes do not shrink at any level.
    const gzip = createGzip({ level: constants.Z_BEST_SPEED, chunkSize: GZIP_OUT_BYTES });
    // Two slice buffers, reused: one being compressed on the thread pool while the next is read. A slice goes
    // back to the pool when gzip has taken it in (its write callback), so reading the world allocates nothing.
    const free = [new Uint8Array(SNAPSHOT_SLICE_BYTES), new Uint8Array(SNAPSHOT_SLICE_BYTES)];
    let wake: (() => void) | undefined;
    const wakeUp = () => { const w = wake; wake = undefined; w?.(); };
    gzip.once('close', wakeUp);
    const feeding = (async () => {
      for (let i = 0; i < slices.slices && !gzip.destroyed; i++) {
        while (free.length === 0 && !gzip.destroyed) await new Promise<void>((resolve) => { wake = resolve; });
        if (gzip.destroyed) break;
        const buffer = free.pop()!;
        const slice = slices.readSlice(i, buffer);
        hash.update(slice);
        gzip.write(slice, () => { free.push(buffer); wakeUp(); });
        await yieldToEventLoop();
      }
      gzip.end();
    })();
    feeding.catch((err: unknown) => gzip.destroy(err as Error));
    try {
      for await (const chunk of gzip) {
        compressedBytes += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      await feeding;
      sha256 = hash.digest('hex');
    } finally {
      gzip.destroy(); // the consumer may stop early (a failed upload): stop compressing too
      await feeding.catch(() => undefined);
    }
  }
  return {
    body: body(),
    result() {
      if (sha256 === undefined) throw new Error('the backup body has not been read to the end');
      return { compressedBytes, bytes: slices.byteLength, sha256 };
    },
  };
}

function slicesOf(bytes: Uint8Array): SliceSource {
  return {
    byteLength: bytes.byteLength,
    slices: Math.ceil(bytes.byteLength / SNAPSHOT_SLICE_BYTES),
    readSlice: (i) => bytes.subarray(i * SNAPSHOT_SLICE_BYTES, (i + 1) * SNAPSHOT_SLICE_BYTES),
  };
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
