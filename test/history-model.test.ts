/**
 * History, model-based, against a real server process on production defaults (the log on, shipping every
 * second) with BACKUP_RETAIN=2: random single writes and batches by a few players, whole-world imports, named
 * restores, restores to an instant (whole or a range), rollbacks of one player, snapshots (so prunes happen)
 * and kill -9 restarts. A model keeps every acknowledged write with the step that made it and its author;
 * after every step (but two single writes or batches in three) `at` reads, /history by cells and by player, and rollback previews at instants inside the
 * span GET /backups reports are compared with it, in both stores. A failure prints its seed: HISTORY_SEED=<seed>
 * replays it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUTH, fileStoreEnv, s3StoreEnv, TEST_CELLS } from './support/app.js';
import { call, type Answer } from './support/http.js';
import { seededRandom, splittingInstant } from './support/model.js';
import { startServerProcess, type ServerProcess } from './support/process.js';

/** Players write here; imports and whole restores cover the whole world. */
const REGION = 256;
const PLAYERS = ['A1B2C3D4E5F60718', '0123456789ABCDEF', 'FEDCBA9876543210'];
const IMPORTER = 'importer';
const OPERATOR = 'ops';
const MODERATOR = 'mod';
type Cell = [number, number, number, number];
type Op = 'write' | 'batch' | 'import' | 'restoreName' | 'restoreAt' | 'rollback' | 'snapshot' | 'kill';
/** Every kind but writes, this many times a run, in a random order among the writes. */
const EACH = 3;
const WRITES = 20;

interface Entry { step: number; index: number; before: Cell; after: Cell; by: string }

/** The world after each step, every change cell by cell, the instant after each step, and the snapshots taken. */
class Model {
  world = new Uint8Array(TEST_CELLS * 4);
  entries: Entry[] = [];
  /** worlds[k] and instants[k]: the world after step k, and an instant strictly between step k's changes and step k+1's. */
  worlds: Uint8Array[] = [];
  instants: number[] = [];
  snapshots = new Map<string, Uint8Array>();
  cell(index: number): Cell { return [...this.world.subarray(index * 4, index * 4 + 4)] as Cell; }
  change(step: number, by: string, cells: Array<[number, Cell]>): void {
    for (const [index, after] of cells) {
      this.entries.push({ step, index, before: this.cell(index), after, by });
      this.world.set(after, index * 4);
    }
  }
  /** Records the end of step k. */
  async settle(): Promise<void> {
    await splittingInstant(); // after it, every change so far is stamped at or before an earlier millisecond
    this.instants.push(await splittingInstant()); // so this one is strictly after them, and strictly before the next
    this.worlds.push(this.world.slice());
  }
}

const iso = (ms: number) => new Date(ms).toISOString();
const asCell = (c: Record<string, number>): Cell => [c.category!, c.rotation!, c.sideA!, c.sideB!];
const cellsOf = (bytes: Uint8Array, start: number): Array<[number, Cell]> =>
  Array.from({ length: bytes.length / 4 }, (_, i) => [start + i, [...bytes.subarray(i * 4, i * 4 + 4)] as Cell]);

/** The model's history of cells [start, start+count) or of `by`, after step `from`: newest first. */
function expectedHistory(model: Model, from: number, cells?: [number, number], by?: string): Array<[number, Cell, Cell, string]> {
  return model.entries
    .filter((e) => e.step > from && (!cells || (e.index >= cells[0] && e.index < cells[0] + cells[1])) && (by === undefined || e.by === by))
    .reverse().map((e) => [e.index, e.before, e.after, e.by]);
}

/** The model's rollback of `by` after step `from` within [0, REGION): each cell back to its value before their first change, unless another changed it last. */
function expectedRollback(model: Model, by: string, from: number) {
  const first = new Map<number, Cell>();
  const last = new Map<number, string>();
  for (const e of model.entries) {
    if (e.step <= from || e.index >= REGION) continue;
    if (e.by === by && !first.has(e.index)) first.set(e.index, e.before);
    if (first.has(e.index)) last.set(e.index, e.by);
  }
  const restore: Array<[number, Cell]> = [];
  const skipped: number[] = [];
  for (const [index, to] of [...first].sort((a, b) => a[0] - b[0])) {
    if (last.get(index) !== by) skipped.push(index);
    else if (model.cell(index).join() !== to.join()) restore.push([index, to]);
  }
  return { restore, skipped };
}

/** The seed's schedule: each kind EACH times and WRITES writes or batches, shuffled; never a named restore before a snapshot. */
function schedule(next: (n: number) => number): Op[] {
  const ops: Op[] = [];
  for (const kind of ['import', 'restoreName', 'restoreAt', 'rollback', 'snapshot', 'kill'] as const) for (let i = 0; i < EACH; i++) ops.push(kind);
  for (let i = 0; i < WRITES; i++) ops.push(next(2) === 0 ? 'write' : 'batch');
  for (let i = ops.length - 1; i > 0; i--) {
    const j = next(i + 1);
    [ops[i], ops[j]] = [ops[j]!, ops[i]!];
  }
  return ops;
}

/** A server process over one store, restartable after a kill -9 with the same environment. */
interface Server { url: string; proc: ServerProcess }


function ok(answer: Answer, what: string): Answer {
  assert.equal(answer.status, 200, `${what}: ${answer.text}`);
  return answer;
}

for (const [kind, storeEnv] of [['file', fileStoreEnv], ['s3', s3StoreEnv]] as const) {
  test(`at reads, history and rollback previews match the model under writes, imports, restores, rollbacks, prunes and kill -9 (${kind} store)`, async (t) => {
    const seed = process.env.HISTORY_SEED ? Number(process.env.HISTORY_SEED) : Math.floor(Math.random() * 2 ** 31);
    t.diagnostic(`HISTORY_SEED=${seed}`);
    const next = seededRandom(seed);
    const env = {
      ...(await storeEnv(t)), CUBE_CELLS: String(TEST_CELLS), AUTH_USER: AUTH.user, AUTH_PASSWORD: AUTH.password,
      BACKUP_RETAIN: '2', BACKUP_INTERVAL_SECONDS: '0', // snapshots only when the test takes them
    };
    const boot = async (): Promise<Server> => {
      const proc = await startServerProcess(t, env);
      return { url: proc.url, proc };
    };
    let s = await boot();
    const get = (path: string) => call(s.url, path, { auth: AUTH });
    const post = (path: string, body: unknown) => call(s.url, path, { method: 'POST', body: body as object, auth: AUTH });
    const model = new Model();
    await model.settle(); // step 0: the empty world of the first boot
    for (const b of ok(await get('/backups'), 'backups').json.backups as Array<{ name: string }>) model.snapshots.set(b.name, model.world.slice()); // the first boot's
    const value = (): Cell => [1 + next(255), next(4), next(256), next(256)];
    const steps: string[] = [];
    let step = 0;

    /** The steps whose instants lie inside the span GET /backups reports now. */
    const inSpan = async (): Promise<number[]> => {
      const history = ok(await get('/backups'), 'backups').json.history;
      assert.ok(history, 'a span is reported');
      const earliest = Date.parse(history.earliest);
      const kept = model.instants.map((at, k) => [at, k] as const).filter(([at]) => at > earliest).map(([, k]) => k);
      const newest = model.instants.length - 1;
      assert.ok(kept.includes(newest), `the instant after the newest step (${iso(model.instants[newest]!)}) is after the span's start ${JSON.stringify(history)}`);
      return kept;
    };

    const allPages = async (query: string) => {
      const out: Array<{ at: string; index: number; before: Record<string, number>; after: Record<string, number>; by: string }> = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 1000; pages++) {
        const answer = ok(await get(`/history?${query}&limit=100${cursor ? `&cursor=${cursor}` : ''}`), `history ${query}`);
        out.push(...answer.json.changes);
        cursor = answer.json.next;
        if (!cursor) return out;
      }
      throw new Error('history did not end');
    };

    const check = async () => {
      const label = `seed ${seed}, after steps ${steps.join(' ')}`;
      const now = Buffer.from((await fetchBytes(s.url, `/cells?start=0&count=${TEST_CELLS}`)));
      assert.ok(now.equals(model.world), `${label}: the world now`);
      const kept = await inSpan();
      const pick = () => kept[next(kept.length)]!;
      // At reads: a range through GET /cells, single cells through a batch of reads at several instants.
      const k = pick();
      const start = next(TEST_CELLS - 64);
      const count = 1 + next(64);
      const then = await fetchBytes(s.url, `/cells?start=${start}&count=${count}&at=${iso(model.instants[k]!)}`);
      assert.deepEqual([...then], [...model.worlds[k]!.subarray(start * 4, (start + count) * 4)], `${label}: cells ${start}+${count} at step ${k}`);
      const reads = Array.from({ length: 6 }, () => ({ step: pick(), index: next(REGION) }));
      const answer = ok(await post('/request', reads.map((r) => ({ index: r.index, at: iso(model.instants[r.step]!) }))), 'reads at');
      assert.deepEqual(answer.json.map(asCell), reads.map((r) => [...model.worlds[r.step]!.subarray(r.index * 4, r.index * 4 + 4)]), `${label}: reads at ${JSON.stringify(reads)}`);
      // History by cells and by player since an instant in the span.
      const from = pick();
      const hStart = next(REGION - 8);
      const hCount = 1 + next(8);
      const byCells = await allPages(`start=${hStart}&count=${hCount}&since=${iso(model.instants[from]!)}`);
      assert.deepEqual(byCells.map((c) => [c.index, asCell(c.before), asCell(c.after), c.by]), expectedHistory(model, from, [hStart, hCount]), `${label}: history of cells ${hStart}+${hCount} since step ${from}`);
      const player = PLAYERS[next(PLAYERS.length)]!;
      const mine = await allPages(`by=${player}&since=${iso(model.instants[from]!)}`);
      assert.deepEqual(mine.map((c) => [c.index, asCell(c.before), asCell(c.after), c.by]), expectedHistory(model, from, undefined, player), `${label}: history of ${player} since step ${from}`);
      // A rollback preview of a player since an instant in the span.
      const since = pick();
      const who = PLAYERS[next(PLAYERS.length)]!;
      const expected = expectedRollback(model, who, since);
      const preview = ok(await post('/rollback', { by: who, since: iso(model.instants[since]!), start: 0, count: REGION, preview: true }), 'preview');
      assert.deepEqual(preview.json.cells.map((c: { index: number; to: Record<string, number> }) => [c.index, asCell(c.to)]), expected.restore, `${label}: preview of ${who} since step ${since}`);
      assert.deepEqual(preview.json.skippedCells.map((c: { index: number }) => c.index), expected.skipped, `${label}: preview's skipped cells, ${who} since step ${since}`);
    };

    const counts: Record<string, number> = {};
    let checkMs = 0;
    for (const op of schedule(next)) {
      step++;
      counts[op] = (counts[op] ?? 0) + 1;
      const by = PLAYERS[next(PLAYERS.length)]!;
      if (op === 'write') {
        const index = next(REGION);
        const c = value();
        ok(await post('/request', { action: 1, index, category: c[0], rotation: c[1], sideA: c[2], sideB: c[3], by }), 'write');
        model.change(step, by, [[index, c]]);
        steps.push(`${step}:write(${by},${index})`);
      } else if (op === 'batch') {
        const indexes = [...new Set(Array.from({ length: 2 + next(6) }, () => next(REGION)))];
        const cells: Array<[number, Cell]> = indexes.map((index) => [index, value()]);
        ok(await post('/request', cells.map(([index, c]) => ({ action: 1, index, category: c[0], rotation: c[1], sideA: c[2], sideB: c[3], by }))), 'batch');
        model.change(step, by, cells);
        steps.push(`${step}:batch(${by},${indexes.join('/')})`);
      } else if (op === 'import') {
        // The whole world, with most cells as they are: a big change by one author.
        const bytes = model.world.slice();
        for (let i = 0; i < 64; i++) bytes.set(value(), next(TEST_CELLS) * 4);
        ok(await call(s.url, `/cells?start=0&by=${IMPORTER}`, { method: 'PUT', body: bytes, auth: AUTH }), 'import');
        model.change(step, IMPORTER, cellsOf(bytes, 0));
        steps.push(`${step}:import`);
      } else if (op === 'snapshot') {
        const name = ok(await post('/s3dump', {}), 's3dump').json.backup.name as string;
        if (!model.snapshots.has(name)) model.snapshots.set(name, model.world.slice());
        const kept = ok(await get('/backups'), 'backups').json.backups as unknown[];
        assert.ok(kept.length <= 2, `BACKUP_RETAIN=2 keeps ${kept.length}`);
        steps.push(`${step}:snapshot(${name})`);
      } else if (op === 'restoreName') {
        const listed = (ok(await get('/backups'), 'backups').json.backups as Array<{ name: string }>).map((b) => b.name).filter((n) => model.snapshots.has(n));
        assert.ok(listed.length > 0, 'a kept snapshot the model knows');
        const name = listed[next(listed.length)]!;
        ok(await post(`/restore?by=${OPERATOR}`, { name }), 'restore by name');
        model.change(step, OPERATOR, cellsOf(model.snapshots.get(name)!, 0));
        steps.push(`${step}:restoreName(${name})`);
      } else if (op === 'restoreAt') {
        const kept = await inSpan();
        const k = kept[next(kept.length)]!;
        const whole = next(2) === 0;
        const start = whole ? 0 : next(REGION - 32);
        const count = whole ? TEST_CELLS : 1 + next(32);
        const restored = ok(await post(`/restore?by=${OPERATOR}`, { at: iso(model.instants[k]!), ...(whole ? {} : { start, count }) }), 'restore at');
        assert.equal(restored.json.restored.cells, count);
        model.change(step, OPERATOR, cellsOf(model.worlds[k]!.subarray(start * 4, (start + count) * 4), start));
        steps.push(`${step}:restoreAt(step ${k},${start}+${count})`);
      } else if (op === 'rollback') {
        const kept = await inSpan();
        const since = kept[next(kept.length)]!;
        const expected = expectedRollback(model, by, since);
        const done = ok(await post(`/rollback?by=${MODERATOR}`, { by, since: iso(model.instants[since]!), start: 0, count: REGION }), 'rollback');
        assert.equal(done.json.restored, expected.restore.length, `seed ${seed}: rollback of ${by} since step ${since} after ${steps.join(' ')}`);
        model.change(step, MODERATOR, expected.restore);
        steps.push(`${step}:rollback(${by},since ${since})`);
      } else {
        s.proc.child.kill('SIGKILL');
        await s.proc.exited;
        s = await boot();
        steps.push(`${step}:kill`);
      }
      await model.settle();
      // After every step but most single writes and batches: on S3 each check reads change sets for about 0.6 s.
      if ((op !== 'write' && op !== 'batch') || step % 3 === 0) {
        const began = Date.now();
        await check();
        checkMs += Date.now() - began;
      }
    }
    t.diagnostic(`${kind}: ${step} steps ${JSON.stringify(counts)}, ${model.entries.length} cell changes, ${checkMs} ms in checks`);
    const { history } = ok(await get('/backups'), 'backups').json;
    assert.ok(Date.parse(history.earliest) > model.instants[0]!, 'prunes moved the span\'s start past the first boot');
  });
}

/** The raw bytes of a GET, which must answer 200. */
async function fetchBytes(url: string, path: string): Promise<Uint8Array> {
  const answer = await fetch(`${url}${path}`, { headers: { Authorization: `Basic ${Buffer.from(`${AUTH.user}:${AUTH.password}`).toString('base64')}` } });
  const bytes = new Uint8Array(await answer.arrayBuffer());
  assert.equal(answer.status, 200, `${path}: ${Buffer.from(bytes).toString()}`);
  return bytes;
}
