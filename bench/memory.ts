/**
 * Memory: resident set size (VmRSS from /proc/<pid>/status, sampled every 10 ms) of cubecache booted from a
 * backup of a world, run as `npm start` runs it: idle after boot, under single-cell load (wrk), during a
 * backup with no load, during two backups under load, and idle again. Both worlds: random bytes (the worst
 * case: nothing compresses) and sparse. Every figure is measured from the booted idle process of the same
 * run; the process with no world is printed beside it.
 * Targets (issue 17): a backup peaks at no more than half a world above the idle process; after backups the
 * idle process comes back to within 16 MiB of its idle after boot.
 *
 *   npm run bench:memory                                          64 MiB worlds in the local S3 server
 *   BENCH_WORLD_MIB=1024 BENCH_STORE=folder npm run bench:memory  a 1 GiB world in a folder store
 *   BENCH_WORLDS=random|sparse|random,sparse  BENCH_SECONDS=5 (each wrk run)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import {
  ensureBuilt, fmt, fmtMiB, http, main, makeWorld, memory, MiB, profileArgs, RssSampler, RUN_SECONDS, runWrk, s3dump, sleep,
  smapsRollup, startCubecache, startS3, table, verdicts, workDir, wrkBinary, wrkScript, type MemProbe, type ServerProc, type Verdict, type WorldKind,
} from './support.js';

const WORLD_MIB = Number(process.env.BENCH_WORLD_MIB ?? 64);
const STORE = process.env.BENCH_STORE ?? 's3';
const WORLDS = (process.env.BENCH_WORLDS ?? 'random,sparse').split(',') as WorldKind[];
const CELLS = WORLD_MIB * 262_144;
const WORLD = CELLS * 4;
const PEAK_TARGET = WORLD / 2;
const SETTLE_TARGET = 16 * MiB;

await main('bench:memory: resident memory idle, under load and during backups', async () => {
  if (!(WORLD_MIB >= 1) || !['s3', 'folder'].includes(STORE)) throw new Error('BENCH_WORLD_MIB must be a number of MiB, BENCH_STORE s3 or folder');
  wrkBinary();
  console.log(`cubecache runs as: ${ensureBuilt().how}`);
  const storeEnv = STORE === 's3' ? (await startS3()).env : { DATA_DIR: mkdtempSync(join(workDir(), 'store-')) };
  const env = { ...storeEnv, CUBE_CELLS: String(CELLS) };
  const script = wrkScript({ kind: 'request', mode: 'mix', cells: CELLS });
  const rows: Array<Array<string>> = [];
  const v: Verdict[] = [];
  const ofWorld = (bytes: number) => `${fmt(bytes / WORLD, 2)} world`;

  // Reference: the process with no world in memory (empty prefix: the world's array is allocated, never touched).
  let empty: number;
  {
    const server = await startCubecache('cubecache-empty', { env: { ...env, S3_PREFIX: 'bench-memory-empty/' }, probe: true, nodeArgs: ['--expose-gc', ...profileArgs('memory-empty')] });
    await sleep(3000);
    empty = memory(server.pid).rss;
    await server.stop();
    rows.push(['(empty)', 'idle, 3 s after boot: the process without a resident world', fmtMiB(empty)]);
  }

  for (const kind of WORLDS) {
    const prefix = `bench-memory-${kind}/`;
    await seed(env, prefix, kind);
    let sampler: RssSampler | undefined;
    const t0 = performance.now();
    // The probe: memoryUsage() on request, and a forced GC (--expose-gc) as a diagnostic after the figures that count.
    const server = await startCubecache(`cubecache-${kind}`, { env: { ...env, S3_PREFIX: prefix }, onSpawn: (pid) => { sampler = new RssSampler(pid, 10); }, listenTimeoutMs: Math.max(60_000, WORLD_MIB * 300), probe: true, nodeArgs: ['--expose-gc', ...profileArgs(`memory-${kind}`)] });
    const s = sampler!;
    const boot = s.window(t0);

    await sleep(3000); // settle: what a server holds between bursts
    const idleFrom = performance.now();
    await sleep(1000);
    const idle = s.window(idleFrom).median;
    const idleParts = await parts(server);

    const loadFrom = performance.now();
    await runWrk(`${server.url}/request`, script, RUN_SECONDS);
    const load = s.window(loadFrom);

    await sleep(1000);
    const quietFrom = performance.now();
    const quiet = await s3dump(server);
    const quietPeak = s.window(quietFrom).peak;

    // Two backups back to back under load: wrk runs in short rounds until both are done.
    let loading = true;
    const loadedFrom = performance.now();
    const loader = (async () => { while (loading) await runWrk(`${server.url}/request`, script, Math.min(2, RUN_SECONDS)); })();
    await sleep(300);
    const loaded = [await s3dump(server), await s3dump(server)];
    const loadedWindow = s.window(loadedFrom);
    const loadedParts = await parts(server);
    loading = false;
    await loader;

    await sleep(3000);
    const afterFrom = performance.now();
    await sleep(1000);
    const after = s.window(afterFrom).median;
    const afterParts = await parts(server);
    const gc = await server.forceGc();
    await sleep(300);
    const afterGc = s.sampleNow();
    s.stop();
    await server.stop();

    const peak = Math.max(quietPeak, loadedWindow.peak);
    const above = (rss: number) => `${fmtMiB(rss)} (idle ${rss >= idle ? '+' : '-'} ${fmtMiB(Math.abs(rss - idle))}, ${ofWorld(rss - idle)})`;
    rows.push([kind, 'boot (restore of the backup): peak', fmtMiB(boot.peak)]);
    rows.push([kind, 'idle, 3 s after boot (median of 1 s): the baseline', `${fmtMiB(idle)} (the empty process + ${fmtMiB(idle - empty)}, ${ofWorld(idle - empty)})`]);
    rows.push([kind, `single-cell load (${RUN_SECONDS} s): peak`, above(load.peak)]);
    rows.push([kind, `backup, no load (${fmt(quiet.durationMs / 1000, 1)} s): peak`, above(quietPeak)]);
    rows.push([kind, `2 backups under load (${loaded.map((b) => fmt(b.durationMs / 1000, 1)).join(' s, ')} s): peak`, above(loadedWindow.peak)]);
    rows.push([kind, 'idle again, 3 s later (median of 1 s)', above(after)]);
    rows.push([kind, '  diagnostic: the same after a forced full GC', `${fmtMiB(afterGc)} (V8 heap used ${fmtMiB(gc.after.heapUsed)})`]);
    rows.push([kind, '  where it is: idle after boot', idleParts]);
    rows.push([kind, '  where it is: end of the loaded backups', loadedParts]);
    rows.push([kind, '  where it is: idle again', afterParts]);
    v.push({ target: `${kind}: a backup peaks <= idle + half a world (${fmtMiB(idle + PEAK_TARGET)})`, measured: `${fmtMiB(peak)}: idle + ${fmtMiB(peak - idle)} = ${ofWorld(peak - idle)}`, pass: peak - idle <= PEAK_TARGET });
    v.push({ target: `${kind}: idle after backups <= idle after boot + 16 MiB (${fmtMiB(idle + SETTLE_TARGET)})`, measured: `${fmtMiB(after)}: idle ${after >= idle ? '+' : '-'} ${fmtMiB(Math.abs(after - idle))}`, pass: after - idle <= SETTLE_TARGET });
  }
  table(`Resident memory (VmRSS sampled every 10 ms; world = ${fmtMiB(WORLD)}, store: ${STORE})`, ['world', 'when', 'RSS'], rows);
  verdicts(v);
});

/** Puts a `kind` world on `prefix` with a server of its own (log off): PUT /cells 16 MiB at a time, one backup. */
async function seed(env: Record<string, string>, prefix: string, kind: WorldKind): Promise<void> {
  const server = await startCubecache(`seed-${kind}`, { env: { ...env, S3_PREFIX: prefix, WAL_DIR: '' } });
  // Random bytes 16 MiB at a time; the sparse world is the 64 MiB map, repeated to fill a larger world.
  const tile = kind === 'sparse' ? makeWorld('sparse').bytes : undefined;
  const step = 16 * MiB;
  for (let at = 0; at < WORLD; at += step) {
    const n = Math.min(step, WORLD - at);
    const body = tile ? tile.subarray(at % tile.byteLength, (at % tile.byteLength) + n) : randomBytes(n);
    const answer = await http(`${server.url}/cells?start=${at / 4}`, { method: 'PUT', body, headers: { 'Content-Type': 'application/octet-stream' } });
    if (answer.status !== 200) throw new Error(`PUT /cells: ${answer.status} ${answer.body.toString().slice(0, 300)}`);
  }
  await s3dump(server);
  await server.stop();
}

/** Where the memory is: anonymous (smaps_rollup) vs mapped files, V8's heap (new space apart), ArrayBuffers, other external. */
async function parts(server: ServerProc): Promise<string> {
  const m: MemProbe = await server.memoryNow();
  const sm = smapsRollup(server.pid);
  const u = m.usage;
  return `anon ${fmtMiB(sm.Anonymous!)}, files ${fmtMiB(sm.Rss! - sm.Anonymous!)}; V8 heap ${fmtMiB(u.heapTotal)} (new space ${fmtMiB(m.spaces.new_space ?? 0)}), ArrayBuffers ${fmtMiB(u.arrayBuffers)}, other external ${fmtMiB(u.external - u.arrayBuffers)}`;
}
