/** lib/collect-garbage.ts: a full GC at once, the last-resort one when the loop has gone quiet. */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { test } from 'node:test';
import { collectGarbageWhenQuiet } from '../lib/collect-garbage.js';

/** A stand-in for globalThis.gc that records its calls, and resolves `lastResort` at the first last-resort one. */
function recordingGc() {
  const calls: Array<{ at: number; flavor: string }> = [];
  let resolve!: (at: number) => void;
  const lastResort = new Promise<number>((r) => { resolve = r; });
  const gc = ((options?: { flavor?: string }) => {
    const at = performance.now();
    calls.push({ at, flavor: options?.flavor ?? 'full' });
    if (options?.flavor === 'last-resort') resolve(at);
  }) as NodeJS.GCFunction;
  return { gc, calls, lastResort };
}

/** Keeps the event loop busy (busy-waits 5 ms a turn) until `until` says stop; returns when it stopped. */
async function busyLoop(until: () => boolean): Promise<number> {
  while (!until()) {
    const end = performance.now() + 5;
    while (performance.now() < end) { /* the request load of a busy server */ }
    await nextTurn();
  }
  return performance.now();
}

test('the last-resort GC waits while the loop is busy, and runs once it has been quiet for a while', async () => {
  const { gc, calls, lastResort } = recordingGc();
  const collect = collectGarbageWhenQuiet(gc, { quietMs: 40, quietUtilization: 0.5, maxWaitMs: 60_000 });
  const calledAt = performance.now();
  collect();
  assert.deepEqual(calls.map((c) => c.flavor), ['full'], 'a full GC at once');
  let ran = false;
  void lastResort.then(() => { ran = true; });
  // Busy for ten quiet periods: a last-resort GC that did not wait would run in there.
  const stoppedAt = await busyLoop(() => ran || performance.now() - calledAt > 400);
  assert.equal(ran, false, 'no last-resort GC while the loop is busy');
  const at = await lastResort;
  assert.ok(at >= stoppedAt, 'the last-resort GC ran after the load stopped');
  assert.deepEqual(calls.map((c) => c.flavor), ['full', 'last-resort']);
});

test('a loop that never goes quiet gets its last-resort GC after maxWaitMs', async () => {
  const { gc, calls, lastResort } = recordingGc();
  const collect = collectGarbageWhenQuiet(gc, { quietMs: 20, quietUtilization: 0.5, maxWaitMs: 150 });
  const calledAt = performance.now();
  collect();
  let ran = false;
  void lastResort.then(() => { ran = true; });
  await busyLoop(() => ran);
  assert.ok((await lastResort) - calledAt >= 150, 'not before maxWaitMs');
  assert.deepEqual(calls.map((c) => c.flavor), ['full', 'last-resort']);
});

test('calls in between push the last-resort GC back: back-to-back backups pay it once', async () => {
  const { gc, calls, lastResort } = recordingGc();
  const collect = collectGarbageWhenQuiet(gc, { quietMs: 20, quietUtilization: 1, maxWaitMs: 60_000 });
  collect();
  collect();
  collect();
  await lastResort;
  // Whatever else the loop does, no second last-resort GC is pending: one more quiet period shows none.
  const after = performance.now();
  await busyLoop(() => performance.now() - after > 60);
  assert.deepEqual(calls.map((c) => c.flavor), ['full', 'full', 'full', 'last-resort']);
});
