/**
 * Single-cell POST /request: read and write requests/s, p50/p99 latency and server CPU per request, of
 * cubecache (a real process: node dist/server.js) against a bare node:http baseline doing the same minimal
 * work (bench/baseline-server.ts), alternating the two in rounds. Target: cubecache >= 0.85 of the baseline.
 *
 *   npm run bench:request            BENCH_SECONDS=5 BENCH_ROUNDS=3 BENCH_CONNECTIONS=64 BENCH_THREADS=2
 *   BENCH_PROFILE=cpu npm run bench:request   (--cpu-prof of both server processes; summarise with bench/profile.ts)
 */
import {
  cpuMs, ensureBuilt, fmt, fmtInt, fmtMs, http, main, median, profileArgs, RUN_SECONDS, runWrk, sleep, startBaseline,
  startCubecache, table, verdicts, wrkBinary, wrkErrors, wrkScript, type Mode, type ServerProc, type WrkResult,
} from './support.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TARGET = 0.85;

interface Run { server: 'cubecache' | 'baseline'; mode: Mode; round: number; wrk: WrkResult; cpuUsPerRequest: number }

await main('bench:request: single-cell POST /request, cubecache vs a bare node:http baseline', async () => {
  wrkBinary();
  console.log(`cubecache runs as: ${ensureBuilt().how}; baseline: node <transpiled bench/baseline-server.ts>`);
  const cube = await startCubecache('cubecache', { nodeArgs: profileArgs('request') });
  const base = await startBaseline(undefined, profileArgs('request-baseline'));
  const servers = { cubecache: cube, baseline: base };

  // Both must give the same answers, or the comparison means nothing.
  for (const s of [cube, base]) {
    const w = await http(`${s.url}/request`, { body: '{"action":1,"index":12345,"category":9,"rotation":1,"sideA":2,"sideB":3}' });
    const r = await http(`${s.url}/request`, { body: '{"action":0,"index":12345}' });
    const expected = '{"status":200,"category":9,"rotation":1,"sideA":2,"sideB":3}';
    if (w.status !== 200 || r.body.toString() !== expected) throw new Error(`${s.name} answered ${w.status} ${r.status} ${r.body}`);
    const unauth = await http(`${s.url}/request`, { body: '{}', auth: false });
    if (unauth.status !== 401) throw new Error(`${s.name}: no auth answered ${unauth.status}`);
  }

  const scripts = { read: wrkScript({ kind: 'request', mode: 'read' }), write: wrkScript({ kind: 'request', mode: 'write' }), mix: wrkScript({ kind: 'request', mode: 'mix' }) };
  console.log('warm-up: 2 s of mixed load on each server (not counted)');
  for (const s of [cube, base]) await runWrk(`${s.url}/request`, scripts.mix, 2);

  const runs: Run[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const mode of ['read', 'write'] as const) {
      // A B in odd rounds, B A in even ones, so a drift of the machine does not always favour one side.
      const order = round % 2 === 1 ? (['cubecache', 'baseline'] as const) : (['baseline', 'cubecache'] as const);
      for (const name of order) {
        const s: ServerProc = servers[name];
        const cpu0 = cpuMs(s.pid);
        const wrk = await runWrk(`${s.url}/request`, scripts[mode], RUN_SECONDS);
        const cpu = cpuMs(s.pid) - cpu0;
        const err = wrkErrors(wrk);
        if (err) console.log(`!! ${name} ${mode} round ${round}: ${err}`);
        runs.push({ server: name, mode, round, wrk, cpuUsPerRequest: (cpu * 1000) / wrk.requests });
        console.log(`round ${round} ${mode.padEnd(5)} ${name.padEnd(9)} ${fmtInt(wrk.rps).padStart(7)} req/s  p50 ${fmtMs(wrk.p50)}  p99 ${fmtMs(wrk.p99)}  cpu ${fmt((cpu * 1000) / wrk.requests)} µs/req`);
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
  const summary: Array<Array<string | number>> = [];
  const ratios: Record<string, { rps: number; perRound: number[]; cpu: number }> = {};
  for (const mode of ['read', 'write'] as const) {
    const c = pick('cubecache', mode);
    const b = pick('baseline', mode);
    const perRound = c.map((cr) => cr.wrk.rps / b.find((br) => br.round === cr.round)!.wrk.rps);
    const med = (list: Run[], f: (r: Run) => number) => median(list.map(f));
    ratios[mode] = { rps: med(c, (r) => r.wrk.rps) / med(b, (r) => r.wrk.rps), perRound, cpu: med(c, (r) => r.cpuUsPerRequest) / med(b, (r) => r.cpuUsPerRequest) };
    summary.push([mode,
      fmtInt(med(c, (r) => r.wrk.rps)), fmtInt(med(b, (r) => r.wrk.rps)), `${fmt(ratios[mode]!.rps, 2)}x`,
      `${fmtMs(med(c, (r) => r.wrk.p50))} / ${fmtMs(med(b, (r) => r.wrk.p50))}`,
      `${fmtMs(med(c, (r) => r.wrk.p99))} / ${fmtMs(med(b, (r) => r.wrk.p99))}`,
      `${fmt(med(c, (r) => r.cpuUsPerRequest))} / ${fmt(med(b, (r) => r.cpuUsPerRequest))} (${fmt(ratios[mode]!.cpu, 2)}x)`,
    ]);
  }
  table(`Medians of ${ROUNDS} rounds (${RUN_SECONDS} s each); ratio = cubecache / baseline`, ['mode', 'cubecache req/s', 'baseline req/s', 'ratio', 'p50 cubecache / baseline', 'p99 cubecache / baseline', 'server CPU µs/req cubecache / baseline'], summary);

  verdicts((['read', 'write'] as const).map((mode) => ({
    target: `${mode}: cubecache req/s >= ${TARGET} x baseline`,
    measured: `${fmt(ratios[mode]!.rps, 2)}x (rounds ${ratios[mode]!.perRound.map((p) => fmt(p, 2)).join(', ')}; CPU per request ${fmt(ratios[mode]!.cpu, 2)}x the baseline's)`,
    pass: ratios[mode]!.rps >= TARGET,
  })));

  await cube.stop();
  await base.stop();
});
