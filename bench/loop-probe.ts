/**
 * A preload for the measured cubecache process (`node --import <this, transpiled> dist/server.js`): its own
 * event-loop delay histogram, read and reset on SIGUSR2, so a bench can measure the longest stall of one
 * window (a backup) rather than since start as cubecache_event_loop_delay_seconds does. Self-contained.
 *
 * With --expose-gc, SIGWINCH runs a full GC and prints the memory before and after (a diagnostic of
 * bench/memory.ts: how much of the resident memory is garbage not collected yet). SIGURG prints the memory
 * as it is, with the size of each V8 heap space, and runs nothing (where bench/memory.ts says the memory goes).
 *
 * The histogram records the time between timer ticks every RESOLUTION_MS, so a value includes up to one
 * resolution of waiting on top of the stall itself.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';

const RESOLUTION_MS = 2;
const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
histogram.enable();
let since = performance.now();

process.on('SIGUSR2', () => {
  const now = performance.now();
  const window = {
    maxMs: histogram.max / 1e6,
    p99Ms: histogram.percentile(99) / 1e6,
    p50Ms: histogram.percentile(50) / 1e6,
    count: histogram.count,
    windowMs: now - since,
  };
  histogram.reset();
  since = now;
  process.stderr.write(`LOOPPROBE ${JSON.stringify(window)}\n`);
});

process.on('SIGWINCH', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  const before = process.memoryUsage();
  if (gc) gc();
  const after = process.memoryUsage();
  process.stderr.write(`GCPROBE ${JSON.stringify({ gc: Boolean(gc), before, after })}\n`);
});

process.on('SIGURG', () => {
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]));
  process.stderr.write(`MEMPROBE ${JSON.stringify({ usage: process.memoryUsage(), spaces })}\n`);
});
