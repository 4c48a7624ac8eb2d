/** Snapshots: the whole world written as one gzip object under `backups/`, and read back streamed into place. */
import { createHash, randomBytes } from 'node:crypto';
import { createGunzip } from 'node:zlib';
import { CorruptBackupError, encodeBackup } from './backup-format.js';
import type { Snapshot } from '../cube.js';
import type { BlobStore } from '../store.js';

/** What a snapshot holds and where; the JSON a client sees for a backup. */
export interface BackupInfo { name: string; createdAt: string; bytes: number; compressedBytes: number; sha256: string }

/** Uploads `snapshot` (read slice by slice, compressed on the thread pool) as a new object; `signal` aborts the upload. */
export async function writeSnapshot(store: BlobStore, prefix: string, snapshot: Snapshot, createdAt: Date, signal?: AbortSignal): Promise<BackupInfo & { key: string }> {
  const name = `${createdAt.toISOString().replace(/[-:.]/g, '')}-${randomBytes(4).toString('hex')}`;
  const key = `${prefix}backups/${name}.gz`;
  const encoding = encodeBackup(snapshot);
  await store.put(key, abortable(encoding.body, signal));
  const encoded = encoding.result();
  return { name, key, createdAt: createdAt.toISOString(), bytes: encoded.bytes, compressedBytes: encoded.compressedBytes, sha256: encoded.sha256 };
}

/**
 * Streams the snapshot object `key` into `target` (exactly `bytes` long), checking the gzip stream, the size
 * and the SHA-256 as it goes; CorruptBackupError if any fails (then `target` holds garbage). Memory beyond
 * `target` stays at a few MiB of buffers, whatever the world's size.
 */
export async function loadSnapshot(store: BlobStore, key: string, target: Uint8Array, sha256: string, what: string): Promise<void> {
  await streamSnapshot(store, key, sha256, target.byteLength, what, (chunk, at) => target.set(chunk, at));
}

/**
 * Streams the snapshot object `key` (a world of `bytes` bytes) and copies the cells of each range of
 * `ranges` (sorted, disjoint, in cells) into the matching buffer of `out`; verified as loadSnapshot is.
 */
export async function loadSnapshotRanges(store: BlobStore, key: string, sha256: string, bytes: number, ranges: Array<{ start: number; count: number }>, out: Uint8Array[], what: string): Promise<void> {
  let next = 0; // the first range not wholly behind the stream
  await streamSnapshot(store, key, sha256, bytes, what, (chunk, at) => {
    const end = at + chunk.length;
    while (next < ranges.length && (ranges[next]!.start + ranges[next]!.count) * 4 <= at) next++;
    for (let i = next; i < ranges.length && ranges[i]!.start * 4 < end; i++) {
      const from = Math.max(at, ranges[i]!.start * 4);
      const to = Math.min(end, (ranges[i]!.start + ranges[i]!.count) * 4);
      out[i]!.set(chunk.subarray(from - at, to - at), from - ranges[i]!.start * 4);
    }
  });
}

/** Streams and verifies a snapshot object of `bytes` bytes (as loadSnapshot), handing each decompressed chunk and its byte offset to `take`. */
export async function streamSnapshot(store: BlobStore, key: string, sha256: string, bytes: number, what: string, take: (chunk: Buffer, at: number) => void): Promise<void> {
  const body = await store.getStream(key);
  if (body === undefined) throw new CorruptBackupError(`${what}: its object ${key} is missing`);
  const gunzip = createGunzip({ chunkSize: 1024 * 1024 });
  const hash = createHash('sha256');
  let at = 0;
  const feeding = (async () => {
    for await (const chunk of body) if (!gunzip.write(chunk)) await new Promise((resolve) => gunzip.once('drain', resolve));
    gunzip.end();
  })();
  feeding.catch((err: unknown) => gunzip.destroy(err as Error));
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      if (at + chunk.length > bytes) throw new CorruptBackupError(`${what} holds more than ${bytes} bytes`);
      take(chunk, at);
      hash.update(chunk);
      at += chunk.length;
    }
    await feeding;
  } catch (err) {
    gunzip.destroy();
    await feeding.catch(() => undefined);
    if (err instanceof CorruptBackupError) throw err;
    if ((err as { code?: string }).code?.startsWith('Z_')) throw new CorruptBackupError(`${what} is not a valid gzip stream (${(err as Error).message})`);
    throw err;
  }
  if (at !== bytes) throw new CorruptBackupError(`${what} holds ${at} bytes, expected ${bytes}`);
  const actual = hash.digest('hex');
  if (actual !== sha256) throw new CorruptBackupError(`${what} has SHA-256 ${actual}, expected ${sha256}`);
}

/** `body`, stopping with the signal's reason once it aborts (so a stalled upload is abandoned, not awaited). */
async function* abortable(body: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    signal?.throwIfAborted();
    yield chunk;
  }
}
