/** Retention: keep the newest N snapshots and the change sets from the oldest kept one on; delete the rest. */
import type { BlobStore } from '../store.js';
import type { CommitLog } from './commit-log.js';

/** A kept snapshot, as the newest snapshot commit lists its predecessors. */
export interface SnapshotRef { seq: number; name: string; key: string; createdAt: string; bytes: number; compressedBytes: number; sha256: string; replayFrom: number }

/**
 * Deletes every commit older than what the `kept` snapshots (newest first) need, and the objects only those
 * commits named, plus strays (interrupted uploads) older than the oldest kept snapshot.
 */
export async function pruneCommits(store: BlobStore, commits: CommitLog, prefix: string, kept: SnapshotRef[]): Promise<void> {
  const oldest = kept.at(-1);
  if (!oldest) return;
  // The oldest kept snapshot needs itself and the change sets from its replayFrom on.
  const keepFrom = oldest.replayFrom > 0 ? Math.min(oldest.replayFrom, oldest.seq) : oldest.seq;
  for (const seq of await commits.seqs()) {
    if (seq >= keepFrom) break;
    await commits.delete(seq);
  }
  const keptNames = new Set(kept.map((s) => s.name));
  for (const folder of ['backups/', 'changes/']) {
    const base = `${prefix}${folder}`;
    for (const key of await store.list(base)) {
      const name = key.slice(base.length).replace(/\.(gz|bin)$/, '');
      // Names start with their time: newer strays may be another writer's upload in flight.
      if (!keptNames.has(name) && name < oldest.name) await store.delete(key);
    }
  }
}
