/**
 * cloudscript/cubecache.js in a PlayFab-like classic CloudScript sandbox (test/support/cloudscript-sandbox.mjs),
 * against a real server; and the seed's own CloudScript s3dump, unchanged, against cubecache.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { AUTH, openFileStore, startServer, TEST_CELLS, type StoreFixture } from './support/app.js';
import { basicHeader, waitFor } from './support/http.js';

const SOURCE_PATH = fileURLToPath(new URL('../cloudscript/cubecache.js', import.meta.url));
const SOURCE = readFileSync(SOURCE_PATH, 'utf8');
const SANDBOX = new URL('./support/cloudscript-sandbox.mjs', import.meta.url);

/** The seed's PlayFab CloudScript, verbatim from /work/shared/notes/seed-protocol.md. */
const SEED_S3DUMP = `handlers.s3dump = function (args, context) {
    var headers = { "Authorization": "Basic dXNlcjpwYXNzd29yZA==" };
    var url = "https://xxx" + args.index + ".your.domainname.net/s3dump";
    var response = http.request(url, "post", JSON.stringify({}), "application/json", headers);
    return { responseContent: response };
};`;

interface LogEntry { level: string; message: string; data?: string }
interface RecordedRequest { url: string; target: string; method: string; contentType: string; headers: Record<string, string>; content: string; status?: number }
// eslint-disable-next-line @typescript-eslint/no-explicit-any
interface Outcome { result: any; logs: LogEntry[]; requests: RecordedRequest[] }

interface SandboxOptions {
  sources?: { name: string; code: string }[];
  /** URL prefix → replacement (e.g. the seed's https host → the test server). */
  routes?: Record<string, string>;
  /** What the sandbox's http.request does with a non-2xx answer: return its body (default) or throw. */
  httpErrors?: 'return' | 'throw';
}

interface Sandbox {
  /** Title Internal Data as server.GetTitleInternalData sees it; change it between runs. */
  titleData: Record<string, string>;
  /** Runs handlers[name](args, context) and returns its result, what it logged and the requests it made. */
  run(name: string, args?: unknown, context?: unknown): Promise<Outcome>;
  /** Calls a global function of the script. */
  call(name: string, ...args: unknown[]): Promise<Outcome>;
}

/** A sandbox in a worker thread (its http.request blocks that thread, never the server's), ended after the test. */
async function openSandbox(t: TestContext, options: SandboxOptions = {}): Promise<Sandbox> {
  const worker = new Worker(SANDBOX, {
    workerData: { sources: options.sources ?? [{ name: 'cubecache.js', code: SOURCE }], routes: options.routes ?? {}, httpErrors: options.httpErrors ?? 'return' },
  });
  t.after(() => worker.terminate());
  await once(worker, 'online');
  let next = 0;
  const send = (message: Record<string, unknown>): Promise<Outcome> => {
    const id = ++next;
    return new Promise((resolve, reject) => {
      const onMessage = (answer: { id: number; error?: string } & Outcome) => {
        if (answer.id !== id) return;
        worker.off('message', onMessage);
        worker.off('error', reject);
        if (answer.error !== undefined) reject(new Error(`sandbox: ${answer.error}`));
        else resolve(answer);
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
      worker.postMessage({ id, ...message });
    });
  };
  const sandbox: Sandbox = {
    titleData: {},
    run: (handler, args, context) => send({ type: 'run', handler, args, context, titleData: sandbox.titleData }),
    call: (name, ...args) => send({ type: 'call', name, args }),
  };
  return sandbox;
}

/** A server on a file store, and a sandbox whose Title Internal Data points at it with the test credentials. */
async function setUp(t: TestContext, options: SandboxOptions = {}) {
  const fixture = await openFileStore(t);
  const s = await startServer(t, fixture);
  const sandbox = await openSandbox(t, options);
  sandbox.titleData = { cubecacheUrl: `${s.url}/`, cubecacheUser: AUTH.user, cubecachePassword: AUTH.password };
  return { s, sandbox, fixture };
}

/** The snapshot objects in the fixture's prefix. */
async function backupObjects(fixture: StoreFixture): Promise<string[]> {
  return fixture.store.list(`${fixture.prefix}backups/`);
}

describe('cloudscript/cubecache.js', () => {
  test('is classic-CloudScript JavaScript: no modules, require, arrows, let/const, classes or template literals', () => {
    const code = SOURCE.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '').replace(/'(?:[^'\\\n]|\\.)*'/g, "''");
    for (const [what, pattern] of [['=>', /=>/], ['let', /\blet\s/], ['const', /\bconst\s/], ['class', /\bclass\s/], ['template literal', /`/],
      ['require', /\brequire\s*\(/], ['import', /\bimport\b/], ['export', /\bexport\b/], ['Buffer', /\bBuffer\b/], ['btoa', /\bbtoa\b/]] as const) {
      assert.doesNotMatch(code, pattern, what);
    }
  });

  test('its base64 encoder agrees with Buffer, UTF-8 and lone surrogates included', async (t) => {
    const sandbox = await openSandbox(t);
    const samples = ['', 'a', 'ab', 'abc', 'abcd', 'user:password', `${AUTH.user}:${AUTH.password}`, 'pässwörd:ü', '日本語:パスワード',
      'emoji 🧊🎲', '\u0000\u007f\u0080\u07ff\u0800\uffff', 'lone \ud800 high', 'lone \udc00 low', 'pair at end \ud83d\ude00', 'cut \ud83d'];
    let seed = 7;
    for (let n = 0; n < 40; n++) {
      let text = '';
      for (let i = 0; i < n; i++) text += String.fromCharCode((seed = (seed * 1103515245 + 12345) % 2 ** 31) % (n % 2 ? 0x10000 : 0x80));
      samples.push(text);
    }
    for (const text of samples) {
      const { result } = await sandbox.call('cubecacheBase64', text);
      assert.equal(result, Buffer.from(text, 'utf8').toString('base64'), JSON.stringify(text));
    }
    assert.equal((await sandbox.call('cubecacheBase64', 'user:password')).result, 'dXNlcjpwYXNzd29yZA==', "the seed's header");
  });

  test('writeCell then readCell, with the credentials from Title Internal Data', async (t) => {
    const { s, sandbox } = await setUp(t);
    const write = await sandbox.run('writeCell', { index: 7, category: 9, rotation: 1, sideA: 2, sideB: 3 });
    assert.deepEqual(write.result, { ok: true, index: 7, category: 9, rotation: 1, sideA: 2, sideB: 3 });
    assert.equal(write.requests.length, 1);
    assert.equal(write.requests[0]!.target, `${s.url}/request`, 'a trailing / in cubecacheUrl is dropped');
    assert.equal(write.requests[0]!.method, 'POST');
    assert.equal(write.requests[0]!.headers.Authorization, basicHeader(AUTH.user, AUTH.password));
    assert.deepEqual(JSON.parse(write.requests[0]!.content), { action: 1, index: 7, by: 'TESTPLAYERID', category: 9, rotation: 1, sideA: 2, sideB: 3 });

    const read = await sandbox.run('readCell', { index: 7 });
    assert.deepEqual(read.result, { ok: true, index: 7, category: 9, rotation: 1, sideA: 2, sideB: 3 });
    assert.deepEqual((await s.post('/request', { index: 7 })).json, { status: 200, category: 9, rotation: 1, sideA: 2, sideB: 3 }, 'really on the server');
    assert.deepEqual((await sandbox.run('writeCell', { index: 8, category: 4 })).result, { ok: true, index: 8, category: 4, rotation: 0, sideA: 0, sideB: 0 }, 'missing bytes are 0');
    assert.deepEqual((await sandbox.run('readCell', { index: 0 })).result, { ok: true, index: 0, category: 0, rotation: 0, sideA: 0, sideB: 0 }, 'index 0 is an index');
    for (const outcome of [write, read]) assert.ok(!JSON.stringify(outcome.logs).includes(AUTH.password), 'the password is never logged');
  });

  test('writeCells then readCells: one batch request each, answers in order', async (t) => {
    const { s, sandbox } = await setUp(t);
    const cells = [
      { index: 1, category: 1, rotation: 2, sideA: 3, sideB: 4 },
      { index: 4095, category: 255, rotation: 255, sideA: 255, sideB: 255 },
      { index: 2, category: 7 },
    ];
    const write = await sandbox.run('writeCells', { cells });
    assert.equal(write.requests.length, 1);
    assert.ok(Array.isArray(JSON.parse(write.requests[0]!.content)), 'sent as one batch');
    const expected = [
      { index: 1, category: 1, rotation: 2, sideA: 3, sideB: 4 },
      { index: 4095, category: 255, rotation: 255, sideA: 255, sideB: 255 },
      { index: 2, category: 7, rotation: 0, sideA: 0, sideB: 0 },
    ];
    assert.deepEqual(write.result, { ok: true, cells: expected });
    const read = await sandbox.run('readCells', { indexes: [2, 1, 3, 4095, 1] });
    assert.equal(read.requests.length, 1);
    assert.deepEqual(read.result, { ok: true, cells: [expected[2], expected[0], { index: 3, category: 0, rotation: 0, sideA: 0, sideB: 0 }, expected[1], expected[0]] });
    assert.equal((await s.post('/request', { index: 4095 })).json.category, 255, 'really on the server');
  });

  test('readCellsAt: the cells as they were at an instant, in one request; a missing instant is refused before calling', async (t) => {
    const { s, sandbox } = await setUp(t);
    assert.equal((await s.post('/s3dump')).status, 200); // history starts at a snapshot
    await s.post('/request', [{ action: 1, index: 1, category: 1 }, { action: 1, index: 2, category: 2 }]);
    const then = new Date().toISOString();
    await waitFor('the clock to pass the instant', () => new Date().toISOString() > then, 1000, 1);
    await s.post('/request', [{ action: 1, index: 1, category: 9 }, { action: 1, index: 3, category: 9 }]);
    const past = await sandbox.run('readCellsAt', { indexes: [1, 2, 3], at: then });
    assert.equal(past.requests.length, 1);
    assert.deepEqual(past.result, { ok: true, cells: [{ index: 1, category: 1, rotation: 0, sideA: 0, sideB: 0 }, { index: 2, category: 2, rotation: 0, sideA: 0, sideB: 0 }, { index: 3, category: 0, rotation: 0, sideA: 0, sideB: 0 }] });
    const missing = await sandbox.run('readCellsAt', { indexes: [1] });
    assert.equal(missing.result.field, 'at');
    assert.equal(missing.requests.length, 0);
    const early = await sandbox.run('readCellsAt', { indexes: [1], at: '2020-01-01T00:00:00Z' });
    assert.equal(early.result.status, 400);
    assert.match(early.result.error, /outside the history kept/);
  });

  test('writes carry the calling player; cellHistory lists who changed a cell; rollbackPlayer is for moderators only', async (t) => {
    const { s, sandbox } = await setUp(t);
    assert.equal((await s.post('/s3dump')).status, 200);
    const since = new Date().toISOString();
    await waitFor('the clock to pass the instant', () => new Date().toISOString() > since, 1000, 1);
    assert.equal((await sandbox.run('writeCell', { index: 9, category: 9 })).result.ok, true);
    assert.equal(JSON.parse((await sandbox.run('writeCells', { cells: [{ index: 10, category: 10 }] })).requests[0]!.content)[0].by, 'TESTPLAYERID');
    const history = await sandbox.run('cellHistory', { index: 9, since });
    assert.equal(history.requests[0]!.method, 'GET');
    assert.deepEqual(history.result.changes.map((c: { by: string; after: { category: number } }) => [c.by, c.after.category]), [['TESTPLAYERID', 9]]);
    const refused = await sandbox.run('rollbackPlayer', { by: 'TESTPLAYERID', since });
    assert.equal(refused.result.status, 403);
    assert.equal(refused.requests.length, 0, 'refused before calling');
    sandbox.titleData = { ...sandbox.titleData, cubecacheModerators: 'SOMEONE, TESTPLAYERID' };
    const preview = await sandbox.run('rollbackPlayer', { by: 'TESTPLAYERID', since, preview: true });
    assert.equal(preview.result.ok, true, JSON.stringify(preview.result));
    assert.equal(preview.result.restored, 2);
    assert.equal((await s.post('/request', { index: 9 })).json.category, 9, 'a preview changes nothing');
    const done = await sandbox.run('rollbackPlayer', { by: 'TESTPLAYERID', since });
    assert.equal(done.result.restored, 2);
    assert.equal((await s.post('/request', { index: 9 })).json.category, 0);
    const after = await sandbox.run('cellHistory', { index: 9, since });
    assert.equal(after.result.changes[0].by, 'TESTPLAYERID', 'the rollback is the moderator\'s change');
  });

  test('readBox: a box\'s cells with their x, y, z in index order, now or at an instant; the helpers convert index and x, y, z; rollbackPlayer takes a box', async (t) => {
    // 8 across (x), 4 up (y), 6 deep (z), x fastest, then z, then y: index = x + 8 * (z + 6 * y).
    const world = { x: 8, y: 4, z: 6, order: 'xzy' };
    const s = await startServer(t, await openFileStore(t), { cells: 192, shape: world });
    const sandbox = await openSandbox(t);
    sandbox.titleData = { cubecacheUrl: s.url, cubecacheUser: AUTH.user, cubecachePassword: AUTH.password, cubecacheModerators: 'TESTPLAYERID' };
    assert.equal((await sandbox.call('cubecacheIndexOf', world, 3, 2, 5)).result, 3 + 8 * (5 + 6 * 2));
    assert.deepEqual((await sandbox.call('cubecacheCoordsOf', world, 3 + 8 * (5 + 6 * 2))).result, { x: 3, y: 2, z: 5 });
    const yFirst = { x: 8, y: 4, z: 6, order: 'yxz' }; // index = y + 4 * (x + 8 * z)
    assert.equal((await sandbox.call('cubecacheIndexOf', yFirst, 3, 2, 5)).result, 2 + 4 * (3 + 8 * 5));
    assert.deepEqual((await sandbox.call('cubecacheCoordsOf', yFirst, 2 + 4 * (3 + 8 * 5))).result, { x: 3, y: 2, z: 5 });

    assert.equal((await s.post('/s3dump')).status, 200);
    await s.post('/request', { action: 1, index: 2 + 8 * (3 + 6 * 1), category: 5 });
    const then = new Date().toISOString();
    await waitFor('the clock to pass the instant', () => new Date().toISOString() > then, 1000, 1);
    await s.post('/request', { action: 1, index: 2 + 8 * (3 + 6 * 1), category: 6 });
    const now = await sandbox.run('readBox', { box: [2, 1, 3, 2, 1, 2] });
    assert.equal(now.requests.length, 2, 'the world\'s shape, then one batch read');
    const cell = (x: number, z: number, category: number) => ({ x, y: 1, z, index: x + 8 * (z + 6), category, rotation: 0, sideA: 0, sideB: 0 });
    assert.deepEqual(now.result, { ok: true, cells: [cell(2, 3, 6), cell(3, 3, 0), cell(2, 4, 0), cell(3, 4, 0)] });
    assert.deepEqual((await sandbox.run('readBox', { box: [2, 1, 3, 1, 1, 1], at: then })).result, { ok: true, cells: [cell(2, 3, 5)] });

    for (const [args, message] of [[{}, /box must be \[x, y, z, w, h, d\]/], [{ box: [0, 0, 0, 0, 1, 1] }, /at least 1/], [{ box: [0, 0, 0, 1, 1] }, /box must be/],
      [{ box: [0, 0, 0, 100, 100, 1] }, /10000 cells; at most 4096/], [{ box: [0, 0, 0, 1, 1, 1], at: 5 }, /at must be/]] as const) {
      const refused = await sandbox.run('readBox', args);
      assert.equal(refused.result.status, 0, JSON.stringify(args));
      assert.match(refused.result.error, message);
      assert.equal(refused.requests.length, 0, 'refused before calling');
    }
    const outside = await sandbox.run('readBox', { box: [7, 0, 0, 2, 1, 1] });
    assert.equal(outside.result.field, 'box');
    assert.match(outside.result.error, /outside the world along x: 7 \+ 2 > 8/);

    // A player's changes in and out of a box; the rollback with the box undoes only those inside.
    const since = new Date().toISOString();
    await waitFor('the clock to pass the instant', () => new Date().toISOString() > since, 1000, 1);
    assert.equal((await sandbox.run('writeCells', { cells: [{ index: 0, category: 9 }, { index: 191, category: 9 }] })).result.ok, true);
    const both = await sandbox.run('rollbackPlayer', { by: 'TESTPLAYERID', since, box: [0, 0, 0, 2, 2, 2], start: 0 });
    assert.equal(both.result.field, 'box');
    const done = await sandbox.run('rollbackPlayer', { by: 'TESTPLAYERID', since, box: [0, 0, 0, 2, 2, 2] });
    assert.equal(done.result.restored, 1, JSON.stringify(done.result));
    assert.deepEqual(JSON.parse(done.requests[0]!.content).box, [0, 0, 0, 2, 2, 2]);
    assert.deepEqual([(await s.post('/request', { index: 0 })).json.category, (await s.post('/request', { index: 191 })).json.category], [0, 9]);

    const flat = await setUp(t);
    const refused = await flat.sandbox.run('readBox', { box: [0, 0, 0, 1, 1, 1] });
    assert.equal(refused.result.ok, false);
    assert.match(refused.result.error, /flat/);
  });

  test('a conditional write that conflicts: ok:false, 409, the current cell, nothing written', async (t) => {
    const { s, sandbox } = await setUp(t);
    await s.post('/request', { action: 1, index: 5, category: 3, rotation: 0, sideA: 1, sideB: 0 });
    const empty = { category: 0, rotation: 0, sideA: 0, sideB: 0 };
    const conflict = await sandbox.run('writeCell', { index: 5, category: 9, expect: empty });
    assert.equal(conflict.result.ok, false);
    assert.equal(conflict.result.status, 409);
    assert.match(conflict.result.error, /expected value/);
    assert.deepEqual(conflict.result.current, { index: 5, category: 3, rotation: 0, sideA: 1, sideB: 0 });
    assert.ok(conflict.logs.some((entry) => entry.level === 'error' && /409/.test(entry.message)), 'a failure is logged');

    const granted = await sandbox.run('writeCell', { index: 5, category: 9, expect: conflict.result.current });
    assert.deepEqual(granted.result, { ok: true, index: 5, category: 9, rotation: 0, sideA: 0, sideB: 0 }, 'expecting the current value writes');

    const batch = await sandbox.run('writeCells', { cells: [{ index: 6, category: 1, expect: empty }, { index: 5, category: 2, expect: empty }] });
    assert.equal(batch.result.ok, false);
    assert.equal(batch.result.status, 409);
    assert.equal(batch.result.element, 1);
    assert.deepEqual(batch.result.current, { index: 5, category: 9, rotation: 0, sideA: 0, sideB: 0 });
    assert.deepEqual((await sandbox.run('readCells', { indexes: [5, 6] })).result.cells.map((c: { category: number }) => c.category), [9, 0], 'the batch wrote nothing');
  });

  test('wrong credentials: ok:false, status 401', async (t) => {
    const { sandbox } = await setUp(t);
    sandbox.titleData.cubecachePassword = 'wrong';
    const outcome = await sandbox.run('readCell', { index: 1 });
    assert.deepEqual(outcome.result, { ok: false, status: 401, error: 'authentication required' });
    assert.ok(!JSON.stringify(outcome.logs).includes('wrong'), 'the password is never logged');
  });

  test('missing Title Internal Data: ok:false naming the key, no request made', async (t) => {
    const { sandbox } = await setUp(t);
    delete sandbox.titleData.cubecachePassword;
    const one = await sandbox.run('writeCell', { index: 1, category: 1 });
    assert.equal(one.result.ok, false);
    assert.equal(one.result.status, 0);
    assert.deepEqual(one.result.missing, ['cubecachePassword']);
    assert.match(one.result.error, /Title Internal Data key cubecachePassword/);
    assert.equal(one.requests.length, 0);
    sandbox.titleData = { cubecacheUser: '  ' };
    const all = await sandbox.run('s3dump', {});
    assert.deepEqual(all.result.missing, ['cubecacheUrl', 'cubecacheUser', 'cubecachePassword']);
    assert.match(all.result.error, /keys cubecacheUrl, cubecacheUser, cubecachePassword/);
    sandbox.titleData = { cubecacheUrl: 'cubecache.example.com', cubecacheUser: 'u', cubecachePassword: 'p' };
    assert.match((await sandbox.run('readCell', { index: 1 })).result.error, /cubecacheUrl must be an http\(s\) URL/);
  });

  test('bad arguments: a clear error before any request; the server\'s 400 passed on', async (t) => {
    const { sandbox } = await setUp(t);
    const cases: [string, unknown, string, RegExp][] = [
      ['readCell', {}, 'index', /index is missing/],
      ['readCell', undefined, 'index', /index is missing/],
      ['readCell', { index: -1 }, 'index', /whole number/],
      ['readCell', { index: 1.5 }, 'index', /whole number/],
      ['readCell', { index: '7' }, 'index', /whole number/],
      ['writeCell', { index: 1, category: 256 }, 'category', /0 to 255/],
      ['writeCell', { index: 1, sideB: -1 }, 'sideB', /0 to 255/],
      ['writeCell', { index: 1, expect: 3 }, 'expect', /expect must be an object/],
      ['writeCell', { index: 1, expect: { rotation: 300 } }, 'expect.rotation', /0 to 255/],
      ['readCells', {}, 'indexes', /indexes is missing/],
      ['readCells', { indexes: 3 }, 'indexes', /must be an array/],
      ['readCells', { indexes: [] }, 'indexes', /is empty/],
      ['readCells', { indexes: [1, null] }, 'indexes[1]', /indexes\[1\] is missing/],
      ['readCells', { indexes: new Array(4097).fill(0) }, 'indexes', /at most 4096/],
      ['writeCells', { cells: [{ index: 1 }, 5] }, 'cells[1]', /cells\[1\] must be an object/],
      ['writeCells', { cells: [{ index: 1, category: 1.5 }] }, 'cells[0].category', /0 to 255/],
    ];
    for (const [handler, args, field, message] of cases) {
      const { result, requests } = await sandbox.run(handler, args);
      const label = `${handler} ${JSON.stringify(args)?.slice(0, 60)}`;
      assert.equal(result.ok, false, label);
      assert.equal(result.status, 0, label);
      assert.equal(result.field, field, label);
      assert.match(result.error, message, label);
      assert.equal(requests.length, 0, label);
    }
    const outside = await sandbox.run('readCell', { index: TEST_CELLS });
    assert.equal(outside.result.ok, false);
    assert.equal(outside.result.status, 400);
    assert.match(outside.result.error, /index must be between 0 and 4095/);
    const batchOutside = await sandbox.run('writeCells', { cells: [{ index: 1, category: 1 }, { index: TEST_CELLS, category: 1 }] });
    assert.equal(batchOutside.result.status, 400);
    assert.match(batchOutside.result.error, /^element 1: /);
  });

  test('no answer (server closed): ok:false, status 0, no exception', async (t) => {
    const { s, sandbox } = await setUp(t);
    await s.app.close();
    for (const [handler, args] of [['readCell', { index: 1 }], ['writeCells', { cells: [{ index: 1 }] }], ['s3dump', {}]] as const) {
      const { result } = await sandbox.run(handler, args);
      assert.equal(result.ok, false, handler);
      assert.equal(result.status, 0, handler);
      assert.match(result.error, /no answer from cubecache at http:\/\/127\.0\.0\.1:\d+\/(request|s3dump\?async=1): .*ECONNREFUSED/, handler);
    }
  });

  test('the same results when http.request throws on non-2xx answers', async (t) => {
    const { s, sandbox } = await setUp(t, { httpErrors: 'throw' });
    await s.post('/request', { action: 1, index: 5, category: 3 });
    const conflict = await sandbox.run('writeCell', { index: 5, category: 9, expect: { category: 0 } });
    assert.equal(conflict.result.status, 409);
    assert.deepEqual(conflict.result.current, { index: 5, category: 3, rotation: 0, sideA: 0, sideB: 0 });
    sandbox.titleData.cubecacheUser = 'nobody';
    assert.deepEqual((await sandbox.run('readCell', { index: 5 })).result, { ok: false, status: 401, error: 'authentication required' });
  });

  test('s3dump: starts the backup and returns at once (POST /s3dump?async=1); the backup really is committed', async (t) => {
    const { s, sandbox, fixture } = await setUp(t);
    await sandbox.run('writeCell', { index: 3, category: 3 });
    assert.equal((await backupObjects(fixture)).length, 1, 'the first boot\'s snapshot only');
    const dump = await sandbox.run('s3dump');
    assert.equal(dump.result.ok, true, JSON.stringify(dump.result));
    assert.equal(dump.requests[0]!.target, `${s.url}/s3dump?async=1`);
    assert.equal(dump.requests[0]!.status, 202);
    assert.ok(['started', 'joined'].includes(dump.result.backup), dump.result.backup);
    assert.equal(dump.result.outcome, '/healthcheck');
    assert.ok(Date.parse(dump.result.requestedAt) > 0, 'requestedAt is a time');
    const health = await waitFor('the backup in /healthcheck', async () => {
      const answer = (await s.call('/healthcheck')).json;
      return answer.backup.lastSuccessAt !== null && answer.backup.lastSuccessAt >= dump.result.requestedAt ? answer : undefined;
    });
    assert.equal(health.backup.lastBackup.bytes, TEST_CELLS * 4);
    assert.equal((await backupObjects(fixture)).length, 2, 'the first boot\'s and this one');
    const listed = await s.call('/backups', { auth: AUTH });
    assert.equal(listed.json.backups[0].name, health.backup.lastBackup.name, 'the newest');
    assert.ok(dump.logs.some((entry) => entry.level === 'info' && entry.message.includes('/healthcheck')));
  });
});

describe("the seed's CloudScript s3dump, unchanged", () => {
  test('backs up cubecache when its credentials are the server\'s', async (t) => {
    const fixture = await openFileStore(t);
    const s = await startServer(t, fixture, { auth: { user: 'user', password: 'password' } });
    await s.call('/request', { method: 'POST', body: { action: 1, index: 9, category: 9 }, auth: { user: 'user', password: 'password' } });
    const sandbox = await openSandbox(t, { sources: [{ name: 'seed.js', code: SEED_S3DUMP }], routes: { 'https://xxx1.your.domainname.net': s.url } });
    const { result, requests } = await sandbox.run('s3dump', { index: 1 }, {});
    assert.equal(requests[0]!.url, 'https://xxx1.your.domainname.net/s3dump');
    assert.equal(requests[0]!.method, 'post');
    assert.equal(typeof result.responseContent, 'string');
    const answer = JSON.parse(result.responseContent);
    assert.equal(answer.status, 200);
    assert.equal(answer.backup.bytes, TEST_CELLS * 4);
    const keys = await backupObjects(fixture);
    assert.equal(keys.length, 2, 'the first boot\'s and this one');
    assert.ok(keys.includes(`${fixture.prefix}backups/${answer.backup.name}.gz`));
  });
});
