/** lib/routes/query.ts: every route takes only the query parameters it declares, each once; anything else is a 400 naming it, and nothing changes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUTH, openFileStore, startServer } from './support/app.js';
import { call, cell, type CallOptions } from './support/http.js';

/** One request per route and method, each valid as it stands (a known parameter where the route takes one). */
const ROUTES: Array<{ method: string; path: string; query: string; body?: CallOptions['body'] }> = [
  { method: 'POST', path: '/request', query: '', body: { action: 1, index: 0, category: 7 } },
  { method: 'POST', path: '/s3dump', query: 'async=0', body: {} },
  { method: 'GET', path: '/healthcheck', query: 'backup=1' },
  { method: 'HEAD', path: '/healthcheck', query: 'backup=1' },
  { method: 'GET', path: '/backups', query: '' },
  { method: 'POST', path: '/restore', query: 'by=op', body: { at: '2026-12-01T14:03:00Z', start: 0, count: 1 } },
  { method: 'GET', path: '/history', query: 'start=0&count=1' },
  { method: 'POST', path: '/rollback', query: 'by=op', body: { by: 'griefer', since: '2026-12-01T14:03:00Z' } },
  { method: 'GET', path: '/cells', query: 'start=0&count=1' },
  { method: 'PUT', path: '/cells', query: 'start=0', body: new Uint8Array([7, 7, 7, 7]) },
  { method: 'GET', path: '/stats', query: '' },
  { method: 'GET', path: '/metrics', query: '' },
  { method: 'GET', path: '/map.png', query: 'view=top&scale=1' },
];

/** A world with a shape (16 x 16 x 16), so that /map.png and boxes are served. */
const SHAPED = { cells: 4096, shape: { x: 16, y: 16, z: 16, order: 'xzy' } };

test('a parameter a route does not take is a 400 naming it, on every route, and nothing changes', async (t) => {
  const s = await startServer(t, await openFileStore(t), SHAPED);
  const backupsBefore = (await call(s.url, '/backups', { auth: AUTH })).json.backups; // the first boot's snapshot
  for (const route of ROUTES) {
    for (const [query, named] of [
      [`${route.query}${route.query ? '&' : ''}strat=100`, /"strat"/],
      ['cout=1&x', /"cout", "x"/],
    ] as const) {
      const answer = await call(s.url, `${route.path}?${query}`, { method: route.method, body: route.body, auth: AUTH });
      assert.equal(answer.status, 400, `${route.method} ${route.path}?${query}: ${answer.text}`);
      if (route.method !== 'HEAD') {
        assert.match(answer.json.error, named, `${route.method} ${route.path}?${query} names the parameter`);
        assert.match(answer.json.error, /unknown query parameter/);
      }
    }
  }
  assert.equal(s.app.cube.version, 0, 'no cell was written');
  assert.deepEqual((await call(s.url, '/backups', { auth: AUTH })).json.backups, backupsBefore, 'no backup was made');
});

test('a parameter given twice is a 400 naming it, on every route that takes one', async (t) => {
  const s = await startServer(t, await openFileStore(t), SHAPED);
  for (const route of ROUTES.filter((r) => r.query !== '')) {
    const first = route.query.split('&')[0]!;
    const answer = await call(s.url, `${route.path}?${route.query}&${first}`, { method: route.method, body: route.body, auth: AUTH });
    assert.equal(answer.status, 400, `${route.method} ${route.path}?${route.query}&${first}: ${answer.text}`);
    if (route.method !== 'HEAD') assert.match(answer.json.error, new RegExp(`${first.split('=')[0]} is given more than once`));
  }
  assert.equal(s.app.cube.version, 0, 'no cell was written');
});

test('the typos of the issue: PUT /cells?strat=100 writes nothing, GET /cells?cout=1 sends no world', async (t) => {
  const s = await startServer(t, await openFileStore(t), SHAPED);
  const put = await call(s.url, '/cells?strat=100', { method: 'PUT', body: new Uint8Array([9, 9, 9, 9]), auth: AUTH });
  assert.deepEqual(put.json, { status: 400, error: 'unknown query parameter "strat": this route takes start, box, by' });
  assert.deepEqual((await s.post('/request', { index: 0 })).json, { status: 200, ...cell(0) });
  const get = await call(s.url, '/cells?cout=1', { auth: AUTH });
  assert.equal(get.status, 400);
  assert.equal(get.headers['content-type'], 'application/json');
  // The connection stays usable after a refused body: the next request on the same route works.
  assert.deepEqual((await call(s.url, '/cells?start=100', { method: 'PUT', body: new Uint8Array([9, 9, 9, 9]), auth: AUTH })).json, { status: 200, start: 100, cells: 1 });
});

test('the parameters a route takes still work, and an empty query is no parameter', async (t) => {
  const s = await startServer(t, await openFileStore(t), SHAPED);
  for (const route of ROUTES) {
    const answer = await call(s.url, `${route.path}?${route.query}`, { method: route.method, body: route.body, auth: AUTH });
    // A restore or rollback to an instant before the server started is outside the history it keeps: a 400 that is not about the query.
    if (answer.status === 400) assert.doesNotMatch(answer.json.error, /query parameter/, `${route.method} ${route.path}?${route.query}`);
    else assert.ok(answer.status < 300, `${route.method} ${route.path}?${route.query}: ${answer.status} ${answer.text}`);
  }
  assert.equal((await call(s.url, '/request?', { method: 'POST', body: { index: 0 }, auth: AUTH })).status, 200);
});
