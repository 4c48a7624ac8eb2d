/** Binary ranges: GET /cells exports raw cells, PUT /cells imports them, end to end. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { AUTH, openFileStore, startServer, TEST_CELLS } from './support/app.js';
import { basicHeader, call, cell, waitFor } from './support/http.js';

describe('binary ranges', () => {
  test('GET /cells exports raw bytes; PUT /cells imports them; a whole world moves between servers', async (t) => {
    const a = await startServer(t, await openFileStore(t));
    await a.post('/request', [{ action: 1, index: 0, category: 1, rotation: 2, sideA: 3, sideB: 4 }, { action: 1, index: TEST_CELLS - 1, category: 255 }]);
    const range = await call(a.url, '/cells?start=0&count=2', { auth: AUTH });
    assert.equal(range.status, 200);
    assert.equal(range.headers['content-type'], 'application/octet-stream');
    assert.equal(range.headers['content-length'], '8');
    const whole = await rawGet(a.url, '/cells');
    assert.equal(whole.length, TEST_CELLS * 4);
    assert.deepEqual([...whole.subarray(0, 4)], [1, 2, 3, 4]);
    assert.equal(whole[TEST_CELLS * 4 - 4], 255);
    const b = await startServer(t, await openFileStore(t));
    const put = await call(b.url, '/cells', { method: 'PUT', body: whole, auth: AUTH, headers: { 'Content-Type': 'application/octet-stream' } });
    assert.deepEqual(put.json, { status: 200, start: 0, cells: TEST_CELLS });
    assert.ok((await rawGet(b.url, '/cells')).equals(whole));
    assert.equal((await call(b.url, '/stats', { auth: AUTH })).json.cellsInUse, 2);
    const partial = await call(b.url, '/cells?start=10', { method: 'PUT', body: new Uint8Array([9, 9, 9, 9]), auth: AUTH });
    assert.deepEqual(partial.json, { status: 200, start: 10, cells: 1 });
    assert.deepEqual((await b.post('/request', { index: 10 })).json, { status: 200, ...cell(9, 9, 9, 9) });
  });

  test('bad ranges are 400 or 413 and change nothing', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    for (const query of ['start=-1', 'start=x', `start=${TEST_CELLS + 1}`, `start=1&count=${TEST_CELLS}`, 'count=1.5', 'start=1e3']) {
      assert.equal((await call(s.url, `/cells?${query}`, { auth: AUTH })).status, 400, query);
    }
    assert.equal((await call(s.url, '/cells?start=0', { method: 'PUT', body: new Uint8Array(5), auth: AUTH })).status, 400);
    assert.equal((await call(s.url, `/cells?start=${TEST_CELLS - 1}`, { method: 'PUT', body: new Uint8Array(8), auth: AUTH })).status, 413);
    assert.equal((await call(s.url, '/cells', { auth: false })).status, 401);
    assert.equal(s.app.cube.version, 0);
  });

  test('a PUT whose client leaves mid-body changes nothing', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const accepted = once(s.app.server, 'connection');
    const socket = connect(Number(new URL(s.url).port), '127.0.0.1');
    await once(socket, 'connect');
    const [serverSide] = (await accepted) as [Socket];
    const head = `PUT /cells HTTP/1.1\r\nHost: x\r\nAuthorization: ${basicHeader(AUTH.user, AUTH.password)}\r\nContent-Length: 4096\r\n\r\n`;
    socket.write(head);
    socket.write(Buffer.alloc(2048, 7));
    await waitFor('the server to have read part of the body', () => serverSide.bytesRead >= head.length + 2048);
    socket.destroy();
    await once(serverSide, 'close');
    assert.equal((await s.post('/request', { index: 0 })).json.category, 0);
    assert.equal(s.app.cube.version, 0);
  });
});

/** The whole body of a GET, as bytes. */
async function rawGet(base: string, path: string): Promise<Buffer> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    request(new URL(path, base), { headers: { Authorization: basicHeader(AUTH.user, AUTH.password) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    }).on('error', reject).end();
  });
}
