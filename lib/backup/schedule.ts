/** Background work: one loop per job, stopped by aborting and awaiting it; one mutex for what must not overlap. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Log } from '../log.js';

/**
 * Runs `step` every `interval()` ms until `signal` aborts; a failing step is retried sooner, doubling from
 * one second, never later than the interval. `interval` is read before each wait, so it may change.
 */
export async function every(interval: () => number, step: () => Promise<void>, signal: AbortSignal, log: Log, name: string): Promise<void> {
  let failures = 0;
  while (!signal.aborted) {
    const ms = interval();
    const wait = failures === 0 ? ms : Math.min(ms, 1000 * 2 ** Math.min(failures - 1, 20));
    await sleep(wait, undefined, { signal }).catch(() => undefined);
    if (signal.aborted) return;
    try {
      await step();
      failures = 0;
    } catch (err) {
      failures++;
      log.warn(`${name}_retry`, { failures, message: (err as Error)?.message });
    }
  }
}

/** Runs tasks one at a time, in the order they asked. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `task` once every task asked before it has ended; its result or error. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
