/**
 * `node --import tsx test/support/hold-log.ts <dir>`: opens the write-ahead log in <dir> as a server would and
 * holds it until killed. Prints one JSON line: {"event":"held","pid":…} or {"event":"refused","error":…}
 * (then exits 3). Lets lock tests run owners in PID namespaces of their own (`unshare --pid`).
 */
import { WriteAheadLog } from '../../lib/backup/wal.js';
import { silentLog } from './log.js';

const dir = process.argv[2]!;
try {
  const wal = await WriteAheadLog.open({ dir, sync: 'write', cells: 16, log: silentLog });
  await wal.recover(undefined, 0, () => {});
  console.log(JSON.stringify({ event: 'held', pid: process.pid }));
  setInterval(() => {}, 1 << 30); // held until killed
} catch (err) {
  console.log(JSON.stringify({ event: 'refused', error: (err as Error).name, message: (err as Error).message }));
  process.exit(3);
}
