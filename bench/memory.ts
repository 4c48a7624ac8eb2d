/**
 * Memory: resident set size (VmRSS from /proc/<pid>/status, sampled every 10 ms) of cubecache booted from a
 * 64 MiB backup in the local S3 server: at boot, idle, under single-cell load (wrk), during a backup with no
 * load and during backups under load. Both worlds: random bytes (the worst case: nothing compresses) and sparse.
 * Targets: idle <= world size + 60 MiB; peak during a backup <= 2.5x world size.
 *
 *   npm run bench:memory       BENCH_SECONDS=5
 */
import {
  ensureBuilt, fmtMiB, fmt, main, memory, MiB, prepareBackup, profileArgs, RssSampler, RUN_SECONDS, runWrk, s3dump, sleep,
  startCubecache, startS3, table, verdicts, WORLD_BYTES, wrkBinary, wrkScript, type Verdict,
} from './support.js';

const IDLE_TARGET = WORLD_BYTES + 60 * MiB;
const BACKUP_TARGET = 2.5 * WORLD_BYTES;

await main('bench:memory: resident memory idle, under load and during backups', async () => {
  wrkBinary();
  console.log(`cubecache runs as: ${ensureBuilt().how}`);
  const s3 = await startS3();
  const script = wrkScript({ kind: 'request', mode: 'mix' });
  const rows: Array<Array<string>> = [];
  const v: Verdict[] = [];

  // Reference: the process with no world in memory (empty prefix: the 64 MiB array is allocated but never touched).
  {
    const server = await startCubecache('cubecache-empty', { env: { ...s3.env, S3_PREFIX: 'bench-memory-empty/' }, probe: true, nodeArgs: ['--expose-gc', ...profileArgs('memory-empty')] });
    await sleep(3000);
    const rss = memory(server.pid).rss;
    const gc = await server.forceGc();
    await sleep(300);
    const rssGc = memory(server.pid).rss;
    await server.stop();
    rows.push(['(reference) empty prefix', 'idle, 3 s after boot: the process without a resident world (after a forced GC)', `${fmtMiB(rss)} (${fmtMiB(rssGc)}; V8 heap used ${fmtMiB(gc.after.heapUsed)})`]);
  }

  for (const kind of ['random', 'sparse'] as const) {
    const prefix = `bench-memory-${kind}/`;
    await prepareBackup(s3, kind, prefix);
    let sampler: RssSampler | undefined;
    const t0 = performance.now();
    // --expose-gc and the probe only to force a GC on request (a diagnostic, after the figures that count).
    const server = await startCubecache(`cubecache-${kind}`, { env: { ...s3.env, S3_PREFIX: prefix }, onSpawn: (pid) => { sampler = new RssSampler(pid, 10); }, probe: true, nodeArgs: ['--expose-gc', ...profileArgs(`memory-${kind}`)] });
    const s = sampler!;
    const boot = s.window(t0);
    const hwmBoot = memory(server.pid).hwm;

    await sleep(3000); // settle: what a server holds between bursts
    const idleFrom = performance.now();
    await sleep(1000);
    const idle = s.window(idleFrom);
    const gcIdle = await server.forceGc();
    await sleep(300);
    const idleAfterGc = s.sampleNow();

    const loadFrom = performance.now();
    await runWrk(`${server.url}/request`, script, RUN_SECONDS);
    const load = s.window(loadFrom);

    await sleep(1000);
    const backups: Array<{ peak: number; before: number }> = [];
    for (let i = 0; i < 2; i++) {
      const before = s.sampleNow();
      const from = performance.now();
      await s3dump(server);
      s.sampleNow();
      backups.push({ peak: s.window(from).peak, before });
      await sleep(500);
    }

    const loadedFrom = performance.now();
    let wrkDone = false;
    const during = runWrk(`${server.url}/request`, script, RUN_SECONDS).finally(() => { wrkDone = true; });
    await sleep(200);
    let n = 0;
    while (!wrkDone && performance.now() - loadedFrom < RUN_SECONDS * 1000 - 300) { await s3dump(server); n++; }
    await during;
    const loadedBackups = s.window(loadedFrom);

    await sleep(3000);
    const afterFrom = performance.now();
    await sleep(1000);
    const after = s.window(afterFrom);
    const hwm = memory(server.pid).hwm;
    await server.forceGc();
    await sleep(300);
    const afterGc = s.sampleNow();
    s.stop();
    await server.stop();

    const backupPeak = Math.max(loadedBackups.peak, ...backups.map((b) => b.peak));
    rows.push([kind, 'boot (restore of the backup): peak sampled / VmHWM', `${fmtMiB(boot.peak)} / ${fmtMiB(hwmBoot)}`]);
    rows.push([kind, 'idle, 3 s after boot (median of 1 s)', fmtMiB(idle.median)]);
    rows.push([kind, '  diagnostic: the same after a forced full GC', `${fmtMiB(idleAfterGc)} (V8 heap used ${fmtMiB(gcIdle.after.heapUsed)}): ${fmtMiB(idle.median - idleAfterGc)} was garbage not yet collected`]);
    rows.push([kind, `single-cell load (${RUN_SECONDS} s): median / peak`, `${fmtMiB(load.median)} / ${fmtMiB(load.peak)}`]);
    rows.push([kind, 'backup, no load: RSS before -> peak', backups.map((b) => `${fmtMiB(b.before)} -> ${fmtMiB(b.peak)}`).join('; ')]);
    rows.push([kind, `${n} backups under load: median / peak`, `${fmtMiB(loadedBackups.median)} / ${fmtMiB(loadedBackups.peak)}`]);
    rows.push([kind, 'idle again, 3 s later (median of 1 s) / VmHWM', `${fmtMiB(after.median)} / ${fmtMiB(hwm)}`]);
    rows.push([kind, '  diagnostic: the same after a forced full GC', `${fmtMiB(afterGc)}: ${fmtMiB(after.median - afterGc)} was garbage not yet collected`]);
    v.push({ target: `${kind}: idle RSS <= world + 60 MiB (${fmtMiB(IDLE_TARGET)})`, measured: `${fmtMiB(idle.median)} after boot; ${fmtMiB(after.median)} after backups`, pass: idle.median <= IDLE_TARGET && after.median <= IDLE_TARGET });
    v.push({ target: `${kind}: peak RSS during a backup <= 2.5x world (${fmtMiB(BACKUP_TARGET)})`, measured: `${fmtMiB(backupPeak)} (${fmt(backupPeak / WORLD_BYTES, 2)}x)`, pass: backupPeak <= BACKUP_TARGET });
  }
  table('Resident memory (VmRSS sampled every 10 ms; world = 64 MiB)', ['world', 'when', 'RSS'], rows);
  verdicts(v);
});
