/** Background work: one loop per job, stopped by aborting and awaiting it; one mutex for what must not overlap. */
import type { Log } from '../log.js';

/** Cuts a loop's wait short: wake() makes the loop's current (or next) wait end at once. */
export class Alarm {
  private ring: (() => void) | undefined;
  private rung = false;

  /** Ends the loop's wait now, or its next one if it is working. */
  wake(): void {
    if (this.ring) this.ring();
    else this.rung = true;
  }

  /** Resolves after `ms` (Infinity: never by itself), on wake(), or when `signal` aborts; leaves no timer or listener behind. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (this.rung || signal.aborted) {
        this.rung = false;
        resolve();
        return;
      }
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.ring = undefined;
        resolve();
      };
      const timer = Number.isFinite(ms) ? setTimeout(done, Math.min(ms, 2 ** 31 - 1)) : undefined;
      signal.addEventListener('abort', done, { once: true });
      this.ring = done;
    });
  }
}

/**
 * Runs `step` every `interval()` ms until `signal` aborts; a failing step is retried sooner, doubling from
 * one second, never later than the interval. `interval` is read before each wait, so it may change; `alarm`
 * may end a wait early.
 */
export async function every(interval: () => number, step: () => Promise<void>, signal: AbortSignal, log: Log, name: string, alarm = new Alarm()): Promise<void> {
  let failures = 0;
  while (!signal.aborted) {
    const ms = interval();
    const wait = failures === 0 ? ms : Math.min(ms, 1000 * 2 ** Math.min(failures - 1, 20));
    await alarm.wait(wait, signal);
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
