/**
 * What a test started and must stop before its folders go: servers in this process and server processes.
 * node:test runs a test's after-hooks in the order they were added and skips the rest once one throws, so a
 * folder made before its server would go while the server still writes into it, and a failed removal would
 * leave the server running and the test file waiting on it for ever. The folder's hook stops these first.
 */

type Stop = () => Promise<unknown>;
const stopsOf = new WeakMap<object, Set<Stop>>();

/** Registers `stop` as something `owner` must stop before its folders go; the returned function unregisters it. */
export function own(owner: object, stop: Stop): () => void {
  let stops = stopsOf.get(owner);
  if (!stops) stopsOf.set(owner, stops = new Set());
  stops.add(stop);
  return () => { stops!.delete(stop); };
}

/** Stops everything `owner` still owns, all of them even when some fail; rejects with the first failure. */
export async function stopOwned(owner: object): Promise<void> {
  const stops = [...(stopsOf.get(owner) ?? [])];
  stopsOf.delete(owner);
  const results = await Promise.allSettled(stops.map((stop) => stop()));
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed) throw failed.reason;
}
