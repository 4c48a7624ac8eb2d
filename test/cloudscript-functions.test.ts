/**
 * cloudscript/functions (PlayFab CloudScript Functions on Azure Functions) against a real server: its handlers
 * called with the bodies PlayFab posts (ExecuteFunction's FunctionExecutionContext, a scheduled task's
 * context, a PlayStream context), and its registration through a stand-in for @azure/functions' `app`.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { AUTH, openFileStore, startServer, TEST_CELLS, type Running } from './support/app.js';
import { waitFor } from './support/http.js';

type Result = { ok: boolean; status?: number; error?: string; [key: string]: unknown };
type Handler = (executionContext: unknown) => Promise<Result>;
interface FunctionsModule {
  OPERATIONS: string[];
  indexOf(world: { x: number; y: number; z: number; order: string }, x: number, y: number, z: number): number;
  coordsOf(world: { x: number; y: number; z: number; order: string }, index: number): { x: number; y: number; z: number };
  MAX_TIMEOUT_MS: number;
  createHandlers(env: Record<string, string | undefined>, options?: { fetch?: typeof fetch }): Record<string, Handler>;
  register(app: { http(name: string, options: HttpOptions): void }, env: Record<string, string | undefined>, options?: { fetch?: typeof fetch }): void;
}
interface HttpOptions {
  methods: string[];
  authLevel: string;
  handler(request: { json(): Promise<unknown> }, context: { error(message: string): void }): Promise<{ status: number; jsonBody: Result }>;
}

// A variable specifier: the module is plain JavaScript for the Functions host, loaded as it will be there.
const MODULE_URL = new URL('../cloudscript/functions/src/cubecache.mjs', import.meta.url).href;
const functions = (await import(MODULE_URL)) as FunctionsModule;

const TITLE = { Id: 'A1B2C', EntityToken: 'entity-token-from-playfab' };

/** The body of ExecuteFunction called by a player: FunctionExecutionContext with the caller's entity profile. */
function executeFunction(args: unknown) {
  return {
    CallerEntityProfile: {
      Entity: { Id: '9F3A5B1C2D4E6F70', Type: 'title_player_account', TypeString: 'title_player_account' },
      Lineage: { MasterPlayerAccountId: '1234567890ABCDEF', TitleId: TITLE.Id, NamespaceId: '4D2E1F' },
      DisplayName: 'player one', EntityChain: `title_player_account!${TITLE.Id}/9F3A5B1C2D4E6F70`, VersionNumber: 3,
    },
    TitleAuthenticationContext: TITLE,
    GeneratePlayStreamEvent: false,
    FunctionArgument: args,
  };
}

/** The body a title-wide scheduled task posts: no caller, the task's name and id, its arguments (none here). */
function scheduledTask(args: unknown = null) {
  return { ScheduledTaskNameId: { Id: 'F00DCAFE12345678', Name: 'cubecache hourly dump' }, EventHistory: [], TitleAuthenticationContext: TITLE, GeneratePlayStreamEvent: false, FunctionArgument: args };
}

/** The body of a rule on a player's PlayStream event. */
function playStream(args: unknown) {
  return {
    PlayerProfile: { PlayerId: '1234567890ABCDEF', TitleId: TITLE.Id, DisplayName: 'player one' },
    PlayerProfileTruncated: false,
    PlayStreamEventEnvelope: { EntityId: '1234567890ABCDEF', EntityType: 'player', EventName: 'player_logged_in', EventNamespace: 'com.playfab', EventData: '{}' },
    TitleAuthenticationContext: TITLE, GeneratePlayStreamEvent: false, FunctionArgument: args,
  };
}

function settings(s: Running, extra: Record<string, string> = {}) {
  return { CUBECACHE_URL: `${s.url}/`, CUBECACHE_USER: AUTH.user, CUBECACHE_PASSWORD: AUTH.password, ...extra };
}

/** A fetch that counts its calls, so a test can check that a refused argument made no request. */
function countingFetch() {
  const counter = { calls: 0, fetch: ((input: string | URL | Request, init?: RequestInit) => { counter.calls++; return fetch(input, init); }) as typeof fetch };
  return counter;
}

async function setUp(t: TestContext, overrides = {}) {
  const fixture = await openFileStore(t);
  const s = await startServer(t, fixture, overrides);
  const counter = countingFetch();
  return { s, fixture, counter, handlers: functions.createHandlers(settings(s), { fetch: counter.fetch }) };
}

describe('cloudscript/functions (CloudScript Functions)', () => {
  test('writeCell then readCell from ExecuteFunction, writeCells and readCells in one request each', async (t) => {
    const { s, handlers, counter } = await setUp(t);
    assert.deepEqual(await handlers.writeCell!(executeFunction({ index: 7, category: 9, rotation: 1, sideA: 2, sideB: 3 })), { ok: true, index: 7, category: 9, rotation: 1, sideA: 2, sideB: 3 });
    assert.deepEqual(await handlers.readCell!(executeFunction({ index: 7 })), { ok: true, index: 7, category: 9, rotation: 1, sideA: 2, sideB: 3 });
    assert.deepEqual((await s.post('/request', { index: 7 })).json, { status: 200, category: 9, rotation: 1, sideA: 2, sideB: 3 }, 'really on the server');
    assert.deepEqual(await handlers.readCell!(playStream({ index: 0 })), { ok: true, index: 0, category: 0, rotation: 0, sideA: 0, sideB: 0 }, 'from a PlayStream rule too');
    const before = counter.calls;
    const written = await handlers.writeCells!(executeFunction({ cells: [{ index: 1, category: 1 }, { index: TEST_CELLS - 1, category: 255, sideB: 255 }] }));
    assert.deepEqual(written, { ok: true, cells: [{ index: 1, category: 1, rotation: 0, sideA: 0, sideB: 0 }, { index: TEST_CELLS - 1, category: 255, rotation: 0, sideA: 0, sideB: 255 }] });
    const read = await handlers.readCells!(executeFunction({ indexes: [TEST_CELLS - 1, 1, 2] }));
    assert.deepEqual(read, { ok: true, cells: [{ index: TEST_CELLS - 1, category: 255, rotation: 0, sideA: 0, sideB: 255 }, { index: 1, category: 1, rotation: 0, sideA: 0, sideB: 0 }, { index: 2, category: 0, rotation: 0, sideA: 0, sideB: 0 }] });
    assert.equal(counter.calls - before, 2, 'one request per batch');
  });

  test('readCellsAt: the cells as they were at an instant, in one request; a missing instant is refused before calling', async (t) => {
    const { s, handlers, counter } = await setUp(t);
    assert.equal((await s.post('/s3dump')).status, 200); // history starts at a snapshot
    await s.post('/request', { action: 1, index: 4, category: 4 });
    const then = new Date().toISOString();
    await waitFor('the clock to pass the instant', () => new Date().toISOString() > then, 1000, 1);
    await s.post('/request', { action: 1, index: 4, category: 44 });
    assert.deepEqual(await handlers.readCellsAt!(executeFunction({ indexes: [4, 5], at: then })), { ok: true, cells: [{ index: 4, category: 4, rotation: 0, sideA: 0, sideB: 0 }, { index: 5, category: 0, rotation: 0, sideA: 0, sideB: 0 }] });
    const before = counter.calls;
    assert.equal((await handlers.readCellsAt!(executeFunction({ indexes: [4] }))).field, 'at');
    assert.equal(counter.calls, before, 'refused before calling');
  });

  test('writes carry the calling player; cellHistory lists who changed a cell; rollbackPlayer is for moderators and scheduled tasks', async (t) => {
    const fixture = await openFileStore(t);
    const s = await startServer(t, fixture);
    const moderated = functions.createHandlers(settings(s, { CUBECACHE_MODERATORS: '1234567890ABCDEF' }));
    const plain = functions.createHandlers(settings(s));
    assert.equal((await s.post('/s3dump')).status, 200);
    const since = new Date().toISOString();
    await waitFor('the clock to pass the instant', () => new Date().toISOString() > since, 1000, 1);
    assert.equal((await plain.writeCell!(executeFunction({ index: 3, category: 3 }))).ok, true);
    assert.equal((await plain.writeCells!(playStream({ cells: [{ index: 4, category: 4 }] }))).ok, true);
    const history = await plain.cellHistory!(executeFunction({ index: 3, since }));
    assert.deepEqual((history.changes as Array<{ by: string }>).map((c) => c.by), ['1234567890ABCDEF'], 'the caller\'s master player account id');
    assert.equal((await plain.rollbackPlayer!(executeFunction({ by: '1234567890ABCDEF', since }))).status, 403);
    const preview = await moderated.rollbackPlayer!(executeFunction({ by: '1234567890ABCDEF', since, preview: true }));
    assert.equal(preview.restored, 2, JSON.stringify(preview));
    const done = await plain.rollbackPlayer!(scheduledTask({ by: '1234567890ABCDEF', since }));
    assert.equal(done.restored, 2, 'a scheduled task is the title\'s own');
    assert.equal((await s.post('/request', { index: 4 })).json.category, 0);
  });

  test('readBox: a box\'s cells with their x, y, z in index order, now or at an instant; indexOf and coordsOf; rollbackPlayer takes a box', async (t) => {
    // 8 across (x), 4 up (y), 6 deep (z), x fastest, then z, then y: index = x + 8 * (z + 6 * y).
    const world = { x: 8, y: 4, z: 6, order: 'xzy' };
    assert.equal(functions.indexOf(world, 3, 2, 5), 3 + 8 * (5 + 6 * 2));
    assert.deepEqual(functions.coordsOf(world, 3 + 8 * (5 + 6 * 2)), { x: 3, y: 2, z: 5 });
    const yFirst = { ...world, order: 'yxz' }; // index = y + 4 * (x + 8 * z)
    assert.equal(functions.indexOf(yFirst, 3, 2, 5), 2 + 4 * (3 + 8 * 5));
    assert.deepEqual(functions.coordsOf(yFirst, 2 + 4 * (3 + 8 * 5)), { x: 3, y: 2, z: 5 });

    const { s, handlers, counter } = await setUp(t, { cells: 192, shape: world });
    assert.equal((await s.post('/s3dump')).status, 200);
    await s.post('/request', { action: 1, index: 2 + 8 * (3 + 6 * 1), category: 5 });
    const then = new Date().toISOString();
    await waitFor('the clock to pass the instant', () => new Date().toISOString() > then, 1000, 1);
    await s.post('/request', { action: 1, index: 2 + 8 * (3 + 6 * 1), category: 6 });
    const cell = (x: number, z: number, category: number) => ({ x, y: 1, z, index: x + 8 * (z + 6), category, rotation: 0, sideA: 0, sideB: 0 });
    const before = counter.calls;
    assert.deepEqual(await handlers.readBox!(executeFunction({ box: [2, 1, 3, 2, 1, 2] })), { ok: true, cells: [cell(2, 3, 6), cell(3, 3, 0), cell(2, 4, 0), cell(3, 4, 0)] });
    assert.equal(counter.calls - before, 2, 'the world\'s shape, then one batch read');
    assert.deepEqual(await handlers.readBox!(executeFunction({ box: [2, 1, 3, 1, 1, 1], at: then })), { ok: true, cells: [cell(2, 3, 5)] });
    for (const args of [{}, { box: [0, 0, 0, 0, 1, 1] }, { box: [0, 0, 0, 1, 1] }, { box: [0, 0, 0, 100, 100, 1] }, { box: [0, 0, 0, 1, 1, 1], at: 5 }]) {
      const calls = counter.calls;
      const refused = await handlers.readBox!(executeFunction(args));
      assert.equal(refused.status, 0, JSON.stringify(args));
      assert.ok(refused.field === 'box' || refused.field === 'at', JSON.stringify(refused));
      assert.equal(counter.calls, calls, 'refused before calling');
    }
    const outside = await handlers.readBox!(executeFunction({ box: [7, 0, 0, 2, 1, 1] }));
    assert.equal(outside.field, 'box');
    assert.match(outside.error!, /outside the world along x: 7 \+ 2 > 8/);

    // The caller's changes in and out of a box; a scheduled task's rollback with the box undoes only those inside.
    const since = new Date().toISOString();
    await waitFor('the clock to pass the instant', () => new Date().toISOString() > since, 1000, 1);
    assert.equal((await handlers.writeCells!(executeFunction({ cells: [{ index: 0, category: 9 }, { index: 191, category: 9 }] }))).ok, true);
    assert.equal((await handlers.rollbackPlayer!(scheduledTask({ by: '1234567890ABCDEF', since, box: [0, 0, 0, 2, 2, 2], count: 1 }))).field, 'box');
    const done = await handlers.rollbackPlayer!(scheduledTask({ by: '1234567890ABCDEF', since, box: [0, 0, 0, 2, 2, 2] }));
    assert.equal(done.restored, 1, JSON.stringify(done));
    assert.deepEqual([(await s.post('/request', { index: 0 })).json.category, (await s.post('/request', { index: 191 })).json.category], [0, 9]);

    const flat = await setUp(t);
    const refused = await flat.handlers.readBox!(executeFunction({ box: [0, 0, 0, 1, 1, 1] }));
    assert.equal(refused.ok, false);
    assert.match(refused.error!, /flat/);
  });

  test('a conflict is ok:false with status 409 and the current cell; wrong credentials 401; the server\'s 400 passed on', async (t) => {
    const { s, handlers } = await setUp(t);
    await s.post('/request', { action: 1, index: 5, category: 3 });
    const conflict = await handlers.writeCell!(executeFunction({ index: 5, category: 9, expect: { category: 0 } }));
    assert.equal(conflict.ok, false);
    assert.equal(conflict.status, 409);
    assert.deepEqual(conflict.current, { index: 5, category: 3, rotation: 0, sideA: 0, sideB: 0 });
    const batch = await handlers.writeCells!(executeFunction({ cells: [{ index: 6, category: 1 }, { index: 5, category: 2, expect: {} }] }));
    assert.equal(batch.status, 409);
    assert.equal(batch.element, 1);
    assert.equal((await s.post('/request', { index: 6 })).json.category, 0, 'the batch wrote nothing');
    const outside = await handlers.readCell!(executeFunction({ index: TEST_CELLS }));
    assert.equal(outside.status, 400);
    assert.match(String(outside.error), /index must be between 0 and 4095/);
    const wrong = functions.createHandlers({ ...settings(s), CUBECACHE_PASSWORD: 'wrong' });
    assert.deepEqual(await wrong.readCell!(executeFunction({ index: 1 })), { ok: false, status: 401, error: 'authentication required' });
  });

  test('bad arguments and missing settings: ok:false naming the field or the settings, and no request made', async (t) => {
    const { s, handlers, counter } = await setUp(t);
    const cases: Array<[string, unknown, string, RegExp]> = [
      ['readCell', executeFunction({}), 'index', /index is missing/],
      ['readCell', executeFunction({ index: -1 }), 'index', /whole number/],
      ['readCell', executeFunction({ index: '7' }), 'index', /whole number/],
      ['writeCell', executeFunction({ index: 1, category: 256 }), 'category', /0 to 255/],
      ['writeCell', executeFunction({ index: 1, expect: 3 }), 'expect', /expect must be an object/],
      ['readCells', executeFunction({ indexes: [] }), 'indexes', /is empty/],
      ['readCells', executeFunction({ indexes: new Array(4097).fill(0) }), 'indexes', /at most 4096/],
      ['writeCells', executeFunction({ cells: [{ index: 1 }, 5] }), 'cells[1]', /cells\[1\] must be an object/],
      ['readCell', executeFunction([1]), 'FunctionArgument', /must be an object/],
      ['readCell', 'not a context', 'FunctionArgument', /execution context/],
    ];
    for (const [name, body, field, message] of cases) {
      const result = await handlers[name]!(body);
      assert.equal(result.ok, false, `${name} ${JSON.stringify(body).slice(0, 80)}`);
      assert.equal(result.status, 0);
      assert.equal(result.field, field);
      assert.match(String(result.error), message);
    }
    assert.equal(counter.calls, 0);
    const unconfigured = functions.createHandlers({ CUBECACHE_URL: s.url, CUBECACHE_USER: ' ' }, { fetch: counter.fetch });
    const missing = await unconfigured.s3dump!(scheduledTask());
    assert.deepEqual(missing.missing, ['CUBECACHE_USER', 'CUBECACHE_PASSWORD']);
    assert.match(String(missing.error), /function app settings CUBECACHE_USER, CUBECACHE_PASSWORD/);
    const badUrl = functions.createHandlers({ ...settings(s), CUBECACHE_URL: 'cubecache.example.com' }, { fetch: counter.fetch });
    assert.match(String((await badUrl.readCell!(executeFunction({ index: 1 }))).error), /CUBECACHE_URL must be an http\(s\) URL/);
    const slowSetting = functions.createHandlers({ ...settings(s), CUBECACHE_TIMEOUT_MS: '10000' }, { fetch: counter.fetch });
    assert.match(String((await slowSetting.readCell!(executeFunction({ index: 1 }))).error), new RegExp(`CUBECACHE_TIMEOUT_MS must be .* to ${functions.MAX_TIMEOUT_MS}`));
    assert.equal(counter.calls, 0);
  });

  test('s3dump from a scheduled task: answers at once (202 from the server) and the backup is committed', async (t) => {
    const { s, handlers, fixture } = await setUp(t);
    await s.post('/request', { action: 1, index: 3, category: 3 });
    const dump = await handlers.s3dump!(scheduledTask());
    assert.equal(dump.ok, true, JSON.stringify(dump));
    assert.ok(['started', 'joined'].includes(String(dump.backup)));
    assert.equal(dump.outcome, '/healthcheck');
    const backup = await waitFor('the backup in /healthcheck', async () => {
      const b = (await s.call('/healthcheck')).json.backup;
      return b.lastSuccessAt !== null && b.lastSuccessAt >= String(dump.requestedAt) ? b : undefined;
    });
    assert.equal(backup.lastBackup.bytes, TEST_CELLS * 4);
    // The first boot's snapshot (kept: BACKUP_RETAIN is 24), the change set the dump shipped first, and the dump.
    assert.equal((await fixture.store.list(`${fixture.prefix}commits/`)).length, 3);
  });

  test('no answer in time: ok:false, status 0, within the timeout; a closed server: the same, at once', async (t) => {
    // A server that accepts connections and never answers.
    const silent: Server = createServer(() => {}).listen(0, '127.0.0.1');
    await once(silent, 'listening');
    t.after(() => { silent.close(); });
    const sockets: Array<{ destroy(): void }> = [];
    silent.on('connection', (socket) => sockets.push(socket));
    t.after(() => { for (const socket of sockets) socket.destroy(); });
    const port = (silent.address() as { port: number }).port;
    const handlers = functions.createHandlers({ CUBECACHE_URL: `http://127.0.0.1:${port}`, CUBECACHE_USER: 'u', CUBECACHE_PASSWORD: 'p', CUBECACHE_TIMEOUT_MS: '300' });
    const started = performance.now();
    const result = await handlers.s3dump!(scheduledTask());
    const took = performance.now() - started;
    assert.equal(result.ok, false);
    assert.equal(result.status, 0);
    assert.match(String(result.error), /no answer within 300 ms/);
    assert.ok(took >= 250 && took < 2000, `gave up after ${Math.round(took)} ms`);

    const { s } = await setUp(t);
    const closed = functions.createHandlers(settings(s));
    await s.app.close();
    const refused = await closed.readCell!(executeFunction({ index: 1 }));
    assert.equal(refused.status, 0);
    assert.match(String(refused.error), /no answer from cubecache at http:\/\/127\.0\.0\.1:\d+\/request: .*ECONNREFUSED/);
  });

  test('during a password rotation (AUTH_PASSWORD_PREVIOUS) the settings with the old password keep working', async (t) => {
    const { s } = await setUp(t, { auth: { ...AUTH, password: 'the-new-password', previousPassword: AUTH.password } });
    const old = functions.createHandlers(settings(s));
    assert.equal((await old.readCell!(executeFunction({ index: 1 }))).ok, true);
    const rotated = functions.createHandlers({ ...settings(s), CUBECACHE_PASSWORD: 'the-new-password' });
    assert.equal((await rotated.readCell!(executeFunction({ index: 1 }))).ok, true);
  });

  test('register(): one POST function per operation with a function key, the result as the JSON body of a 200', async (t) => {
    const { s } = await setUp(t);
    const registered = new Map<string, HttpOptions>();
    functions.register({ http: (name, options) => { registered.set(name, options); } }, settings(s));
    assert.deepEqual([...registered.keys()], functions.OPERATIONS);
    assert.deepEqual([...registered.keys()], ['readCell', 'writeCell', 'readCells', 'readCellsAt', 'readBox', 'writeCells', 'cellHistory', 'rollbackPlayer', 's3dump']);
    for (const options of registered.values()) {
      assert.deepEqual(options.methods, ['POST']);
      assert.equal(options.authLevel, 'function');
    }
    const errors: string[] = [];
    const context = { error: (message: string) => { errors.push(message); } };
    // As the Functions host hands over PlayFab's POST: an HttpRequest whose json() is the execution context.
    const written = await registered.get('writeCell')!.handler({ json: async () => executeFunction({ index: 2, category: 8 }) }, context);
    assert.deepEqual(written, { status: 200, jsonBody: { ok: true, index: 2, category: 8, rotation: 0, sideA: 0, sideB: 0 } });
    assert.equal((await s.post('/request', { index: 2 })).json.category, 8);
    const notJson = await registered.get('readCell')!.handler({ json: async () => { throw new SyntaxError('Unexpected token'); } }, context);
    assert.equal(notJson.status, 200);
    assert.equal(notJson.jsonBody.ok, false);
    assert.equal(notJson.jsonBody.field, 'FunctionArgument');
    assert.equal(errors.length, 1, 'a failure is logged');
    assert.ok(!errors.join('').includes(AUTH.password), 'never the password');
  });
});
