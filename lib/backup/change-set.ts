/** Change sets as stored: the encoded changes gzip-compressed, with the SHA-256 of the stored bytes. */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { constants, gunzip, gunzipSync, gzip } from 'node:zlib';
import { CorruptBackupError } from './backup-format.js';
import type { BlobStore } from '../store.js';
import type { ChangeBatch } from './change-batch.js';
import { decodeChangeSet, FormatError, type Change } from './change.js';
import type { ChangesCommit } from './commit-log.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/**
 * Sets of at most this many bytes (uncompressed) are decompressed in place: a second of changes at 100
 * writes/s is about 2 KB and takes microseconds, where a trip to the thread pool costs more than the work
 * (an hour of history is 3,600 such sets, read by each replay). Larger ones go to the thread pool.
 */
const INLINE_GUNZIP_BYTES = 256 * 1024;

/** Sets whose compressed bytes are at most this go inside their commit object: one PUT a ship instead of two. */
export const INLINE_LIMIT_BYTES = 256 * 1024;

/** The stored form of `changes` (compressed on the thread pool) and its record. */
export async function packChangeSet(changes: ChangeBatch): Promise<{ body: Buffer; bytes: number; sha256: string }> {
  const raw = await changes.encodeChangeSet();
  const body = await gzipAsync(raw, { level: constants.Z_BEST_SPEED });
  return { body, bytes: raw.byteLength, sha256: createHash('sha256').update(body).digest('hex') };
}

/** The changes a commit holds, verified (SHA-256, gzip, format); CorruptBackupError otherwise. */
export async function readChangeSet(store: BlobStore, commit: ChangesCommit, cells: number): Promise<Change[]> {
  const what = `change set #${commit.seq} (${commit.name})`;
  let body: Uint8Array | undefined;
  if (commit.inline !== undefined) body = Buffer.from(commit.inline, 'base64');
  else if (commit.key !== undefined) body = await store.get(commit.key);
  if (body === undefined) throw new CorruptBackupError(`${what}: its object ${commit.key ?? '(none)'} is missing`);
  const actual = createHash('sha256').update(body).digest('hex');
  if (actual !== commit.sha256) throw new CorruptBackupError(`${what} has SHA-256 ${actual}, expected ${commit.sha256}`);
  let raw: Buffer;
  try {
    raw = commit.bytes <= INLINE_GUNZIP_BYTES ? gunzipSync(body, { maxOutputLength: commit.bytes + 1 }) : await gunzipAsync(body, { maxOutputLength: commit.bytes + 1 });
  } catch (err) {
    throw new CorruptBackupError(`${what} is not a valid gzip stream (${(err as Error).message})`);
  }
  try {
    return decodeChangeSet(raw, cells);
  } catch (err) {
    if (err instanceof FormatError) throw new CorruptBackupError(`${what} cannot be decoded (${err.message})`);
    throw err;
  }
}
