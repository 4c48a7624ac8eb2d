/**
 * Boot: time from process start (spawn) to the first served request (a 200 to an authenticated
 * POST /request), with a 64 MiB backup committed in the local S3 server (Ceph RGW): a random-bytes world
 * and a sparse one. Reference: the same boot with an empty prefix (no backup: process start, module
 * loading, one S3 list). Also when the log said world_restored and listening.
 * Target: <= 1.5 s.
 *
 *   npm run bench:boot         BENCH_BOOTS=3
 */
import {
  ensureBuilt, fmt, fmtInt, fmtMs, http, main, median, prepareBackup, profileArgs, sleep, startCubecache, startS3, table, verdicts,
  type S3Setup, type Verdict,
} from './support.js';

const BOOTS = Number(process.env.BENCH_BOOTS ?? 3);
const TARGET_MS = 1500;

interface Boot { firstServedMs: number; restoredMs: number; listeningMs: number; firstAttempts: number }

/** Spawns a server on `prefix` and polls POST /request until the first 200; times from spawn. */
async function bootOnce(s3: S3Setup, prefix: string, label: string): Promise<Boot> {
  const server = await startCubecache(label, { env: { ...s3.env, S3_PREFIX: prefix }, noWait: true, nodeArgs: profileArgs(label) });
  // The port is chosen by the server (PORT=0): learn it from the listening line, polling meanwhile would need a fixed port.
  // So poll on the event, then time the first request right away; the request is what the target is about.
  const listening = await server.waitForEvent('listening', 120_000);
  const url = `http://127.0.0.1:${listening.event.port as number}`;
  let attempts = 0;
  let servedAt = NaN;
  for (;;) {
    attempts++;
    try {
      const answer = await http(`${url}/request`, { body: '{"index":0}' });
      if (answer.status === 200) { servedAt = performance.now(); break; }
    } catch { /* not yet */ }
    if (attempts > 2000) throw new Error(`${label}: no 200 after ${attempts} attempts`);
    await sleep(2);
  }
  const restored = server.events.find((e) => e.event.event === 'world_restored' || e.event.event === 'world_empty');
  const boot = {
    firstServedMs: servedAt - server.spawnedAt,
    restoredMs: (restored?.at ?? NaN) - server.spawnedAt,
    listeningMs: listening.at - server.spawnedAt,
    firstAttempts: attempts,
  };
  await server.stop();
  return boot;
}

await main('bench:boot: process start to first served request, 64 MiB backup in S3', async () => {
  console.log(`cubecache runs as: ${ensureBuilt().how}`);
  const s3 = await startS3();
  const worlds: Array<{ label: string; prefix: string; note: string }> = [{ label: 'empty prefix (no backup)', prefix: 'bench-boot-empty/', note: 'reference' }];
  for (const kind of ['random', 'sparse'] as const) {
    const prefix = `bench-boot-${kind}/`;
    const prepared = await prepareBackup(s3, kind, prefix);
    worlds.push({ label: `${kind} world`, prefix, note: `backup ${fmtInt(prepared.compressedBytes)} B compressed` });
  }

  const rows: Array<Array<string>> = [];
  const v: Verdict[] = [];
  for (const w of worlds) {
    const boots: Boot[] = [];
    for (let i = 0; i < BOOTS; i++) {
      const b = await bootOnce(s3, w.prefix, `boot-${w.prefix.replace(/\W+/g, '-')}${i}`);
      boots.push(b);
      console.log(`${w.label} boot ${i + 1}: restored ${fmtMs(b.restoredMs)}, listening ${fmtMs(b.listeningMs)}, first 200 ${fmtMs(b.firstServedMs)}`);
    }
    const served = boots.map((b) => b.firstServedMs);
    rows.push([w.label, w.note, fmtMs(median(boots.map((b) => b.restoredMs))), fmtMs(median(boots.map((b) => b.listeningMs))), fmtMs(median(served)), `${fmtMs(Math.min(...served))} - ${fmtMs(Math.max(...served))}`]);
    if (w.note !== 'reference') {
      v.push({ target: `${w.label}: start to first served request <= ${fmt(TARGET_MS / 1000, 1)} s`, measured: `median ${fmtMs(median(served))} (max ${fmtMs(Math.max(...served))})`, pass: median(served) <= TARGET_MS });
    }
  }
  table(`Boot, ${BOOTS} starts each (times from spawn; S3 = ${s3.kind === 'ceph' ? 'Ceph RGW' : 's3rver'} on this machine)`, ['world', 'note', 'world restored (log)', 'listening (log)', 'first 200 (median)', 'first 200 (range)'], rows);
  verdicts(v);
});
