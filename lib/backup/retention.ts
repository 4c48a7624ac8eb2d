/** Retention: keep the newest BACKUP_RETAIN snapshots and what their replays need (replay.ts); delete the rest. */
import type { BlobStore } from '../store.js';
import type { CommitLog, SnapshotRef } from './commit-log.js';
import { firstSeqNeeded } from './replay.js';

/**
 * Deletes every commit older than the first one the oldest of the `kept` snapshots (newest first) needs,
 * and the snapshot and change-set objects older than that snapshot that no kept snapshot names (the deleted
 * commits' objects, and strays of interrupted uploads). Objects are named by their time, so a newer stray,
 * which may be another writer's upload in flight, is left alone.
 */
export async function pruneCommits(store: BlobStore, commits: CommitLog, prefix: string, kept: SnapshotRef[]): Promise<void> {
  const oldest = kept.at(-1);
  if (!oldest) return;
  const keepFrom = firstSeqNeeded(oldest);
  for (const seq of await commits.seqs()) {
    if (seq >= keepFrom) break;
    await commits.delete(seq);
  }
  const keptNames = new Set(kept.map((s) => s.name));
  const oldestTime = timeOf(oldest.name);
  for (const folder of ['backups/', 'changes/']) {
    const base = `${prefix}${folder}`;
    for (const key of await store.list(base)) {
      const name = key.slice(base.length).replace(/\.(gz|bin)$/, '');
      // By the time alone: a change set the oldest snapshot needs holds a change made after it was taken,
      // in the same millisecond at the earliest, whatever the random part of the names.
      if (!keptNames.has(name) && timeOf(name) < oldestTime) await store.delete(key);
    }
  }
}

/** The time part of an object's name (20261128T162245123Z of 20261128T162245123Z-1b53d456). */
function timeOf(name: string): string {
  return name.split('-')[0]!;
}
