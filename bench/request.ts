/**
 * Single-cell POST /request: read and write requests/s, p50/p99 latency and server CPU per request, of
 * cubecache (a real process: node dist/server.js) against a bare node:http baseline doing the same minimal
 * work (bench/baseline-server.ts) and against the peer a user could deploy instead, Redis behind Webdis
 * (bench/peer-redis.ts: GETRANGE/SETRANGE of 4 bytes, Basic auth, AOF everysec), rotating the order of the
 * three in rounds. Target: cubecache >= 0.9 of the baseline; the ratio to the peer is reported.
 *
 *   npm run bench:request            BENCH_SECONDS=5 BENCH_ROUNDS=5 BENCH_CONNECTIONS=64 BENCH_THREADS=2
 *   BENCH_PROFILE=cpu npm run bench:request   (--cpu-prof of both server processes; summarise with bench/profile.ts)
 *   BENCH_AGAINST=/path/to/checkout npm run bench:request   (also an earlier build, built there, in the same
 *   rotation: "no regression against main before the change" in one run; the ratio to it is reported)
 */
import {
  cpuMs, ensureBuilt, fmt, fmtInt, fmtMs, http, main, median, profileArgs, RUN_SECONDS, runWrk, sleep, startBaseline,
  gitHead, startCubecache, table, verdicts, wrkBinary, wrkErrors, wrkScript, type Mode, type WrkResult,
} from './support.js';
import { redisPeerAvailable, startRedisPeer } from './peer-redis.js';

// Five rounds: on a shared 2-core VM one round in three can run at half speed; the median of five holds.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const TARGET = 0.9;
const AGAINST = process.env.BENCH_AGAINST;

type Name = 'cubecache' | 'baseline' | 'redis+webdis' | 'earlier build';
interface Run { server: Name; mode: Mode; round: number; wrk: WrkResult; cpuUsPerRequest: number }

await main('bench:request: single-cell POST /request, cubecache vs a bare node:http baseline', async () => {
  wrkBinary();
  console.log(`cubecache runs as: ${ensureBuilt().how}; baseline: node <transpiled bench/baseline-server.ts>`);
  const cube = await startCubecache('cubecache', { nodeArgs: profileArgs('request') });
  const base = await startBaseline(undefined, profileArgs('request-baseline'));
  if (!redisPeerAvailable()) console.log('!! redis-server/webdis not installed (apt-get install redis-server webdis): the peer is left out');
  const redis = redisPeerAvailable() ? await startRedisPeer() : undefined;
  if (redis) console.log(`peer: redis-server (AOF everysec) behind webdis at ${redis.url}`);
  // Where wrk sends, and whose CPU counts.
  const targets = new Map<Name, { url: string; pids: number[]; script: Record<Mode, string> }>();
  const requestScripts = { read: wrkScript({ kind: 'request', mode: 'read' }), write: wrkScript({ kind: 'request', mode: 'write' }), mix: wrkScript({ kind: 'request', mode: 'mix' }) };
  targets.set('cubecache', { url: `${cube.url}/request`, pids: [cube.pid], script: requestScripts });
  targets.set('baseline', { url: `${base.url}/request`, pids: [base.pid], script: requestScripts });
  if (redis) {
    const webdisScripts = { read: wrkScript({ kind: 'webdis', mode: 'read' }), write: wrkScript({ kind: 'webdis', mode: 'write' }), mix: wrkScript({ kind: 'webdis', mode: 'mix' }) };
    targets.set('redis+webdis', { url: `${redis.url}/`, pids: redis.pids, script: webdisScripts });
    const w = await http(`${redis.url}/SETRANGE/world/49380/%09%01%02%03`);
    const r = await http(`${redis.url}/GETRANGE/world/49380/49383`);
    if (w.status !== 200 || JSON.parse(r.body.toString()).GETRANGE !== '\u0009\u0001\u0002\u0003') throw new Error(`redis+webdis answered ${w.status} ${r.status} ${r.body}`);
    const unauth = await http(`${redis.url}/GETRANGE/world/0/3`, { auth: false });
    if (unauth.status === 200) throw new Error('redis+webdis: no auth answered 200');
  }
  const earlier = AGAINST ? await startCubecache('earlier build', { root: AGAINST }) : undefined;
  if (earlier) {
    console.log(`earlier build: ${AGAINST} (${gitHead(AGAINST!)})`);
    targets.set('earlier build', { url: `${earlier.url}/request`, pids: [earlier.pid], script: requestScripts });
  }
  const names = [...targets.keys()];

  // Both must give the same answers, or the comparison means nothing.
  for (const s of [cube, base, ...(earlier ? [earlier] : [])]) {
    const w = await http(`${s.url}/request`, { body: '{"action":1,"index":12345,"category":9,"rotation":1,"sideA":2,"sideB":3}' });
    const r = await http(`${s.url}/request`, { body: '{"action":0,"index":12345}' });
    const expected = '{"status":200,"category":9,"rotation":1,"sideA":2,"sideB":3}';
    if (w.status !== 200 || r.body.toString() !== expected) throw new Error(`${s.name} answered ${w.status} ${r.status} ${r.body}`);
    const unauth = await http(`${s.url}/request`, { body: '{}', auth: false });
    if (unauth.status !== 401) throw new Error(`${s.name}: no auth answered ${unauth.status}`);
  }

  console.log('warm-up: 2 s of mixed load on each server (not counted)');
  for (const target of targets.values()) await runWrk(target.url, target.script.mix, 2);

  const runs: Run[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const mode of ['read', 'write'] as const) {
      // A B C in odd rounds, C B A in even ones, so a drift of the machine does not always favour one side.
      const order = round % 2 === 1 ? names : [...names].reverse();
      for (const name of order) {
        const target = targets.get(name)!;
        const cpuNow = () => target.pids.reduce((sum, pid) => sum + cpuMs(pid), 0);
        const cpu0 = cpuNow();
        const wrk = await runWrk(target.url, target.script[mode], RUN_SECONDS);
        const cpu = cpuNow() - cpu0;
        const err = wrkErrors(wrk);
        if (err) console.log(`!! ${name} ${mode} round ${round}: ${err}`);
        runs.push({ server: name, mode, round, wrk, cpuUsPerRequest: (cpu * 1000) / wrk.requests });
        console.log(`round ${round} ${mode.padEnd(5)} ${name.padEnd(12)} ${fmtInt(wrk.rps).padStart(7)} req/s  p50 ${fmtMs(wrk.p50)}  p99 ${fmtMs(wrk.p99)}  cpu ${fmt((cpu * 1000) / wrk.requests)} µs/req`);
        await sleep(300);
      }
    }
  }

  const rows: Array<Array<string | number>> = [];
  for (const r of runs) {
    rows.push([String(r.round), r.mode, r.server, fmtInt(r.wrk.rps), fmtMs(r.wrk.p50), fmtMs(r.wrk.p99), fmtMs(r.wrk.max), fmt(r.cpuUsPerRequest)]);
  }
  table('Every run', ['round', 'mode', 'server', 'req/s', 'p50', 'p99', 'max', 'server CPU µs/req'], rows);

  const pick = (server: string, mode: Mode) => runs.filter((r) => r.server === server && r.mode === mode);
  const med = (list: Run[], f: (r: Run) => number) => median(list.map(f));
  const rps = (server: Name, mode: Mode) => med(pick(server, mode), (r) => r.wrk.rps);
  const cpuPer = (server: Name, mode: Mode) => med(pick(server, mode), (r) => r.cpuUsPerRequest);
  const perRound = (other: Name, mode: Mode) => pick('cubecache', mode).map((cr) => cr.wrk.rps / pick(other, mode).find((o) => o.round === cr.round)!.wrk.rps);
  const summary: Array<Array<string | number>> = [];
  for (const mode of ['read', 'write'] as const) {
    for (const name of names) {
      summary.push([mode, name, fmtInt(rps(name, mode)),
        name === 'cubecache' ? '-' : `${fmt(rps('cubecache', mode) / rps(name, mode), 2)}x`,
        fmtMs(med(pick(name, mode), (r) => r.wrk.p50)), fmtMs(med(pick(name, mode), (r) => r.wrk.p99)), fmt(cpuPer(name, mode))]);
    }
  }
  table(`Medians of ${ROUNDS} rounds (${RUN_SECONDS} s each); ratio = cubecache req/s / this server's (CPU: of all its processes)`,
    ['mode', 'server', 'req/s', 'cubecache / this', 'p50', 'p99', 'server CPU µs/req'], summary);

  const list = (xs: number[]) => xs.map((p) => fmt(p, 2)).join(', ');
  verdicts([
    ...(['read', 'write'] as const).map((mode) => ({
      target: `${mode}: cubecache req/s >= ${TARGET} x baseline`,
      measured: `${fmt(rps('cubecache', mode) / rps('baseline', mode), 2)}x (rounds ${list(perRound('baseline', mode))}; CPU per request ${fmt(cpuPer('cubecache', mode) / cpuPer('baseline', mode), 2)}x the baseline's)`,
      pass: rps('cubecache', mode) / rps('baseline', mode) >= TARGET,
    })),
  ]);
  if (earlier) {
    table('Against the earlier build (BENCH_AGAINST; reported, no target)', ['mode', 'cubecache / earlier build req/s', 'rounds', 'CPU per request cubecache / earlier build'],
      (['read', 'write'] as const).map((mode) => [mode, `${fmt(rps('cubecache', mode) / rps('earlier build', mode), 2)}x`, list(perRound('earlier build', mode)), `${fmt(cpuPer('cubecache', mode) / cpuPer('earlier build', mode), 2)}x`]));
  }
  if (targets.has('redis+webdis')) {
    table('Against the peer a user could deploy instead (reported, no target)', ['mode', 'cubecache / redis+webdis req/s', 'rounds', 'CPU per request cubecache / redis+webdis'],
      (['read', 'write'] as const).map((mode) => [mode, `${fmt(rps('cubecache', mode) / rps('redis+webdis', mode), 2)}x`, list(perRound('redis+webdis', mode)), `${fmt(cpuPer('cubecache', mode) / cpuPer('redis+webdis', mode), 2)}x`]));
  }

  await cube.stop();
  await base.stop();
  await earlier?.stop();
  await redis?.stop();
});
