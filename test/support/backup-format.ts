/** Test helpers for lib/backup/backup-format.ts. */
import { encodeBackup, type EncodedBackup, type SliceSource } from '../../lib/backup/backup-format.js';

/** The whole compressed body and its record, read from encodeBackup's stream into one buffer. */
export async function encodeBackupWhole(source: SliceSource | Uint8Array): Promise<EncodedBackup & { body: Buffer }> {
  const encoded = encodeBackup(source);
  const chunks: Uint8Array[] = [];
  for await (const chunk of encoded.body) chunks.push(chunk);
  return { ...encoded.result(), body: Buffer.concat(chunks) };
}
