/** Snapshots: the whole world written as one gzip object under `backups/`, and read back streamed into place. */
import { createHash, randomBytes } from 'node:crypto';
import { createGunzip } from 'node:zlib';
import { CorruptBackupError, encodeBackup } from '../backup-format.js';
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
      if (at + chunk.length > target.byteLength) throw new CorruptBackupError(`${what} holds more than ${target.byteLength} bytes`);
      target.set(chunk, at);
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
  if (at !== target.byteLength) throw new CorruptBackupError(`${what} holds ${at} bytes, expected ${target.byteLength}`);
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
