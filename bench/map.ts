/**
 * GET /map.png on the default world (16,777,216 cells, 256³, xzy order): a sparse 64 MiB world like a real
 * map (bench/support.ts makeWorld: ground layers, buildings, rocks) with one hour of history behind it
 * (3,600 change sets of 100 single-cell changes, a snapshot every 10 minutes), in a folder store.
 *
 * Figures (p50 and p95 of BENCH_ROUNDS renders each, one at a time, and the server's CPU time a render):
 * the top view now, a slice now, the top view one hour back, the top view at the worst instant (just before
 * a snapshot: 599 change sets to replay), a 64x64 box one hour back, and the top view now at scale 4.
 * Baseline, measured in the same run: reading the whole world raw with GET /cells (now, and one hour back
 * with ?at=), which is what a client had to do to draw a map before /map.png. The ratio is map / baseline.
 * The first map of the past after the start is shown apart: it reads the whole snapshot, which the server
 * then keeps a minute for the next (a slider dragged through time). The longest event-loop stall of the
 * server during the renders comes from bench/loop-probe.ts, beside the same probe over as long a time with
 * the server idle right after: on a shared machine, waiting for a CPU shows as a stall too.
 * Targets (issue 19): top view now <= 100 ms, one hour back <= 500 ms (p50); stall <= 20 ms.
 *
 *   npm run bench:map       BENCH_ROUNDS=15  BENCH_PROFILE=cpu
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeBackup } from '../lib/backup/backup-format.js';
import type { Change } from '../lib/backup/change.js';
import { batchOf } from '../lib/backup/change-batch.js';
import { packChangeSet } from '../lib/backup/change-set.js';
import { CommitLog } from '../lib/backup/commit-log.js';
import { createLog } from '../lib/log.js';
import type { BlobStore } from '../lib/store.js';
import { FileStore } from '../lib/store-file.js';
import {
  AUTH_HEADER, cpuMs, ensureBuilt, fmt, fmtMs, main, makeWorld, profileArgs, sleep, table, verdicts, workDir, startCubecache, type ServerProc, type Verdict,
} from './support.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const NOW_TARGET_MS = 100;
const PAST_TARGET_MS = 500;
const STALL_TARGET_MS = 20;
const silent = createLog(() => {});

interface Figure { p50: number; p95: number; cpuMs: number; bytes: number; timing: string }

await main('bench:map: GET /map.png on a 256³ world with an hour of history', async () => {
  console.log(`cubecache runs as: ${ensureBuilt().how}`);
  const dataDir = mkdtempSync(join(workDir(), 'map-data-'));
  const prefix = 'one-hour/';
  const world = makeWorld('sparse');
  console.log(`seeding ${prefix}: a sparse world (${fmt(world.cellsSet, 0)} cells set), an hour of changes, a snapshot every 10 minutes`);
  const timeline = await seedHour(new FileStore(dataDir), prefix, world.bytes);
  const server = await startCubecache('map', { env: { DATA_DIR: dataDir, S3_PREFIX: prefix, SHIP_INTERVAL_SECONDS: '1' }, probe: true, nodeArgs: profileArgs('map') });

  const hourBack = new Date(Date.now() - 3_600_000).toISOString();
  const worst = new Date(timeline.lastSnapshotAt - 1000).toISOString();
  // The first map of the past after a start reads the whole snapshot (the server keeps it a minute for the next).
  const cold = await get(server, `/map.png?at=${hourBack}`);
  // Warm-up (not counted): the first renders run unoptimised code.
  for (let i = 0; i < 3; i++) {
    await get(server, '/map.png');
    await get(server, `/map.png?at=${hourBack}`);
  }
  await server.loopWindow(); // reset the probe: the stall below is the renders' own
  const rendersStarted = performance.now();
  const rows: Array<[string, Figure]> = [
    ['top view, now', await measure(server, '/map.png')],
    ['slice at y=2, now', await measure(server, '/map.png?view=slice&y=2')],
    ['top view, scale 4 (1024x1024), now', await measure(server, '/map.png?scale=4')],
    ['top view, one hour back', await measure(server, `/map.png?at=${hourBack}`)],
    ['top view, worst instant (599 change sets to replay)', await measure(server, `/map.png?at=${worst}`)],
    ['64x64 box, one hour back', await measure(server, `/map.png?box=96,0,96,64,256,64&at=${hourBack}`)],
  ];
  const stall = await server.loopWindow();
  // The same server doing nothing for as long (up to 20 s): what this machine's other load alone makes of the probe.
  await sleep(Math.min(20_000, performance.now() - rendersStarted));
  const idleStall = await server.loopWindow();
  const baseNow = await measure(server, '/cells');
  const basePast = await measure(server, `/cells?at=${hourBack}`);
  await server.stop();

  const ratio = (a: number, b: number) => `${fmt(a / b, 2)}x`;
  table(`GET /map.png, ${ROUNDS} renders each (a 64 MiB sparse world, 256x256x256, xzy)`, ['what', 'p50', 'p95', 'server CPU a render', 'PNG bytes', 'server timing (last)', 'vs baseline p50'], rows.map(([what, f]) => {
    const base = what.includes('now') ? baseNow : basePast;
    return [what, fmtMs(f.p50), fmtMs(f.p95), fmtMs(f.cpuMs), fmt(f.bytes, 0), f.timing, ratio(f.p50, base.p50)];
  }));
  console.log(`\nthe first map of the past after the start (reads the whole snapshot, then keeps it a minute): ${fmtMs(cold.ms)}`);
  table('Baseline: the whole world raw (what a client read to draw a map before /map.png)', ['what', 'p50', 'p95', 'server CPU a read', 'bytes'], [
    ['GET /cells, now', fmtMs(baseNow.p50), fmtMs(baseNow.p95), fmtMs(baseNow.cpuMs), fmt(baseNow.bytes, 0)],
    ['GET /cells?at=<1 h ago>', fmtMs(basePast.p50), fmtMs(basePast.p95), fmtMs(basePast.cpuMs), fmt(basePast.bytes, 0)],
  ]);
  console.log(`\nlongest event-loop stall of the server during the ${rows.length * ROUNDS} renders: ${fmtMs(stall.maxMs)} (p99 ${fmtMs(stall.p99Ms)}); idle for ${fmt(Math.min(20_000, stall.windowMs) / 1000, 1)} s right after: ${fmtMs(idleStall.maxMs)} (p99 ${fmtMs(idleStall.p99Ms)})`);
  console.log(`CPU pressure now (/proc/pressure/cpu, "some"): ${cpuPressure()} (wall times on a shared machine stretch with it; CPU a render does not)`);
  const v: Verdict[] = [
    { target: `top view now <= ${NOW_TARGET_MS} ms (p50)`, measured: fmtMs(rows[0]![1].p50), pass: rows[0]![1].p50 <= NOW_TARGET_MS },
    { target: `top view one hour back <= ${PAST_TARGET_MS} ms (p50)`, measured: fmtMs(rows[3]![1].p50), pass: rows[3]![1].p50 <= PAST_TARGET_MS },
    { target: `longest event-loop stall during renders <= ${STALL_TARGET_MS} ms`, measured: fmtMs(stall.maxMs), pass: stall.maxMs <= STALL_TARGET_MS },
  ];
  verdicts(v);
});

/** GET `path`; throws unless 200. */
async function get(server: ServerProc, path: string): Promise<{ ms: number; bytes: number; timing: string }> {
  const started = performance.now();
  const res = await fetch(`${server.url}${path}`, { headers: { Authorization: AUTH_HEADER } });
  const body = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${body.toString().slice(0, 300)}`);
  const timing = (res.headers.get('server-timing') ?? '').replace(/;dur=/g, ' ').replace(/, /g, ' / ');
  return { ms: performance.now() - started, bytes: body.length, timing };
}

/** ROUNDS requests of `path`, one at a time: p50, p95, the server's CPU time a request, the answer's size and the server's own timing of the last. */
async function measure(server: ServerProc, path: string): Promise<Figure> {
  const times: number[] = [];
  let last = { ms: 0, bytes: 0, timing: '' };
  const cpu0 = cpuMs(server.pid);
  for (let i = 0; i < ROUNDS; i++) {
    last = await get(server, path);
    times.push(last.ms);
  }
  const cpu = (cpuMs(server.pid) - cpu0) / ROUNDS;
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(times.length / 2)]!, p95: times[Math.min(times.length - 1, Math.ceil(times.length * 0.95) - 1)]!, cpuMs: cpu, bytes: last.bytes, timing: last.timing };
}

/** The share of time some task waited for a CPU over the last 10 s, from /proc/pressure/cpu. */
function cpuPressure(): string {
  try {
    return `${/avg10=([\d.]+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'))?.[1] ?? '?'}%`;
  } catch {
    return 'unknown';
  }
}

/**
 * A prefix holding an hour of history ending now: 3,600 change sets of 100 single-cell changes, one a second,
 * and a snapshot every 10 minutes of the world as those changes leave it, committed as a server would.
 */
async function seedHour(store: BlobStore, prefix: string, base: Uint8Array): Promise<{ start: number; lastSnapshotAt: number }> {
  const commits = new CommitLog(store, prefix, silent, Date.now);
  const model = base.slice();
  const cells = model.byteLength / 4;
  const lineage = 'be0cbe0cbe0cbe0e';
  const start = Date.now() - 3_600_000 - 5000;
  let lsn = 0;
  let lastSnapshotAt = start;
  const refs: Array<Record<string, unknown>> = [];
  for (let s = 0; s < 3600; s++) {
    const at = start + s * 1000;
    if (s % 600 === 0) {
      const createdAt = new Date(at - 1);
      const name = `${createdAt.toISOString().replace(/[-:.]/g, '')}-b${String(s).padStart(7, '0')}`;
      const key = `${prefix}backups/${name}.gz`;
      const encoded = encodeBackup(model);
      await store.put(key, encoded.body);
      const info = encoded.result();
      const commit = await commits.append({ kind: 'snapshot', reason: 'bench', name, key, createdAt: createdAt.toISOString(), cells, bytes: info.bytes, compressedBytes: info.compressedBytes, sha256: info.sha256, lineage, lsn, snapshotLsn: lsn, replayFrom: 0, history: [...refs] } as never);
      refs.unshift({ seq: commit.seq, name, key, createdAt: createdAt.toISOString(), bytes: info.bytes, compressedBytes: info.compressedBytes, sha256: info.sha256, replayFrom: 0 });
      lastSnapshotAt = createdAt.getTime();
    }
    const changes: Change[] = [];
    for (let i = 0; i < 100; i++) {
      const index = Math.floor(Math.random() * cells);
      const bytes = Uint8Array.of(1 + (i % 200), 0, 1, 2);
      model.set(bytes, index * 4);
      changes.push({ lsn: ++lsn, at: at + i * 10, by: i % 4 ? '0123456789ABCDEF' : '', runs: [{ start: index, bytes }] });
    }
    const packed = await packChangeSet(batchOf(changes));
    await commits.append({
      kind: 'changes', reason: 'bench', name: `${s}`, lineage, lsn, fromLsn: changes[0]!.lsn, toLsn: lsn, count: changes.length, firstAt: new Date(changes[0]!.at).toISOString(),
      lastAt: new Date(changes.at(-1)!.at).toISOString(), bytes: packed.bytes, compressedBytes: packed.body.byteLength, sha256: packed.sha256, inline: packed.body.toString('base64'),
    } as never);
  }
  return { start, lastSnapshotAt };
}
