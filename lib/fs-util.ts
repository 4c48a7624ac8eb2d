/** Small file-system helpers shared by the folder store and the write-ahead log. */
import { open } from 'node:fs/promises';

/** Makes a rename, link or new file in `dir` durable (fsync of the folder). */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** True when `err` is a Node error with this `code` (ENOENT, EEXIST, ...). */
export function isCode(err: unknown, code: string): boolean {
  return (err as { code?: unknown } | null)?.code === code;
}
