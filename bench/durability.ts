/**
 * Durability costs, each against its baseline in the same run:
 *  1. the write-ahead log on the write path: single-cell writes (wrk) with the log off, on (`write`) and on
 *     (`strict`), rounds rotated; target: `write` >= 0.9x off;
 *  2. shipping's event-loop stalls: the longest stall while changes ship every second under a steady
 *     1,000 writes/s (not saturating), against the same load with shipping off; target: <= 20 ms;
 *  3. boot with 10 minutes of shipped changes at 100 writes/s (600 change sets, 60,000 changes) after a
 *     64 MiB snapshot, against a boot from the snapshot alone; folder store and S3 (Ceph where installed);
 *  4. restore peak memory (VmHWM) of a boot from a snapshot of random bytes, 64 MiB and 1 GiB worlds, beyond
 *     the same server booted with an empty world; target: <= world size + 64 MiB;
 *  5. time travel over one hour of history at 100 writes/s (3,600 change sets, a snapshot every 10 minutes):
 *     restoring a 20x20x20 region ten minutes back, the same region just before a snapshot (the most change
 *     sets to replay), and the whole world one hour back; folder store and S3;
 *     and attribution over the same hour: one page of a player's history, a region's history, and the preview
 *     and the rollback of one player's 10,000 changes;
 *  6. the costs of the past over the same hour (folder store): a batch of 4,096 `at` reads at 4,096 instants
 *     spread evenly over it, against one read at one instant (target < 2 s); the preview and the rollback of a
 *     player's 2,097,000-cell range write, against the preview of the griefer's 10,000 scattered cells: time,
 *     peak RSS beyond the RSS before (sampled every 10 ms), answer size (targets < 5 s, < 64 MiB, < 1 MB).
 *
 *   npm run bench:durability      BENCH_SECONDS=5 BENCH_ROUNDS=3 BENCH_BIG=0 (skip the 1 GiB world) BENCH_PARTS=1,...,6
 *   BENCH_AGAINST=/path/to/checkout   part 1 also runs an earlier build (built there, started as its own
 *                                     `npm start` starts it, with its defaults) in the same rotation
 */
import { S3Client } from '@aws-sdk/client-s3';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { encodeBackup } from '../lib/backup/backup-format.js';
import type { Change } from '../lib/backup/change.js';
import { batchOf } from '../lib/backup/change-batch.js';
import { packChangeSet } from '../lib/backup/change-set.js';
import { CommitLog } from '../lib/backup/commit-log.js';
import { createLog } from '../lib/log.js';
import type { BlobStore } from '../lib/store.js';
import { FileStore } from '../lib/store-file.js';
import { S3Store } from '../lib/store-s3.js';
import {
  AUTH_HEADER, ensureBuilt, fmt, fmtInt, fmtMiB, fmtMs, http, httpJson, main, makeWorld, median, memory, MiB, profileArgs, RssSampler, RUN_SECONDS, runWrk, sleep,
  gitHead, startCubecache, startS3, table, verdicts, workDir, wrkBinary, wrkErrors, wrkScript, type ServerProc, type Verdict, type WrkResult,
} from './support.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const AGAINST = process.env.BENCH_AGAINST;
const BIG = process.env.BENCH_BIG !== '0';
/** Which parts to run (1-6), e.g. BENCH_PARTS=3,5; all by default. */
const PARTS = new Set((process.env.BENCH_PARTS ?? '1,2,3,4,5,6').split(',').map(Number));
const silent = createLog(() => {});
/** The player whose changes the bench rolls back, and how many it made in the hour. */
const GRIEFER = 'GRIEFER000000001';
const GRIEFER_CHANGES = 10_000;

await main('bench:durability: the write-ahead log, shipping, boot replay and restore memory', async () => {
  wrkBinary();
  console.log(`cubecache runs as: ${ensureBuilt().how}`);
  const v: Verdict[] = [];

  // 1. The log on the write path.
  if (PARTS.has(1)) {
    const configs: Array<[string, Record<string, string>]> = [
      ['log off', { WAL_DIR: '', SHIP_INTERVAL_SECONDS: '0' }],
      ['log on, write', { WAL_SYNC: 'write' }],
      ['log on, strict', { WAL_SYNC: 'strict' }],
    ];
    const servers = new Map<string, ServerProc>();
    for (const [name, env] of configs) servers.set(name, await startCubecache(name, { env }));
    if (AGAINST) {
      console.log(`earlier build: ${AGAINST} (${gitHead(AGAINST)})`);
      configs.push(['earlier build, its defaults', {}]);
      servers.set('earlier build, its defaults', await startCubecache('earlier build', { root: AGAINST }));
    }
    const script = wrkScript({ kind: 'request', mode: 'write' });
    for (const s of servers.values()) await runWrk(`${s.url}/request`, script, 2); // warm-up
    const results = new Map<string, WrkResult[]>(configs.map(([name]) => [name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      const order = configs.map(([name]) => name);
      for (let k = 0; k < round; k++) order.push(order.shift()!);
      for (const name of order) {
        const r = await runWrk(`${servers.get(name)!.url}/request`, script, RUN_SECONDS);
        const errors = wrkErrors(r);
        if (errors) console.log(`!! ${name}: ${errors}`);
        results.get(name)!.push(r);
      }
    }
    const rps = (name: string) => median(results.get(name)!.map((r) => r.rps));
    const p99 = (name: string) => median(results.get(name)!.map((r) => r.p99));
    table(`Single-cell writes, wrk ${RUN_SECONDS} s x ${ROUNDS} rounds (medians)`, ['server', 'writes/s', 'p99', 'ratio to log off'],
      configs.map(([name]) => [name, fmtInt(rps(name)), fmtMs(p99(name)), `${fmt(rps(name) / rps('log off'), 2)}x`]));
    v.push({ target: 'writes with the log on (write) >= 0.9x the log off', measured: `${fmt(rps('log on, write') / rps('log off'), 2)}x`, pass: rps('log on, write') / rps('log off') >= 0.9 });
    if (AGAINST) {
      const ratio = rps('log on, write') / rps('earlier build, its defaults');
      v.push({ target: 'writes with the log on (write, the default) >= 1.0x the earlier build with its defaults (BENCH_AGAINST)', measured: `${fmt(ratio, 2)}x`, pass: ratio >= 1 });
    }
    for (const s of servers.values()) await s.stop();
  }

  // 2. Shipping's stalls under a steady load.
  if (PARTS.has(2)) {
    const stalls: Array<[string, number]> = [];
    for (const [name, env] of [['shipping off', { SHIP_INTERVAL_SECONDS: '0' }], ['shipping every 1 s', { SHIP_INTERVAL_SECONDS: '1' }]] as const) {
      const server = await startCubecache(name, { env, probe: true });
      await server.loopWindow();
      await steadyWrites(server.url, 1000, 10_000);
      stalls.push([name, (await server.loopWindow()).maxMs]);
      await server.stop();
    }
    table('Longest event-loop stall, 10 s of 1,000 single-cell writes/s (64 MiB world, folder store)', ['server', 'max stall'], stalls.map(([n, ms]) => [n, fmtMs(ms)]));
    v.push({ target: 'no event-loop stall over 20 ms from shipping', measured: fmtMs(stalls[1]![1]), pass: stalls[1]![1] <= 20 });
  }

  // 3. Boot with 10 minutes of changes at 100 writes/s.
  const dataDir = mkdtempSync(join(workDir(), 'boot-'));
  const stores: Array<[string, BlobStore, Record<string, string>]> = [['folder', new FileStore(dataDir), { DATA_DIR: dataDir }]];
  if (PARTS.has(3) || PARTS.has(5)) {
    const s3 = await startS3();
    const s3Client = new S3Client({
      endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
      credentials: { accessKeyId: s3.env.AWS_ACCESS_KEY_ID!, secretAccessKey: s3.env.AWS_SECRET_ACCESS_KEY! },
    });
    stores.push([`S3 (${s3.kind})`, new S3Store(s3Client, s3.env.S3_BUCKET!), s3.env]);
  }
  const world = makeWorld('sparse').bytes;
  const bootRows: Array<Array<string>> = [];
  let replayMs = 0;
  if (PARTS.has(3)) {
    for (const [label, store, env] of stores) {
      await seed(store, 'snapshot-only/', world, 0, 0);
      await seed(store, 'ten-minutes/', world, 600, 100);
      const alone = await bootMs(label, { ...env, S3_PREFIX: 'snapshot-only/' });
      const replayed = await bootMs(label, { ...env, S3_PREFIX: 'ten-minutes/' });
      bootRows.push([label, fmtMs(alone), fmtMs(replayed), fmtMs(replayed - alone)]);
      replayMs = Math.max(replayMs, replayed - alone);
    }
    table('Boot (spawn to listening) from a 64 MiB sparse snapshot, alone and with 600 change sets (10 min at 100 writes/s)', ['store', 'snapshot alone', 'with 10 min of changes', 'replay'], bootRows);
    v.push({ target: 'replaying 10 minutes of changes at 100 writes/s adds under 5 s to a boot', measured: fmtMs(replayMs), pass: replayMs < 5000 });
  }

  // 4. Restore peak memory.
  const memRows: Array<Array<string>> = [];
  if (PARTS.has(4)) {
    for (const cells of BIG ? [16_777_216, 268_435_456] : [16_777_216]) {
      const bytes = cells * 4;
      const folder = mkdtempSync(join(workDir(), 'memory-'));
      const store = new FileStore(folder);
      const random = makeWorld('random', cells).bytes;
      await seed(store, 'world/', random, 0, 0);
      const env = { DATA_DIR: folder, CUBE_CELLS: String(cells) };
      const empty = await peakBoot({ ...env, S3_PREFIX: 'empty/' });
      const full = await peakBoot({ ...env, S3_PREFIX: 'world/' });
      const beyond = full - empty;
      memRows.push([fmtMiB(bytes), fmtMiB(empty), fmtMiB(full), fmtMiB(beyond), fmtMiB(bytes + 64 * MiB)]);
      v.push({ target: `restore of a ${fmtMiB(bytes)} world peaks at <= world + 64 MiB beyond the idle process`, measured: fmtMiB(beyond), pass: beyond <= bytes + 64 * MiB });
    }
    table('Boot peak memory (VmHWM) from a snapshot of random bytes, folder store', ['world', 'empty world', 'restored world', 'beyond the empty one', 'target'], memRows);
  }

  // 5. Time travel over an hour of history.
  const travelRows: Array<Array<string>> = [];
  const attributionRows: Array<Array<string>> = [];
  if (PARTS.has(5)) {
    for (const [label, store, env] of stores) {
      const prefix = 'one-hour/';
      const timeline = await seedHour(store, prefix, world);
      // BACKUP_RETAIN at its default: startS3's 2 would prune all but the last 20 minutes of the hour at boot.
      const server = await startCubecache(`travel-${label}`, { env: { ...env, S3_PREFIX: prefix, SHIP_INTERVAL_SECONDS: '1', BACKUP_RETAIN: '24' } });
      await server.waitForEvent('listening');
      const box: Array<{ start: number; count: number }> = [];
      for (let z = 0; z < 20; z++) for (let y = 0; y < 20; y++) box.push({ start: 100 + 256 * (100 + y) + 65536 * (10 + z), count: 20 });
      const restore = async (at: number, ranges?: typeof box) => {
        const started = performance.now();
        const answer = await httpJson(`${server.url}/restore`, { body: JSON.stringify(ranges ? { at: new Date(at).toISOString(), ranges } : { at: new Date(at).toISOString() }) });
        if (answer.status !== 200) throw new Error(`restore answered ${answer.status} ${JSON.stringify(answer.json)}`);
        return performance.now() - started;
      };
      const timed = async (what: string, path: string, body?: unknown) => {
        const started = performance.now();
        const answer = await httpJson(`${server.url}${path}`, body === undefined ? {} : { body: JSON.stringify(body) });
        if (answer.status !== 200) throw new Error(`${what} answered ${answer.status} ${JSON.stringify(answer.json)}`);
        return { ms: performance.now() - started, json: answer.json };
      };
      const hourAgo = new Date(timeline.start + 1000).toISOString();
      const byPlayer = await timed('history by player', `/history?by=0123456789ABCDEF&since=${hourAgo}&limit=100`);
      const byRegion = await timed('history of a region', `/history?start=${box[0]!.start}&count=65536&since=${hourAgo}&limit=100`);
      const preview = await timed('rollback preview', '/rollback', { by: GRIEFER, since: hourAgo, preview: true });
      const rolled = await timed('rollback', '/rollback?by=bench-moderator', { by: GRIEFER, since: hourAgo });
      attributionRows.push([label, fmtMs(byPlayer.ms), fmtMs(byRegion.ms), `${fmtMs(preview.ms)} (${fmtInt(preview.json.restored)} cells, ${fmtInt(preview.json.skipped)} skipped)`, fmtMs(rolled.ms)]);
      const regionRecent = await restore(Date.now() - 10 * 60_000, box);
      const regionWorst = await restore(timeline.lastSnapshotAt - 1000, box);
      const whole = await restore(timeline.start + 30_000);
      travelRows.push([label, fmtMs(regionRecent), fmtMs(regionWorst), fmtMs(whole)]);
      await server.stop();
    }
    table('Restore to an instant, one hour of history at 100 writes/s (3,600 change sets, a 64 MiB sparse world, a snapshot every 10 min)',
      ['store', '20x20x20 region, 10 min back', 'the region, 599 change sets to replay', 'whole world, 1 h back'], travelRows);
    table(`Attribution over the same hour (the griefer made ${fmtInt(GRIEFER_CHANGES)} of the 360,000 changes)`,
      ['store', 'one page of a player\'s history', 'one page of a 65,536-cell region\'s history', 'rollback preview', 'rollback'], attributionRows);
  }
  // 6. The costs of the past over the same hour: a batch of reads at 4,096 instants, and a rollback of 2 million cells.
  if (PARTS.has(6)) {
    const [label, store, env] = stores[0]!;
    const prefix = 'past-costs/';
    const timeline = await seedHour(store, prefix, world);
    const server = await startCubecache(`past-${label}`, { env: { ...env, S3_PREFIX: prefix, SHIP_INTERVAL_SECONDS: '1' }, nodeArgs: profileArgs('past-costs') });
    await server.waitForEvent('listening');
    const post = async (what: string, path: string, body: string) => {
      const answer = await http(`${server.url}${path}`, { body });
      if (answer.status !== 200) throw new Error(`${what} answered ${answer.status} ${answer.body.toString('utf8').slice(0, 300)}`);
      return answer;
    };
    // Instants spread evenly over the hour, each read at a random cell.
    const first = timeline.start + 1000;
    const span = Date.now() - 1000 - first;
    const readAt = (n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ index: Math.floor(Math.random() * world.byteLength / 4), at: new Date(first + Math.floor((i * span) / Math.max(1, n - 1))).toISOString() })));
    const one = median([await post('one at read', '/request', readAt(1)), await post('one at read', '/request', readAt(1)), await post('one at read', '/request', readAt(1))].map((a) => a.ms));
    const batches = [];
    for (let round = 0; round < ROUNDS; round++) batches.push((await post('batch of at reads', '/request', readAt(4096))).ms);
    const batch = median(batches);
    table('Reads of the past over one hour at 100 writes/s (a 64 MiB sparse world, folder store; medians)', ['one read at one instant (baseline)', `a batch of 4,096 reads at 4,096 instants (${ROUNDS} rounds)`, 'ratio'],
      [[fmtMs(one), fmtMs(batch), `${fmt(batch / one, 1)}x`]]);
    v.push({ target: 'a batch of 4,096 at reads at 4,096 instants over the hour in under 2 s', measured: fmtMs(batch), pass: batch < 2000 });

    // A player's 2,097,000-cell range write (just under a change set's 8 MiB), then its rollback over the hour.
    const cells = 2_097_000;
    const range = new Uint8Array(cells * 4).fill(77);
    const put = await http(`${server.url}/cells?start=1000000&by=op2`, { method: 'PUT', body: range, headers: { 'Content-Type': 'application/octet-stream' } });
    if (put.status !== 200) throw new Error(`PUT /cells answered ${put.status}`);
    const since = new Date(first).toISOString();
    const sampler = new RssSampler(server.pid, 10);
    const rollbackRows: Array<Array<string>> = [];
    const measure = async (what: string, body: unknown) => {
      await sleep(1500); // the shipment of what came before, out of the window
      const before = sampler.sampleNow();
      const started = performance.now();
      const answer = await post(what, what.includes('rollback ') && !what.includes('preview') ? '/rollback?by=bench-moderator' : '/rollback', JSON.stringify(body));
      const peak = sampler.window(started).peak;
      const json = JSON.parse(answer.body.toString('utf8')) as { restored: number; skipped: number };
      rollbackRows.push([what, fmtMs(answer.ms), fmtMiB(Math.max(0, peak - before)), `${fmtInt(json.restored)} / ${fmtInt(json.skipped)}`, `${fmtInt(answer.body.byteLength)} B`]);
      return { ms: answer.ms, extra: peak - before, bytes: answer.body.byteLength };
    };
    await measure(`preview of the griefer's ${fmtInt(GRIEFER_CHANGES)} scattered cells (baseline)`, { by: GRIEFER, since, preview: true });
    const preview = await measure(`preview of ${fmtInt(cells)} cells`, { by: 'op2', since, preview: true });
    const rolled = await measure(`rollback of ${fmtInt(cells)} cells`, { by: 'op2', since });
    sampler.stop();
    table('Rollback over the same hour (plans replay the hour twice: the author\'s cells, then their values)', ['what', 'time', 'peak RSS beyond before', 'restored / skipped', 'answer'], rollbackRows);
    v.push({ target: `a rollback of ${fmtInt(cells)} cells over the hour in under 5 s`, measured: fmtMs(rolled.ms), pass: rolled.ms < 5000 });
    v.push({ target: 'its peak extra memory under a world (64 MiB)', measured: fmtMiB(Math.max(preview.extra, rolled.extra)), pass: Math.max(preview.extra, rolled.extra) < world.byteLength });
    v.push({ target: 'its answer under 1 MB', measured: `${fmtInt(Math.max(preview.bytes, rolled.bytes))} B`, pass: Math.max(preview.bytes, rolled.bytes) < 1_000_000 });
    await server.stop();
  }
  verdicts(v);
});

/**
 * A prefix holding an hour of history ending now: 3,600 change sets of 100 single-cell changes, one a second,
 * and a snapshot every 10 minutes of the world as those changes leave it, committed as a server would.
 */
async function seedHour(store: BlobStore, prefix: string, base: Uint8Array): Promise<{ start: number; lastSnapshotAt: number }> {
  const start = Date.now() - 3_600_000 - 5000;
  // Commits are placed in time by their committedAt (replay.ts, placedAt): each is committed at its second of the hour.
  let clock = start;
  const commits = new CommitLog(store, prefix, silent, () => clock);
  const model = base.slice();
  const cells = model.byteLength / 4;
  const lineage = 'be0cbe0cbe0cbe0d';
  let lsn = 0;
  let lastSnapshotAt = start;
  const refs: Array<Record<string, unknown>> = [];
  let griefed = 0;
  for (let s = 0; s < 3600; s++) {
    const at = start + s * 1000;
    clock = at;
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
      // Three of each second's hundred are the griefer's, until they made GRIEFER_CHANGES.
      const by = i < 3 && griefed < GRIEFER_CHANGES ? (griefed++, GRIEFER) : i % 4 ? '0123456789ABCDEF' : '';
      changes.push({ lsn: ++lsn, at: at + i * 10, by, runs: [{ start: index, bytes }] });
    }
    const packed = await packChangeSet(batchOf(changes));
    clock = at + 999;
    await commits.append({
      kind: 'changes', reason: 'bench', name: `${s}`, lineage, lsn, fromLsn: changes[0]!.lsn, toLsn: lsn, count: changes.length, firstAt: new Date(changes[0]!.at).toISOString(),
      lastAt: new Date(changes.at(-1)!.at).toISOString(), bytes: packed.bytes, compressedBytes: packed.body.byteLength, sha256: packed.sha256, inline: packed.body.toString('base64'),
    } as never);
  }
  return { start, lastSnapshotAt };
}

/** `count` writes a second to random cells for `ms`, from a few keep-alive connections; resolves when done. */
async function steadyWrites(url: string, perSecond: number, ms: number): Promise<void> {
  const { Agent, request } = await import('node:http');
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const started = performance.now();
  let sent = 0;
  const one = () => new Promise<void>((resolve, reject) => {
    const body = JSON.stringify({ action: 1, index: Math.floor(Math.random() * 16_777_216), category: 1 + (sent++ % 200) });
    const req = request(`${url}/request`, { method: 'POST', agent, headers: { Authorization: AUTH_HEADER, 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('error', reject);
    req.end(body);
  });
  while (performance.now() - started < ms) {
    const due = Math.floor(((performance.now() - started) / 1000) * perSecond) - sent;
    const batch: Array<Promise<void>> = [];
    for (let i = 0; i < due; i++) batch.push(one());
    await Promise.all(batch);
    await sleep(5);
  }
  agent.destroy();
}

/** A prefix holding a snapshot of `world` and then `sets` change sets of `perSet` single-cell changes each, committed as a server would. */
async function seed(store: BlobStore, prefix: string, world: Uint8Array, sets: number, perSet: number): Promise<void> {
  const commits = new CommitLog(store, prefix, silent, Date.now);
  const name = `${new Date().toISOString().replace(/[-:.]/g, '')}-bench`;
  const key = `${prefix}backups/${name}.gz`;
  const encoded = encodeBackup(world);
  await store.put(key, encoded.body);
  const info = encoded.result();
  const lineage = 'be0cbe0cbe0cbe0c';
  await commits.append({ kind: 'snapshot', reason: 'bench', name, key, createdAt: new Date().toISOString(), cells: world.byteLength / 4, bytes: info.bytes, compressedBytes: info.compressedBytes, sha256: info.sha256, lineage, lsn: 0, snapshotLsn: 0, replayFrom: 0, history: [] } as never);
  let lsn = 0;
  const at = Date.now() - sets * 1000;
  const cells = world.byteLength / 4;
  for (let s = 0; s < sets; s++) {
    const changes: Change[] = [];
    for (let i = 0; i < perSet; i++) {
      lsn++;
      changes.push({ lsn, at: at + s * 1000 + i * 10, by: i % 4 ? '0123456789ABCDEF' : '', runs: [{ start: Math.floor(Math.random() * cells), bytes: Uint8Array.of(1 + (i % 200), 0, 1, 2) }] });
    }
    const packed = await packChangeSet(batchOf(changes));
    await commits.append({
      kind: 'changes', reason: 'bench', name: `${s}`, lineage, lsn, fromLsn: changes[0]!.lsn, toLsn: lsn, count: perSet, firstAt: new Date(changes[0]!.at).toISOString(),
      lastAt: new Date(changes.at(-1)!.at).toISOString(), bytes: packed.bytes, compressedBytes: packed.body.byteLength, sha256: packed.sha256, inline: packed.body.toString('base64'),
    } as never);
  }
}

/** Milliseconds from spawn to `listening` of a server booting with `env` (a fresh log folder each time), median of 3. */
async function bootMs(label: string, env: Record<string, string>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const server = await startCubecache(`boot-${label}`, { env: { ...env, SHIP_INTERVAL_SECONDS: '0' } });
    const listening = await server.waitForEvent('listening');
    times.push(listening.at - server.spawnedAt);
    await server.stop();
  }
  return median(times);
}

/** The peak resident memory (VmHWM) of a boot with `env`, read once it listens. */
async function peakBoot(env: Record<string, string>): Promise<number> {
  const server = await startCubecache('boot-memory', { env: { ...env, SHIP_INTERVAL_SECONDS: '0' } });
  await server.waitForEvent('listening');
  await sleep(200);
  const { hwm } = memory(server.pid);
  await server.stop();
  return hwm;
}
