/** Helpers of the model-based tests: a seeded random source, and instants that split the changes cleanly. */
import { waitFor } from './http.js';

/** A seeded PRNG (mulberry32): `next(n)` is a whole number in [0, n); a failure replays with the same seed. */
export function seededRandom(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

/** An instant (ms) strictly after every change answered so far, and before any change sent after it returns. */
export async function splittingInstant(): Promise<number> {
  const t = Date.now();
  await waitFor('the clock to pass the instant', () => Date.now() > t, 1000, 1);
  return t;
}
