/**
 * Garbage collection after backups and restores: a full GC at once, and a last-resort GC (which also gives
 * back the heap pages a plain full GC keeps) once the process has gone quiet. It waits for a quiet loop
 * because a last-resort GC stalls the loop several times longer than a full one (bench/backup.ts), and
 * because memory a loaded process allocates after it is kept: run 1 s after the last backup while requests
 * went on, it left the idle process 16-24 MiB above its idle after boot (bench/memory.ts).
 */
import { performance } from 'node:perf_hooks';

/** When the last-resort GC runs; the defaults are production's. */
export interface QuietGcOptions {
  /** How long the loop must stay quiet (and the least wait after the last call). */
  quietMs?: number;
  /** The event-loop utilization (0..1) over quietMs at or below which the process counts as quiet. */
  quietUtilization?: number;
  /** Runs anyway this long after the last call, quiet or not, so a process never busy enough to wait forever still gives its pages back. */
  maxWaitMs?: number;
}

/** A function to call after a backup or a restore: `gc()` now, and `gc` last-resort once the loop is quiet (see QuietGcOptions); calls in between push it back. */
export function collectGarbageWhenQuiet(gc: NodeJS.GCFunction, options: QuietGcOptions = {}): () => void {
  const quietMs = options.quietMs ?? 1000;
  const quietUtilization = options.quietUtilization ?? 0.1;
  const maxWaitMs = options.maxWaitMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  return () => {
    gc();
    clearTimeout(timer);
    const calledAt = performance.now();
    const watch = () => {
      const from = performance.eventLoopUtilization();
      timer = setTimeout(() => {
        const busy = performance.eventLoopUtilization(from).utilization > quietUtilization;
        if (busy && performance.now() - calledAt < maxWaitMs) return watch();
        timer = undefined;
        gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
      }, quietMs).unref();
    };
    watch();
  };
}
