/** The seed's protocol and cubecache's answers, end to end over real sockets. */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import type { Server } from 'node:http';
import { BATCH_BODY_LIMIT } from '../lib/routes/request.js';
import { AUTH, openFileStore, startServer, TEST_CELLS } from './support/app.js';
import { basicHeader, waitFor } from './support/http.js';

/** Sends raw bytes on a fresh socket and returns everything the server sends back until it closes or answers. */
async function rawExchange(port: number, data: string, { end = true } = {}): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let received = '';
  socket.on('data', (chunk) => { received += chunk.toString('latin1'); });
  // The server may close while we still send (Node 24 resets the connection then, Node 20 closes it): what
  // it answered is what counts, so an error only ends the exchange (once(socket, 'close') would reject on it).
  const closed = new Promise((resolve) => socket.on('close', resolve));
  socket.on('error', () => {});
  socket.write(data);
  if (end) socket.end();
  await closed;
  return received;
}

const run = promisify(execFile);

/** The connections `server` has open. */
function connectionsOf(server: Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

describe('POST /request', () => {
  test('a write answers the cell after it, a read answers it again', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const write = await s.post('/request', { action: 1, index: 7, category: 9, rotation: 1, sideA: 2, sideB: 3 });
    assert.equal(write.status, 200);
    assert.match(String(write.headers['content-type']), /^application\/json/);
    assert.equal(write.text, '{"status":200,"category":9,"rotation":1,"sideA":2,"sideB":3}');
    const read = await s.post('/request', { index: 7 });
    assert.deepEqual(read.json, { status: 200, category: 9, rotation: 1, sideA: 2, sideB: 3 });
    assert.deepEqual((await s.post('/request', { action: 2, index: 7, category: 200 })).json, read.json, 'action 2 reads');
  });

  test('the seed\'s edge cases: null, {}, case-insensitive keys, last duplicate wins, unknown fields', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', { action: 1, index: 0, category: 5 });
    for (const body of ['null', '{}', '{"index":null}']) {
      const answer = await s.call('/request', { method: 'POST', body, auth: AUTH });
      assert.deepEqual(answer.json, { status: 200, category: 5, rotation: 0, sideA: 0, sideB: 0 }, body);
    }
    await s.call('/request', { method: 'POST', body: '{"INDEX":7,"Action":1,"CATEGORY":9,"index":8,"junk":[1.5]}', auth: AUTH });
    assert.equal((await s.post('/request', { index: 8 })).json.category, 9);
    assert.equal((await s.post('/request', { index: 7 })).json.category, 0);
  });

  test('every bad body is a 400 with a JSON error, and a rejected write changes nothing', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', { action: 1, index: 3, category: 1, rotation: 1, sideA: 1, sideB: 1 });
    const bad = ['', '{', '[[]]', '5', '"x"', '{"action":1,"index":3}x', `{"action":1,"index":${TEST_CELLS}}`, '{"action":1,"index":-1}',
      '{"action":1,"index":3,"category":1.0}', '{"action":1,"index":3,"category":1e2}', '{"action":1,"index":3,"category":"9"}',
      '{"action":1,"index":3,"category":true}', '{"action":1,"index":3,"category":9,"sideB":256}', '{"action":1,"index":3,"category":9,"rotation":-1}',
      '{"action":1,"index":4611686018427387907,"category":9}', '{"action":1.5,"index":3,"category":9}'];
    for (const body of bad) {
      const answer = await s.call('/request', { method: 'POST', body, auth: AUTH });
      assert.equal(answer.status, 400, body);
      assert.equal(answer.json.status, 400, body);
      assert.equal(typeof answer.json.error, 'string', body);
    }
    assert.deepEqual((await s.post('/request', { index: 3 })).json, { status: 200, category: 1, rotation: 1, sideA: 1, sideB: 1 });
    // Nesting far beyond any command, with no digit to send it down the strict parser at once: still a 400.
    const deep = await s.call('/request', { method: 'POST', body: '['.repeat(200_000) + ']'.repeat(200_000), auth: AUTH });
    assert.equal(deep.status, 400);
    assert.match(deep.json.error, /too deep/);
  });

  test('missing or wrong credentials: 401 with WWW-Authenticate, nothing written', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const cases = [undefined, basicHeader(AUTH.user, 'wrong'), basicHeader('other', AUTH.password), 'Bearer x', 'Basic %%%'];
    for (const authorization of cases) {
      const answer = await s.call('/request', { method: 'POST', body: { action: 1, index: 1, category: 9 }, headers: authorization ? { Authorization: authorization } : {} });
      assert.equal(answer.status, 401, String(authorization));
      assert.match(String(answer.headers['www-authenticate']), /^Basic realm="cubecache"/);
      assert.deepEqual(answer.json, { status: 401, error: 'authentication required' });
    }
    assert.equal((await s.post('/request', { index: 1 })).json.category, 0);
  });

  test('a body over the limit is a 413 and the server stays up', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const big = JSON.stringify({ index: 1, action: 1, category: 9, pad: 'x'.repeat(5000) });
    const answer = await s.call('/request', { method: 'POST', body: big, auth: AUTH });
    assert.equal(answer.status, 413, 'one command over 4 KiB');
    assert.equal(answer.json.status, 413);
    const huge = await s.call('/request', { method: 'POST', body: ' '.repeat(BATCH_BODY_LIMIT + 1), auth: AUTH });
    assert.equal(huge.status, 413, 'any body over the batch limit, refused by its Content-Length');
    // Chunked, with no Content-Length to refuse up front: counted as it arrives.
    const port = Number(new URL(s.url).port);
    const chunk = 'x'.repeat(64 * 1024);
    const chunks = Math.ceil(BATCH_BODY_LIMIT / chunk.length) + 1;
    const raw = await rawExchange(port, `POST /request HTTP/1.1\r\nHost: x\r\nAuthorization: ${basicHeader(AUTH.user, AUTH.password)}\r\nTransfer-Encoding: chunked\r\n\r\n`
      + `${chunk.length.toString(16)}\r\n${chunk}\r\n`.repeat(chunks) + '0\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 413 /);
    assert.equal((await s.post('/request', { index: 1 })).json.category, 0);
  });

  test('a node:http client sending 16 MiB reads the 413 and its JSON body: the connection closes gently, not with a reset', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    // What the server had read of each connection when it closed: all of it, unless it cut the client off mid-body.
    const readAtClose: number[] = [];
    s.app.server.on('connection', (socket: Socket) => socket.on('close', () => readAtClose.push(socket.bytesRead)));
    // The client runs in a process of its own, as clients do: sharing this event loop, it would read the
    // answer before a reset could overtake it, whether or not the server closes gently.
    const client = `
      import { request } from 'node:http';
      const body = Buffer.alloc(16 * 1024 * 1024, 0x20);
      body[0] = 0x7b; // one command's "{": a body of 16 MiB is far over its limit
      const results = [];
      for (let i = 0; i < 5; i++) {
        results.push(await new Promise((resolve) => {
          const req = request(process.argv[1], { method: 'POST', agent: false, headers: { Authorization: process.argv[2], 'Content-Length': body.length } }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk) => { text += chunk; });
            res.on('end', () => resolve({ status: res.statusCode, connection: res.headers.connection, text }));
            res.on('error', (err) => resolve({ error: err.code ?? err.message, status: res.statusCode }));
          });
          req.on('error', (err) => resolve({ error: err.code ?? err.message }));
          req.end(body);
        }));
      }
      console.log(JSON.stringify(results));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', client, `${s.url}/request`, basicHeader(AUTH.user, AUTH.password)]);
    const results = JSON.parse(stdout) as Array<{ status?: number; connection?: string; text?: string; error?: string }>;
    for (const [i, result] of results.entries()) {
      assert.equal(result.error, undefined, `request ${i}: ${JSON.stringify(result)}`);
      assert.equal(result.status, 413, `request ${i}`);
      assert.equal(result.connection, 'close', `request ${i}`);
      assert.deepEqual(JSON.parse(result.text!), { status: 413, error: `request body larger than ${BATCH_BODY_LIMIT} bytes` }, `request ${i}`);
    }
    assert.equal(results.length, 5);
    await waitFor('every refused connection closed', async () => (await connectionsOf(s.app.server)) === 0 && readAtClose.length === 5);
    // node:http alone destroys the socket once the answer is written, some 200 KiB into the body: the client
    // then often gets a reset (or EPIPE) in place of the answer. Closed gently, the body is read to its end.
    for (const read of readAtClose) assert.ok(read >= 16 * 1024 * 1024, `the server closed a connection after reading ${read} bytes of it`);
  });

  test('a request pipelined behind an answer that closes the connection is not served', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const head = (length: number) => `POST /request HTTP/1.1\r\nHost: x\r\nAuthorization: ${basicHeader(AUTH.user, AUTH.password)}\r\nContent-Length: ${length}\r\n\r\n`;
    const big = 'x'.repeat(5000);
    const write = '{"action":1,"index":3,"category":9}';
    const raw = await rawExchange(Number(new URL(s.url).port), head(big.length) + big + head(write.length) + write);
    assert.match(raw, /^HTTP\/1\.1 413 [^]*\r\nConnection: close\r\n/);
    assert.equal(raw.split('HTTP/1.1 ').length - 1, 1, `one answer only: ${raw}`);
    assert.equal((await s.post('/request', { index: 3 })).json.category, 0, 'the pipelined write was not applied');
    assert.equal(s.app.cube.version, 0);
  });

  test('a client that leaves mid-body changes nothing', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const port = Number(new URL(s.url).port);
    // What arrives is a whole, valid write: only a server that treats a hang-up as the end of the body applies it.
    const body = '{"action":1,"index":2,"category":9}';
    const head = `POST /request HTTP/1.1\r\nHost: x\r\nAuthorization: ${basicHeader(AUTH.user, AUTH.password)}\r\nContent-Length: ${body.length + 8}\r\n\r\n`;
    const accepted = once(s.app.server, 'connection');
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const [serverSide] = (await accepted) as [Socket];
    socket.write(head + body);
    await waitFor('the server to have read the write', () => serverSide.bytesRead >= head.length + body.length);
    socket.destroy();
    await once(serverSide, 'close');
    assert.equal((await s.post('/request', { index: 2 })).json.category, 0);
    assert.equal(s.app.cube.version, 0);
  });
});

describe('routing and errors', () => {
  test('GET /healthcheck: 200 without credentials, with world size, uptime, restore source and last backup', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const health = await s.call('/healthcheck');
    assert.equal(health.status, 200);
    assert.equal(health.json.status, 200);
    assert.equal(health.json.cells, TEST_CELLS);
    assert.equal(health.json.bytes, TEST_CELLS * 4);
    assert.equal(typeof health.json.uptimeSeconds, 'number');
    assert.deepEqual(health.json.backup.restoredFrom, { kind: 'empty' });
    assert.equal(health.json.backup.backupsTotal, 0, 'the first boot\'s snapshot is the base history starts from, not a backup');
    await s.post('/s3dump');
    const after = await s.call('/healthcheck');
    assert.equal(typeof after.json.backup.lastBackup.createdAt, 'string');
    assert.equal(after.json.backup.backupsTotal, 1);
    const head = await s.call('/healthcheck', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
  });

  test('POST /s3dump answers with the backup it wrote', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', { action: 1, index: 1, category: 1 });
    const dump = await s.call('/s3dump', { method: 'POST', body: '{}', auth: AUTH });
    assert.equal(dump.status, 200);
    const { backup } = dump.json;
    assert.match(backup.name, /^\d{8}T\d{9}Z-[0-9a-f]{8}$/);
    assert.equal(backup.bytes, TEST_CELLS * 4);
    assert.ok(backup.compressedBytes > 0 && backup.compressedBytes < backup.bytes);
    assert.match(backup.sha256, /^[0-9a-f]{64}$/);
    assert.equal(typeof backup.durationMs, 'number');
    assert.equal((await s.call('/s3dump', { method: 'POST', body: '{}' })).status, 401);
  });
});
