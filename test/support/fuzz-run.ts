/**
 * A seeded fuzzer against a real server (test/fuzz-*.test.ts each run one group of its generators): random,
 * edge-case and malformed requests, each judged by an independent model of the protocol (its own JSON reader, its
 * own copy of the world), sent over node:http with keep-alive for well-formed requests and over raw sockets for
 * broken framing, pipelining, early hang-ups and slow clients. Every answer must be a 4xx or a correct 200 (409
 * for a conditional write that does not hold), never a 5xx; every error is JSON naming its status; the world
 * ends byte for byte as the accepted writes left it.
 *
 * FUZZ_SEED=<n> replays a run (the seed is printed as a diagnostic and in every failure);
 * FUZZ_REQUESTS=<n> changes the length of all groups together (3000 by default, shared by their weights);
 * FUZZ_KNOWN_BUGS=none leaves out the generators of the fixed bugs (see fuzz-oracle.ts; all run by default).
 *
 * Eight workers run at once. Worker w owns the cells [w*512, (w+1)*512): everything it sends that the server
 * may accept reads and writes only its own cells, and it sends one request at a time, so the model of its
 * cells is exact whatever the other workers do.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { TestContext } from 'node:test';
import type { AppOptions } from '../../lib/app.js';
import { BATCH_BODY_LIMIT, REQUEST_BODY_LIMIT } from '../../lib/routes/request.js';
import { MAX_BATCH } from '../../lib/protocol.js';
import { openFileStore, startServer } from './app.js';
import { waitFor } from './http.js';
import { BATCH_LIMIT, BATCH_MAX, BLOCK, CELLS, HEADERS_MS, KNOWN_BUGS, preview, record, type Res, Rng, SEED, seen, SINGLE_LIMIT, TOTAL, trips, World, WORKERS, assertJson200 } from './fuzz-oracle.js';
import { annotate, checkHealth, firstDifference, GOOD_AUTH, type Probe } from './fuzz-routes.js';
import { RESET_CODES, send } from './fuzz-wire.js';
import {
  type Fuzz, type Gen, genBadBatch, genBatch, genCellsRead, genCellsWrite, genDeep, genEdge, genFastPathDuplicates, genHeaders, genHuge, genMisc,
  genMutated, genRouting, genSingle, genStructural, genWrongType, type Worker,
} from './fuzz-generators.js';
import { rawCase, runPipeline, runRawCase, runSlowSender, runStall } from './fuzz-raw.js';

/** What a step draws: a generator's probe, a raw-socket case, or a pipeline. */
type Draw = Gen | 'raw' | 'pipeline';

/** The generators by what they exercise, with their weights; each test file runs one group. */
export const GROUPS = {
  /** POST /request bodies: commands, batches, edge numbers, wrong types, mutations, nesting, limits, duplicate keys. */
  request: [
    [22, genSingle], [9, genBatch], [4, genBadBatch], [8, genEdge], [5, genWrongType], [12, genMutated], [4, genStructural], [2, genDeep],
    [1.2, genHuge], [trips('duplicates') ? 3 : 0, genFastPathDuplicates],
  ],
  /** GET and PUT /cells: ranges, query values, bodies at the world's edge. */
  cells: [[6, genCellsRead], [6, genCellsWrite]],
  /** The HTTP layer: routing, odd headers, the other routes, raw-socket framing, pipelines, and slow clients. */
  http: [[3, genMisc], [6, genRouting], [5, genHeaders], [6, 'raw'], [2.5, 'pipeline']],
} satisfies Record<string, ReadonlyArray<readonly [number, Draw]>>;
export type Group = keyof typeof GROUPS;

const weight = (entries: ReadonlyArray<readonly [number, Draw]>) => entries.reduce((sum, [w]) => sum + w, 0);

async function step(f: Fuzz, w: Worker, generators: ReadonlyArray<readonly [number, Draw]>): Promise<void> {
  const choice = w.rng.weighted(generators);
  if (choice === 'raw') {
    const c = rawCase(f, w);
    w.sent++;
    try {
      await runRawCase(f, w, c);
    } catch (err) {
      throw annotate(err, `raw: ${c.what} (${c.accept})\n  bytes: ${preview(c.bytes)}`);
    }
    return;
  }
  if (choice === 'pipeline') return runPipeline(f, w);
  let p: Probe | undefined;
  for (let tries = 0; !p && tries < 20; tries++) p = choice(f, w);
  p ??= genSingle(f, w);
  if (!p) return;
  w.sent++;
  let res: Res;
  try {
    res = await send(f.agent, f.port, p.req);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    // The server refused early and hung up while we were still sending; or it could not parse a HEAD request, so its
    // error has a body, which node:http's client (knowing it sent HEAD) takes for garbage after the answer.
    if (p.closes && (RESET_CODES.has(code) || (p.req.method === 'HEAD' && code.startsWith('HPE_')))) {
      seen.resets++;
      return;
    }
    throw annotate(err, `${p.what}: no answer (${code || 'error'})`, p.req);
  }
  try {
    record(res);
    p.judge(res);
  } catch (err) {
    throw annotate(err, p.what, p.req);
  }
}

async function runWorker(f: Fuzz, w: Worker, group: Group): Promise<void> {
  // A few slow clients, each at a random point of a worker's run, while the others keep going.
  const specials = new Map<number, [string, () => Promise<void>]>();
  const at = () => w.rng.int(Math.max(1, Math.floor(w.quota / 2)));
  if (group === 'http') {
    if (w.id >= 1 && w.id <= 3) specials.set(at(), ['a slow sender', () => runSlowSender(f, w)]);
    if (w.id === 4) specials.set(at(), ['a client that stops mid-headers', () => runStall(f, w, 'stop')]);
    if (w.id === 5) specials.set(at(), ['a client that crawls through its headers', () => runStall(f, w, 'crawl')]);
    if (w.id === 6) specials.set(at(), ['a client that sends nothing', () => runStall(f, w, 'idle')]);
  }
  for (let i = 0; w.sent < w.quota && !f.failed; i++) {
    try {
      const special = specials.get(i);
      if (special) await special[1]().catch((err: unknown) => { throw annotate(err, special[0]); });
      await step(f, w, GROUPS[group]);
    } catch (err) {
      f.failed = true;
      throw annotate(err, `[FUZZ_SEED=${SEED} worker ${w.id} step ${i}]`);
    }
  }
}

/**
 * Runs `group`'s generators against a server on production defaults for its share of FUZZ_REQUESTS, then checks
 * the server is up, the world equals the model byte for byte, /stats agrees, and every connection closes.
 * `file` is the test file, named in the replay hint; `overrides` what its server runs with besides production's.
 */
export async function runFuzz(t: TestContext, group: Group, file: string, overrides: Partial<AppOptions> = {}): Promise<void> {
  assert.equal(REQUEST_BODY_LIMIT, SINGLE_LIMIT, 'the documented single-command limit');
  assert.equal(BATCH_BODY_LIMIT, BATCH_LIMIT, 'the documented body limit');
  assert.equal(MAX_BATCH, BATCH_MAX, 'the documented batch length');
  assert.equal(CELLS % WORKERS, 0);
  t.diagnostic(`FUZZ_SEED=${SEED} (replay with FUZZ_SEED=${SEED} npm test -- ${file})${KNOWN_BUGS.size > 0 ? `, known bugs included: ${[...KNOWN_BUGS].join(', ')}` : ''}`);
  const all = Object.values(GROUPS).reduce((sum, entries) => sum + weight(entries), 0);
  const requests = Math.ceil((TOTAL * weight(GROUPS[group])) / all);

  const s = await startServer(t, await openFileStore(t), { maxLoginFailures: 1_000_000, timeouts: { headersMs: HEADERS_MS }, ...overrides });
  const agent = new Agent({ keepAlive: true, maxSockets: WORKERS });
  t.after(() => agent.destroy());
  const f: Fuzz = { world: new World(), agent, port: Number(new URL(s.url).port), failed: false };
  const started = performance.now();
  // Client and server share this event loop: how long it stalls bounds what a short headersMs can tell apart.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  t.after(() => loopDelay.disable());
  const workers: Worker[] = Array.from({ length: WORKERS }, (_, id) => {
    const rng = new Rng((SEED ^ Math.imul(id + 1, 0x9e3779b1)) >>> 0);
    const lo = id * BLOCK;
    return { id, rng, lo, hi: lo + BLOCK, hot: Array.from({ length: 8 }, () => lo + rng.int(BLOCK)), sent: 0, quota: Math.ceil(requests / WORKERS) };
  });
  const outcomes = await Promise.allSettled(workers.map((w) => runWorker(f, w, group)));
  const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failure) throw failure.reason;
  const sent = workers.reduce((sum, w) => sum + w.sent, 0);
  const seconds = (performance.now() - started) / 1000;
  loopDelay.disable();

  // The server is up, and the world is exactly what the accepted writes made it.
  const health = await send(agent, f.port, { method: 'GET', path: '/healthcheck', headers: {} });
  checkHealth(health, false);
  const cells = await send(agent, f.port, { method: 'GET', path: '/cells', headers: { Authorization: GOOD_AUTH } });
  assert.equal(cells.status, 200);
  assert.ok(Buffer.from(f.world.bytes).equals(cells.body), `the world differs from the model: ${firstDifference(f.world.bytes, cells.body)} [FUZZ_SEED=${SEED}]`);
  // Its statistics, kept up to date write by write, agree.
  const stats = assertJson200(await send(agent, f.port, { method: 'GET', path: '/stats', headers: { Authorization: GOOD_AUTH } }));
  const categories: Record<string, number> = {};
  let inUse = 0;
  for (let i = 0; i < CELLS; i++) {
    const q = f.world.get(i);
    categories[q[0]] = (categories[q[0]] ?? 0) + 1;
    if (q.some((b) => b !== 0)) inUse++;
  }
  assert.equal(stats.cellsInUse, inUse, 'cells in use');
  assert.deepEqual(stats.categories, categories, 'cells per category');
  // Every connection is gone once the client lets go of its own.
  agent.destroy();
  await waitFor('the server to close every connection', () => new Promise<boolean>((resolve) => s.app.server.getConnections((err, n) => resolve(!err && n === 0))), 10_000);

  const statuses = [...seen.statuses].sort(([a], [b]) => a - b).map(([k, v]) => `${k}×${v}`).join(' ');
  t.diagnostic(`${sent} requests in ${seconds.toFixed(1)} s by ${WORKERS} workers (event loop delay p99 ${(loopDelay.percentile(99) / 1e6).toFixed(0)} ms, max ${(loopDelay.max / 1e6).toFixed(0)} ms); answers ${statuses}`);
  if (group === 'http') t.diagnostic(`${seen.raw} raw-socket cases, ${seen.pipelines} pipelines (${seen.pipelined} requests), slow senders answered after ${seen.slow.join(', ')} ms, stalled clients cut off after ${seen.cutOff.join(', ')} ms`);
  t.diagnostic(`${seen.writes} cell writes accepted, ${seen.conflicts} conflicts, ${seen.lenient} deep or huge-integer bodies refused, ${seen.resets} resets after an early refusal, ${seen.bareErrors} bare node:http errors (known bug)`);
}
