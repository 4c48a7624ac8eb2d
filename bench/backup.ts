/**
 * Backups under load: a 64 MiB world (sparse like a real map, ~5% of cells set in clusters; and random bytes)
 * backed up to the local S3 server (Ceph RGW) by POST /s3dump, with and without single-cell load (wrk).
 *
 * For each world a fresh cubecache process boots from a committed backup of it (so nothing before the
 * measurement, such as filling the world, shows in its figures), with bench/loop-probe.ts preloaded: the
 * probe gives the longest event-loop stall of each window; cubecache_event_loop_delay_seconds{quantile="1"}
 * (max since start) is read before and after as a cross-check.
 * Figures: wall time (durationMs of the answer), process CPU time (/proc/<pid>/stat, all threads: gzip runs
 * on the libuv pool), compressed bytes, longest stall, request p99 during back-to-back backups vs without.
 * Targets: no stall over 20 ms; p99 during a backup <= 2x idle p99.
 *
 *   npm run bench:backup       BENCH_SECONDS=5 (per load run)  BENCH_PROFILE=cpu|heap
 */
import {
  cpuMs, ensureBuilt, fmt, fmtInt, fmtMiB, fmtMs, loopDelayMaxMs, main, median, prepareBackup, profileArgs, RUN_SECONDS,
  runWrk, s3dump, sleep, startCubecache, startS3, table, verdicts, WORLD_BYTES, wrkBinary, wrkErrors, wrkScript,
  type BackupAnswer, type Verdict, type WorldKind, type WrkResult,
} from './support.js';

const STALL_TARGET_MS = 20;
const P99_TARGET = 2;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

interface Measured { backup: BackupAnswer; cpuMs: number; stallMs: number }

await main('bench:backup: 64 MiB backups to S3, idle and under single-cell load', async () => {
  wrkBinary();
  console.log(`cubecache runs as: ${ensureBuilt().how}`);
  const s3 = await startS3();
  const script = wrkScript({ kind: 'request', mode: 'mix' });
  const results: Array<{ kind: WorldKind; cellsSet: number; idle: Measured[]; loaded: Measured[]; loadOnlyStall: number; idleRuns: WrkResult[]; duringRuns: WrkResult[]; coverage: number; windowCpuMs: number; metricBefore: number; metricAfter: number; metricAfterBoot: number }> = [];

  for (const kind of ['sparse', 'random'] as const) {
    const prefix = `bench-backup-${kind}/`;
    console.log(`\n## ${kind} world: filling a server, committing a backup to ${prefix}`);
    const prepared = await prepareBackup(s3, kind, prefix);
    const server = await startCubecache(`cubecache-${kind}`, { env: { ...s3.env, S3_PREFIX: prefix }, probe: true, nodeArgs: profileArgs(`backup-${kind}`) });
    const metricAfterBoot = await loopDelayMaxMs(server);
    // Warm-up (not counted): the first second of load on a fresh process runs unoptimised code and opens the connections.
    await runWrk(`${server.url}/request`, script, 2);
    await sleep(500);

    const measure = async (): Promise<Measured> => {
      await server.loopWindow(); // reset
      const cpu0 = cpuMs(server.pid);
      const backup = await s3dump(server);
      const cpu = cpuMs(server.pid) - cpu0;
      const window = await server.loopWindow();
      return { backup, cpuMs: cpu, stallMs: window.maxMs };
    };

    // 1. Backups with no load: the backup's own cost (the first one also opens connections to S3).
    const idle: Measured[] = [];
    for (let i = 0; i < 3; i++) {
      idle.push(await measure());
      const m = idle.at(-1)!;
      console.log(`idle backup ${i + 1}: ${fmtMs(m.backup.durationMs)} wall, ${fmtMs(m.cpuMs)} CPU, ${fmtInt(m.backup.compressedBytes)} B, longest stall ${fmtMs(m.stallMs)}`);
    }

    // 2 and 3, alternated in rounds: the same load without a backup, then with backups back to back for the whole run.
    const metricBefore = await loopDelayMaxMs(server);
    const idleRuns: WrkResult[] = [];
    const duringRuns: WrkResult[] = [];
    const loaded: Measured[] = [];
    let loadOnlyStall = 0;
    let windowCpuMs = 0;
    let coverageSum = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      await server.loopWindow();
      const wrkIdle = await runWrk(`${server.url}/request`, script, RUN_SECONDS);
      const stall = (await server.loopWindow()).maxMs;
      loadOnlyStall = Math.max(loadOnlyStall, stall);
      idleRuns.push(wrkIdle);
      console.log(`round ${round}, load, no backup: ${fmtInt(wrkIdle.rps)} req/s, p99 ${fmtMs(wrkIdle.p99)}, longest stall ${fmtMs(stall)}${wrkErrors(wrkIdle) ? ` (${wrkErrors(wrkIdle)})` : ''}`);
      await sleep(500);

      const cpuWindow0 = cpuMs(server.pid);
      const wrkStarted = performance.now();
      let wrkDone = false;
      const during = runWrk(`${server.url}/request`, script, RUN_SECONDS).finally(() => { wrkDone = true; });
      await sleep(200);
      let busyMs = 0;
      const before = loaded.length;
      while (!wrkDone && performance.now() - wrkStarted < RUN_SECONDS * 1000 - 300) {
        const t = performance.now();
        loaded.push(await measure());
        busyMs += Math.min(performance.now(), wrkStarted + RUN_SECONDS * 1000) - t;
      }
      const wrkDuring = await during;
      windowCpuMs += cpuMs(server.pid) - cpuWindow0;
      coverageSum += busyMs / (RUN_SECONDS * 1000);
      duringRuns.push(wrkDuring);
      const mine = loaded.slice(before);
      console.log(`round ${round}, load + ${mine.length} back-to-back backups (${fmt((busyMs / (RUN_SECONDS * 1000)) * 100, 0)}% of the run): ${fmtInt(wrkDuring.rps)} req/s, p99 ${fmtMs(wrkDuring.p99)}, longest stall ${fmtMs(Math.max(...mine.map((m) => m.stallMs)))}${wrkErrors(wrkDuring) ? ` (${wrkErrors(wrkDuring)})` : ''}`);
      await sleep(500);
    }
    const metricAfter = await loopDelayMaxMs(server);
    const coverage = coverageSum / ROUNDS;
    windowCpuMs /= ROUNDS;
    await server.stop();
    results.push({ kind, cellsSet: prepared.cellsSet, idle, loaded, loadOnlyStall, idleRuns, duringRuns, coverage, windowCpuMs, metricBefore, metricAfter, metricAfterBoot });
  }

  const p99Ratio = (r: (typeof results)[number]) => median(r.duringRuns.map((w) => w.p99)) / median(r.idleRuns.map((w) => w.p99));
  const rows: Array<Array<string>> = [];
  for (const r of results) {
    const warm = r.idle.slice(1);
    rows.push([r.kind, 'cells set', `${fmtInt(r.cellsSet)} (${fmt((r.cellsSet / (WORLD_BYTES / 4)) * 100, 1)}%)`]);
    rows.push([r.kind, 'bytes after compression', `${fmtInt(r.idle[0]!.backup.compressedBytes)} (${fmtMiB(r.idle[0]!.backup.compressedBytes)}, ${fmt((r.idle[0]!.backup.compressedBytes / WORLD_BYTES) * 100, 2)}% of 64 MiB)`]);
    rows.push([r.kind, 'backup wall, no load (first / then)', `${fmtMs(r.idle[0]!.backup.durationMs)} / ${warm.map((m) => fmtMs(m.backup.durationMs)).join(', ')}`]);
    rows.push([r.kind, 'backup CPU, no load (first / then)', `${fmtMs(r.idle[0]!.cpuMs)} / ${warm.map((m) => fmtMs(m.cpuMs)).join(', ')}`]);
    rows.push([r.kind, 'longest stall, backup with no load', r.idle.map((m) => fmtMs(m.stallMs)).join(', ')]);
    rows.push([r.kind, 'backup wall under load (median, n)', `${fmtMs(median(r.loaded.map((m) => m.backup.durationMs)))} (${r.loaded.length}: ${r.loaded.map((m) => fmtInt(m.backup.durationMs)).join(', ')} ms)`]);
    rows.push([r.kind, 'longest stall, backups under load', `${fmtMs(Math.max(...r.loaded.map((m) => m.stallMs)))} (each: ${r.loaded.map((m) => fmt(m.stallMs, 1)).join(', ')} ms)`]);
    rows.push([r.kind, 'longest stall, load and no backup', fmtMs(r.loadOnlyStall)]);
    rows.push([r.kind, 'server metric loop delay max (after boot / before / after loaded backups)', `${fmtMs(r.metricAfterBoot)} / ${fmtMs(r.metricBefore)} / ${fmtMs(r.metricAfter)}`]);
    const runs = (list: WrkResult[]) => `${fmtInt(median(list.map((w) => w.rps)))}, ${fmtMs(median(list.map((w) => w.p50)))}, ${fmtMs(median(list.map((w) => w.p99)))} (p99 each: ${list.map((w) => fmt(w.p99, 1)).join(', ')} ms)`;
    rows.push([r.kind, `load, no backup: req/s, p50, p99 (medians of ${ROUNDS})`, runs(r.idleRuns)]);
    rows.push([r.kind, `load + backups: req/s, p50, p99 (medians of ${ROUNDS})`, `${runs(r.duringRuns)}; backups ${fmt(r.coverage * 100, 0)}% of the run`]);
    rows.push([r.kind, 'p99 ratio (during / idle; per round)', `${fmt(p99Ratio(r), 2)}x (${r.duringRuns.map((w, i) => fmt(w.p99 / r.idleRuns[i]!.p99, 2)).join(', ')})`]);
    rows.push([r.kind, 'process CPU in a loaded run with backups', `${fmtMs(r.windowCpuMs)} over ${RUN_SECONDS} s`]);
  }
  table(`Backups of a 64 MiB world to ${s3.kind === 'ceph' ? 'Ceph RGW' : 's3rver'} on this machine (wrk mixed single-cell load, ${RUN_SECONDS} s runs)`, ['world', 'figure', 'value'], rows);

  const v: Verdict[] = [];
  for (const r of results) {
    const idleStall = Math.max(...r.idle.map((m) => m.stallMs));
    const loadedStall = Math.max(...r.loaded.map((m) => m.stallMs));
    v.push({ target: `${r.kind}: no event-loop stall over ${STALL_TARGET_MS} ms (backup, no load)`, measured: fmtMs(idleStall), pass: idleStall <= STALL_TARGET_MS });
    v.push({ target: `${r.kind}: no event-loop stall over ${STALL_TARGET_MS} ms (backups under load)`, measured: `${fmtMs(loadedStall)} (load alone: ${fmtMs(r.loadOnlyStall)})`, pass: loadedStall <= STALL_TARGET_MS });
    const ratio = p99Ratio(r);
    v.push({ target: `${r.kind}: p99 during backups <= ${P99_TARGET}x idle p99`, measured: `${fmt(ratio, 2)}x (medians ${fmtMs(median(r.duringRuns.map((w) => w.p99)))} vs ${fmtMs(median(r.idleRuns.map((w) => w.p99)))})`, pass: ratio <= P99_TARGET });
  }
  verdicts(v);
});
