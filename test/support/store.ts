/** A store that delegates every call to another, but for the methods a test replaces (to hold, count or fail them). */
import type { BlobStore } from '../../lib/store.js';

/** `store` with `overrides` in place of some of its methods; the rest call `store`'s own. */
export function storeWith(store: BlobStore, overrides: Partial<Omit<BlobStore, 'location'>>): BlobStore {
  return {
    location: store.location,
    get: (key) => store.get(key),
    getStream: (key) => store.getStream(key),
    put: (key, body) => store.put(key, body),
    putIfAbsent: (key, body) => store.putIfAbsent(key, body),
    getVersioned: (key) => store.getVersioned(key),
    putIfMatch: (key, body, version) => store.putIfMatch(key, body, version),
    list: (prefix) => store.list(prefix),
    delete: (key) => store.delete(key),
    cleanup: (prefix, stale) => store.cleanup(prefix, stale),
    ...overrides,
  };
}
