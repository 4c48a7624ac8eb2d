/**
 * Attribution, model-based: several players write interleaved cells, batches and ranges over time; history
 * by region and by player (paged) and rollbacks (previews, regions, later overwrites by others) are checked
 * against a model that records every change with its author; again after a restart and across a snapshot;
 * in both stores. Plus bad authors, a window outside the span, and a rollback racing writes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { AUTH, openFileStore, openS3Store, openWalDir, startServer, TEST_CELLS, waitForShipped, type Running, type StoreFixture } from './support/app.js';
import { seededRandom, splittingInstant } from './support/model.js';
import { basicHeader, call } from './support/http.js';
import { startServerProcess } from './support/process.js';

const REGION = 256;
const PLAYERS = ['A1B2C3D4E5F60718', '0123456789ABCDEF', 'FEDCBA9876543210', ''];
type Cell = [number, number, number, number];
interface Entry { epoch: number; index: number; before: Cell; after: Cell; by: string }




/** The model: the world and every change, in order, each cell of a change as one entry. */
class Model {
  world = new Uint8Array(TEST_CELLS * 4);
  entries: Entry[] = [];
  cell(index: number): Cell { return [...this.world.subarray(index * 4, index * 4 + 4)] as Cell; }
  change(epoch: number, by: string, cells: Array<[number, Cell]>): void {
    for (const [index, after] of cells) {
      this.entries.push({ epoch, index, before: this.cell(index), after, by });
      this.world.set(after, index * 4);
    }
  }
}

async function randomChange(s: Running, model: Model, next: (n: number) => number, epoch: number): Promise<void> {
  const by = PLAYERS[next(PLAYERS.length)]!;
  const value = (): Cell => [1 + next(255), next(4), next(256), next(256)];
  const kind = next(3);
  if (kind === 0) {
    const index = next(REGION);
    const cell = value();
    const answer = await s.post('/request', { action: 1, index, category: cell[0], rotation: cell[1], sideA: cell[2], sideB: cell[3], ...(by ? { by } : {}) });
    assert.equal(answer.status, 200, answer.text);
    model.change(epoch, by, [[index, cell]]);
  } else if (kind === 1) {
    const cells: Array<[number, Cell]> = Array.from({ length: 1 + next(4) }, () => [next(REGION), value()]);
    const answer = await s.post('/request', cells.map(([index, c]) => ({ action: 1, index, category: c[0], rotation: c[1], sideA: c[2], sideB: c[3], ...(by ? { by } : {}) })));
    assert.equal(answer.status, 200, answer.text);
    model.change(epoch, by, cells);
  } else {
    const start = next(REGION - 6);
    const cells: Array<[number, Cell]> = Array.from({ length: 1 + next(5) }, (_, i) => [start + i, value()]);
    const body = Uint8Array.from(cells.flatMap(([, c]) => c));
    // A range write is the operator's: `by` in the query (an empty one would be the authenticated user's).
    const answer = await s.call(`/cells?start=${start}&by=${encodeURIComponent(by)}`, { method: 'PUT', body, auth: AUTH });
    assert.equal(answer.status, 200, answer.text);
    model.change(epoch, by, cells);
  }
}

/** Every page of a history query, followed through its cursors. */
async function allPages(s: Running, query: string): Promise<Array<{ at: string; index: number; before: Record<string, number>; after: Record<string, number>; by: string }>> {
  const out = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 1000; pages++) {
    const answer = await s.call(`/history?${query}&limit=7${cursor ? `&cursor=${cursor}` : ''}`, { auth: AUTH });
    assert.equal(answer.status, 200, answer.text);
    out.push(...answer.json.changes);
    cursor = answer.json.next;
    if (!cursor) return out;
  }
  throw new Error('history did not end');
}

const asCell = (c: Record<string, number>): Cell => [c.category!, c.rotation!, c.sideA!, c.sideB!];
const iso = (ms: number) => new Date(ms).toISOString();

/** The model's answer to a history query: entries in epochs (from, to] for the cells and author, newest first. */
function expectedHistory(model: Model, from: number, to: number, cells?: [number, number], by?: string): Array<[number, Cell, Cell, string]> {
  return model.entries
    .filter((e) => e.epoch > from && e.epoch <= to && (!cells || (e.index >= cells[0] && e.index < cells[0] + cells[1])) && (by === undefined || e.by === by))
    .reverse().map((e) => [e.index, e.before, e.after, e.by]);
}

/** The model's rollback of `by` in epochs (from, to] within [start, start+count): per cell, restored to the value before their first change, unless another changed it after. */
function expectedRollback(model: Model, by: string, from: number, to: number, region?: [number, number]) {
  const first = new Map<number, Cell>();
  const last = new Map<number, string>();
  for (const e of model.entries) {
    if (e.epoch <= from || (region && (e.index < region[0] || e.index >= region[0] + region[1]))) continue;
    if (e.by === by && e.epoch <= to && !first.has(e.index)) first.set(e.index, e.before);
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

const STORES: Array<[string, (t: TestContext) => Promise<StoreFixture>]> = [['file', openFileStore], ['s3', () => openS3Store()]];

describe('attribution', () => {
  for (const [kind, open] of STORES) {
    test(`history by cell and by player, and rollbacks of one player, match the model, across a snapshot and a restart (${kind} store)`, async (t) => {
      const fixture = await open(t);
      const options = { wal: { dir: await openWalDir(t), sync: 'write' as const }, shipIntervalMs: 40 };
      let s = await startServer(t, fixture, options);
      const next = seededRandom(kind === 'file' ? 21 : 22);
      const model = new Model();
      assert.equal((await s.post('/s3dump')).status, 200);
      const instants = [await splittingInstant()];
      for (let epoch = 1; epoch <= 8; epoch++) {
        for (let i = 0; i < 10; i++) await randomChange(s, model, next, epoch);
        if (epoch === 4) assert.equal((await s.post('/s3dump')).status, 200);
        instants.push(await splittingInstant());
      }
      const check = async (label: string) => {
        for (let q = 0; q < 4; q++) {
          const from = next(6);
          const to = from + 1 + next(8 - from);
          const start = next(REGION - 40);
          const count = 1 + next(40);
          const got = await allPages(s, `start=${start}&count=${count}&since=${iso(instants[from]!)}&until=${iso(instants[to]!)}`);
          assert.deepEqual(got.map((c) => [c.index, asCell(c.before), asCell(c.after), c.by]), expectedHistory(model, from, to, [start, count]), `${label}: cells ${start}+${count}, epochs ${from}..${to}`);
          for (const c of got) assert.ok(Date.parse(c.at) > instants[from]! && Date.parse(c.at) <= instants[to]!, 'each instant in the window');
          const player = PLAYERS[next(3)]!;
          const mine = await allPages(s, `by=${player}&since=${iso(instants[from]!)}&until=${iso(instants[to]!)}`);
          assert.deepEqual(mine.map((c) => [c.index, asCell(c.before), asCell(c.after), c.by]), expectedHistory(model, from, to, undefined, player), `${label}: ${player}, epochs ${from}..${to}`);
        }
      };
      await check('running');

      // A preview changes nothing; the rollback then does exactly what the preview said, leaving others' later work.
      const griefer = PLAYERS[0]!;
      const expected = expectedRollback(model, griefer, 2, 6, [0, 200]);
      const body = { by: griefer, since: iso(instants[2]!), until: iso(instants[6]!), start: 0, count: 200 };
      const preview = await s.post('/rollback', { ...body, preview: true });
      assert.equal(preview.status, 200, preview.text);
      assert.deepEqual(preview.json.cells.map((c: { index: number; to: Record<string, number> }) => [c.index, asCell(c.to)]), expected.restore);
      assert.deepEqual(preview.json.skippedCells.map((c: { index: number }) => c.index), expected.skipped);
      assert.deepEqual([...Buffer.from(await (await fetch(`${s.url}/cells?start=0&count=${REGION}`, { headers: { Authorization: basicHeader(AUTH.user, AUTH.password) } })).arrayBuffer())], [...model.world.subarray(0, REGION * 4)], 'a preview changes nothing');
      const done = await s.call('/rollback?by=moderator', { method: 'POST', body, auth: AUTH });
      assert.equal(done.status, 200, done.text);
      assert.equal(done.json.restored, expected.restore.length);
      model.change(9, 'moderator', expected.restore);
      instants.push(await splittingInstant());
      assert.deepEqual([...Buffer.from(await (await fetch(`${s.url}/cells?start=0&count=${REGION}`, { headers: { Authorization: basicHeader(AUTH.user, AUTH.password) } })).arrayBuffer())], [...model.world.subarray(0, REGION * 4)], 'after the rollback');
      // The rollback is attributed to the operator, and is itself rolled back by rolling back the operator.
      const byModerator = await allPages(s, `by=moderator&since=${iso(instants[8]!)}`);
      assert.equal(byModerator.length, expected.restore.length);
      await waitForShipped(s)

      await s.app.close();
      s = await startServer(t, fixture, options);
      await check('after a restart');
    });
  }

  test('authors survive a kill -9: history and rollback after the restart still know who changed what', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'cubecache-attribution-kill-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const env = { DATA_DIR: dir, WAL_DIR: join(dir, 'wal'), CUBE_CELLS: String(TEST_CELLS), AUTH_USER: AUTH.user, AUTH_PASSWORD: AUTH.password, SHIP_INTERVAL_SECONDS: '0' };
    const a = await startServerProcess(t, env);
    assert.equal((await call(a.url, '/s3dump', { body: {}, auth: AUTH })).status, 200);
    const since = await splittingInstant();
    for (const [index, by] of [[1, 'GRIEFER'], [2, 'GRIEFER'], [3, 'BUILDER'], [2, 'BUILDER']] as const) {
      assert.equal((await call(a.url, '/request', { body: { action: 1, index, category: 50 + index, by }, auth: AUTH })).status, 200);
    }
    a.child.kill('SIGKILL'); // shipping is off: only the log holds these changes and their authors
    await a.exited;
    const b = await startServerProcess(t, env);
    const history = (await call(b.url, `/history?start=1&count=3&since=${iso(since)}`, { auth: AUTH })).json.changes;
    assert.deepEqual(history.map((c: { index: number; by: string }) => [c.index, c.by]), [[2, 'BUILDER'], [3, 'BUILDER'], [2, 'GRIEFER'], [1, 'GRIEFER']]);
    const rolled = await call(b.url, '/rollback', { body: { by: 'GRIEFER', since: iso(since) }, auth: AUTH });
    assert.equal(rolled.status, 200, rolled.text);
    assert.deepEqual([rolled.json.restored, rolled.json.skippedCells.map((c: { index: number; by: string }) => [c.index, c.by])], [1, [[2, 'BUILDER']]]);
    assert.equal((await call(b.url, '/request', { body: { index: 1 }, auth: AUTH })).json.category, 0);
    assert.equal((await call(b.url, '/request', { body: { index: 2 }, auth: AUTH })).json.category, 52, 'the builder\'s later work stays');
  });

  test('a snapshot (or a restore of one) between two shipments ships the changes it covers first: their authors stay in history once the log is gone', async (t) => {
    const fixture = await openFileStore(t);
    const wal = { dir: await openWalDir(t), sync: 'write' as const };
    // A cadence no test reaches: only the snapshot can carry these changes to the store.
    const a = await startServer(t, fixture, { wal, shipIntervalMs: 3_600_000 });
    assert.equal((await a.post('/s3dump')).status, 200);
    assert.equal((await a.post('/request', { action: 1, index: 7, category: 1, by: 'P1' })).status, 200);
    assert.equal((await a.post('/request', { action: 1, index: 7, category: 2, by: 'P2' })).status, 200);
    const second = await a.post('/s3dump');
    assert.equal(second.status, 200);
    assert.equal((await a.post('/request', { action: 1, index: 7, category: 3, by: 'P3' })).status, 200);
    // A restore of a kept snapshot is committed as a snapshot too: P3's change must not vanish under it.
    assert.equal((await a.post('/restore', { name: second.json.backup.name })).status, 200);
    await a.app.close();
    await rm(wal.dir, { recursive: true, force: true }); // the instance is gone: the store alone
    const b = await startServer(t, fixture, { wal: { dir: await openWalDir(t), sync: 'write' }, shipIntervalMs: 3_600_000 });
    const changes = (await b.call('/history?start=7&count=1', { auth: AUTH })).json.changes as Array<{ by: string; after: { category: number } }>;
    assert.deepEqual(changes.map((c) => [c.by, c.after.category]), [['tester', 2], ['P3', 3], ['P2', 2], ['P1', 1]], 'the restore by its operator, and every change under it');
    assert.equal((await b.post('/request', { index: 7 })).json.category, 2, 'the restored world');
  });

  test('bad authors are 400s that write nothing; a rollback window outside the span names it', async (t) => {
    const s = await startServer(t, await openFileStore(t), { wal: { dir: await openWalDir(t), sync: 'write' } });
    assert.equal((await s.post('/s3dump')).status, 200);
    for (const by of ['x'.repeat(65), 'caf\u00e9', 'tab\there', 5]) {
      const answer = await s.post('/request', { action: 1, index: 1, category: 1, by });
      assert.equal(answer.status, 400, JSON.stringify(by));
      assert.match(answer.json.error, /by must be/);
    }
    assert.equal((await s.post('/request', [{ action: 1, index: 1, category: 1, by: 'P1' }, { action: 1, index: 2, category: 1, by: 'P2' }])).status, 400, 'one author a batch');
    assert.equal((await s.call(`/cells?start=0&by=${'y'.repeat(65)}`, { method: 'PUT', body: new Uint8Array(4).fill(1), auth: AUTH })).status, 400);
    assert.equal((await s.post('/request', { index: 1 })).json.category, 0, 'nothing written');
    assert.equal((await s.post('/request', { action: 1, index: 1, category: 1, by: 'x'.repeat(64) })).status, 200, '64 characters are fine');
    const early = await s.post('/rollback', { by: 'P1', since: '2020-01-01T00:00:00Z' });
    assert.equal(early.status, 400);
    assert.match(early.json.error, /outside the history kept, from \S+Z to \S+Z/);
    for (const body of [{ since: iso(Date.now()) }, { by: 'P1' }, { by: 'P1', since: iso(Date.now()), until: iso(Date.now() - 1000) }, { by: 'P1', since: iso(Date.now()), preview: 'yes' }]) {
      assert.equal((await s.post('/rollback', body)).status, 400, JSON.stringify(body));
    }
    assert.equal((await s.call('/history', { auth: AUTH })).status, 400, 'a history query names cells or an author');
    assert.equal((await s.call('/history?by=P1&cursor=nonsense', { auth: AUTH })).status, 400);
  });

  test('a rollback racing writes to the same cells: a cell written after the plan keeps that write', async (t) => {
    const s = await startServer(t, await openFileStore(t), { wal: { dir: await openWalDir(t), sync: 'write' } });
    assert.equal((await s.post('/s3dump')).status, 200);
    const since = await splittingInstant();
    for (let i = 0; i < 50; i++) assert.equal((await s.post('/request', { action: 1, index: i, category: 66, by: 'GRIEFER' })).status, 200);
    const racing = Array.from({ length: 50 }, (_, i) => s.post('/request', { action: 1, index: i, category: 7, sideA: 7, by: 'BUILDER' }));
    const rollback = s.post('/rollback', { by: 'GRIEFER', since: iso(since) });
    const answers = await Promise.all([...racing, rollback]);
    for (const answer of answers) assert.equal(answer.status, 200, answer.text);
    const world = Buffer.from(await (await fetch(`${s.url}/cells?start=0&count=50`, { headers: { Authorization: basicHeader(AUTH.user, AUTH.password) } })).arrayBuffer());
    for (let i = 0; i < 50; i++) assert.ok([0, 7].includes(world[i * 4]!), `cell ${i}: the griefer's 66 never survives the builder's later write or the rollback (${world[i * 4]})`);
  });
});
