/**
 * Batches and binary ranges: cells/s through POST /request with single commands and with JSON arrays of
 * 1, 16, 256 and 4096 commands (random indexes), reads and writes; MB/s through GET and PUT /cells for
 * 4 KiB and 1 MiB random ranges (wrk) and the whole 64 MiB world (one request at a time).
 * Target: batches of 256 move >= 20x the cells/s of single-cell requests (same run, same settings).
 *
 *   npm run bench:batch        BENCH_SECONDS=5 BENCH_CONNECTIONS=64 BENCH_THREADS=2
 */
import {
  CONNECTIONS, cpuMs, ensureBuilt, fillWorld, fmt, fmtInt, fmtMs, http, main, makeWorld, median, profileArgs, RUN_SECONDS,
  runWrk, sleep, startCubecache, table, verdicts, WORLD_BYTES, wrkBinary, wrkErrors, wrkScript,
} from './support.js';

const TARGET = 20;
const SIZES = [0, 1, 16, 256, 4096]; // 0: a single command (a JSON object, the seed's protocol)
const MB = 1e6;

await main('bench:batch: cells/s through batches, MB/s through binary ranges', async () => {
  wrkBinary();
  console.log(`cubecache runs as: ${ensureBuilt().how}`);
  const server = await startCubecache('cubecache', { nodeArgs: profileArgs('batch') });

  // Sanity: a batch answers an array of the right length.
  const probe = await http(`${server.url}/request`, { body: '[{"action":1,"index":5,"category":7},{"index":5}]' });
  if (probe.status !== 200 || JSON.parse(probe.body.toString()).length !== 2) throw new Error(`batch answered ${probe.status} ${probe.body}`);

  console.log('warm-up: 2 s of single-cell mixed load (not counted)');
  await runWrk(`${server.url}/request`, wrkScript({ kind: 'request', mode: 'mix' }), 2);

  const cellsPerSecond: Record<string, Record<number, number>> = { read: {}, write: {} };
  const rows: Array<Array<string | number>> = [];
  for (const mode of ['read', 'write'] as const) {
    for (const size of SIZES) {
      const connections = size >= 4096 ? 16 : CONNECTIONS;
      const script = wrkScript({ kind: 'request', mode, batch: size });
      const cpu0 = cpuMs(server.pid);
      const r = await runWrk(`${server.url}/request`, script, RUN_SECONDS, { connections });
      const cpu = cpuMs(server.pid) - cpu0;
      const cells = Math.max(1, size);
      const err = wrkErrors(r);
      if (err) console.log(`!! ${mode} batch ${size}: ${err}`);
      cellsPerSecond[mode]![size] = r.rps * cells;
      const label = size === 0 ? 'single (object)' : `batch of ${size}`;
      rows.push([mode, label, connections, fmtInt(r.rps), fmtInt(r.rps * cells), fmtMs(r.p50), fmtMs(r.p99), fmt((cpu * 1000) / (r.requests * cells), 2)]);
      console.log(`${mode} ${label}: ${fmtInt(r.rps * cells)} cells/s`);
      await sleep(300);
    }
  }
  table('POST /request: cells/s by batch size', ['mode', 'body', 'conns', 'requests/s', 'cells/s', 'p50', 'p99', 'server CPU µs/cell'], rows.map((r) => r.map(String)));

  // Binary ranges.
  const rangeRows: Array<Array<string>> = [];
  for (const [kind, verb] of [['cells-get', 'GET'], ['cells-put', 'PUT']] as const) {
    for (const rangeCells of [1024, 262_144]) {
      const bytes = rangeCells * 4;
      const connections = bytes >= 1 << 20 ? 16 : CONNECTIONS;
      const r = await runWrk(`${server.url}/cells`, wrkScript({ kind, rangeCells }), RUN_SECONDS, { connections });
      const err = wrkErrors(r);
      if (err) console.log(`!! ${verb} ${bytes} B: ${err}`);
      rangeRows.push([`${verb} /cells`, `${bytes >= 1 << 20 ? `${bytes / (1 << 20)} MiB` : `${bytes / 1024} KiB`} (random start)`, String(connections), fmtInt(r.rps), `${fmt((r.rps * bytes) / MB)} MB/s`, fmtMs(r.p50), fmtMs(r.p99)]);
      console.log(`${verb} ${bytes} B ranges: ${fmt((r.rps * bytes) / MB)} MB/s`);
      await sleep(300);
    }
  }
  // The whole world, one request at a time (as an export or an import would).
  const world = makeWorld('random').bytes;
  await fillWorld(server, world); // warm
  const puts: number[] = [];
  const gets: number[] = [];
  for (let i = 0; i < 3; i++) {
    puts.push(await fillWorld(server, world));
    const answer = await http(`${server.url}/cells`);
    if (answer.status !== 200 || answer.body.length !== WORLD_BYTES) throw new Error(`GET /cells: ${answer.status}, ${answer.body.length} bytes`);
    if (i === 0 && !answer.body.equals(Buffer.from(world.buffer, world.byteOffset, world.byteLength))) throw new Error('GET /cells did not give back the world PUT');
    gets.push(answer.ms);
  }
  rangeRows.push(['GET /cells', '64 MiB (whole world)', '1', fmt(1000 / median(gets), 2), `${fmt(WORLD_BYTES / MB / (median(gets) / 1000))} MB/s`, fmtMs(median(gets)), '-']);
  rangeRows.push(['PUT /cells', '64 MiB (whole world)', '1', fmt(1000 / median(puts), 2), `${fmt(WORLD_BYTES / MB / (median(puts) / 1000))} MB/s`, fmtMs(median(puts)), '-']);
  // Reference: a 64 MiB memory copy in this process.
  const copies: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    world.slice();
    copies.push(performance.now() - t);
  }
  rangeRows.push(['(reference) memory copy', '64 MiB Uint8Array.slice()', '-', '-', `${fmt(WORLD_BYTES / MB / (median(copies) / 1000))} MB/s`, fmtMs(median(copies)), '-']);
  table('Binary ranges: GET and PUT /cells (MB = 10^6 bytes)', ['route', 'range', 'conns', 'requests/s', 'throughput', 'p50 / time', 'p99'], rangeRows);

  const ratio = (mode: string) => cellsPerSecond[mode]![256]! / cellsPerSecond[mode]![0]!;
  table('Ratios (cells/s of a batch / cells/s of single commands)', ['mode', 'batch 1', 'batch 16', 'batch 256', 'batch 4096'],
    ['read', 'write'].map((m) => [m, ...[1, 16, 256, 4096].map((s) => `${fmt(cellsPerSecond[m]![s]! / cellsPerSecond[m]![0]!, 2)}x`)]));
  verdicts(['read', 'write'].map((mode) => ({
    target: `${mode}: batch-256 cells/s >= ${TARGET} x single-cell cells/s`,
    measured: `${fmt(ratio(mode), 1)}x (${fmtInt(cellsPerSecond[mode]![256]!)} vs ${fmtInt(cellsPerSecond[mode]![0]!)} cells/s)`,
    pass: ratio(mode) >= TARGET,
  })));
  await server.stop();
});
