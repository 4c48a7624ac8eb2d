/** Where backups live. Every implementation passes the contract suite in test/store-contract.ts. */
export interface BlobStore {
  /** Where this store is, for logs and health (e.g. "s3://bucket" or "file:///data"). */
  readonly location: string;
  /** The object's bytes, or undefined if there is none. Any other failure throws. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** The object's bytes as a stream (so a large object is never held whole), or undefined if there is none. */
  getStream(key: string): Promise<AsyncIterable<Uint8Array> | undefined>;
  /** Writes the object whole (`body`, or its chunks one after another): a reader sees the old bytes or the new, never a mix. */
  put(key: string, body: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void>;
  /** Writes only if no object has that key; false if one already had it. Atomic against other writers. */
  putIfAbsent(key: string, body: Uint8Array): Promise<boolean>;
  /** The object's bytes and an opaque version naming exactly those bytes (S3's ETag, a digest of the file), or undefined if there is none. */
  getVersioned(key: string): Promise<{ body: Uint8Array; version: string } | undefined>;
  /**
   * Replaces the object only if it is still at `version` (from getVersioned); false if it changed or is gone.
   * A compare-and-swap, atomic against other putIfMatch and putIfAbsent calls on the key from any process. Like
   * an ETag, a version names bytes: writing back the same bytes gives the same version. Callers keep bodies small.
   */
  putIfMatch(key: string, body: Uint8Array, version: string): Promise<boolean>;
  /** Every key that starts with `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
  /** Removes the object; removing a missing one is not an error. */
  delete(key: string): Promise<void>;
  /** Removes what interrupted writes under `prefix` left behind (temp files, incomplete multipart uploads) for the keys `stale` picks; returns how many. */
  cleanup(prefix: string, stale: (key: string) => boolean): Promise<number>;
}
