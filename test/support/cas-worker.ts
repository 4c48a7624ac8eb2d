/**
 * A child process for the cross-process compare-and-swap test: `cas-worker.ts <dir> <key> <count> <loops>`
 * adds 1 to the counter stored at `key` `count` times, from `loops` concurrent read-modify-putIfMatch loops,
 * retrying each lost swap, then prints how many swaps it won and lost as JSON. It starts on a line on stdin, so
 * that two workers start together.
 */
import { once } from 'node:events';
import { FileStore } from '../../lib/store-file.js';

const [dir, key, count, loops] = process.argv.slice(2);
const store = new FileStore(dir!);
let left = Number(count);
let won = 0;
let lost = 0;
await once(process.stdin, 'data');
await Promise.all(Array.from({ length: Number(loops) }, async () => {
  while (left > 0) {
    left--;
    for (;;) {
      const current = (await store.getVersioned(key!))!;
      const next = new TextEncoder().encode(String(Number(new TextDecoder().decode(current.body)) + 1));
      if (await store.putIfMatch(key!, next, current.version)) break;
      lost++;
    }
    won++;
  }
}));
process.stdout.write(`${JSON.stringify({ won, lost })}\n`);
process.exit(0);
