/** Test helpers for lib/backup/change.ts. */
import { ByteWriter, changeBytes, writeFramePayload, type Change } from '../../lib/backup/change.js';

/** A write-ahead log frame's payload for `change`, in a buffer of its own (the log encodes frames in place). */
export function encodeFramePayload(change: Change): Buffer {
  const out = new ByteWriter(32 + changeBytes(change) + change.runs.length * 8);
  writeFramePayload(out, change);
  return out.view();
}
