/** GET /stats and GET /metrics, end to end. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AUTH, openFileStore, startServer, TEST_CELLS } from './support/app.js';
import { call } from './support/http.js';

describe('stats and metrics', () => {
  test('GET /stats: cells in use, categories, bytes written since the last backup', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', [{ action: 1, index: 1, category: 5 }, { action: 1, index: 2, category: 5 }, { action: 1, index: 3, sideB: 1 }]);
    const stats = await call(s.url, '/stats', { auth: AUTH });
    assert.deepEqual(stats.json, { status: 200, cells: TEST_CELLS, shape: null, order: null, cellsInUse: 3, categories: { 0: TEST_CELLS - 2, 5: 2 }, bytesWrittenSinceBackup: 12, unsavedChanges: true });
    await s.post('/s3dump');
    const after = await call(s.url, '/stats', { auth: AUTH });
    assert.equal(after.json.bytesWrittenSinceBackup, 0);
    assert.equal(after.json.unsavedChanges, false);
  });

  test('GET /metrics: Prometheus text with requests, latency, cells, backups, event loop and memory', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', { action: 1, index: 1, category: 1 });
    await s.post('/request', [{ index: 1 }, { index: 2 }]);
    await s.post('/s3dump');
    await s.call('/request', { method: 'POST', body: {} }); // a 401
    const metrics = await call(s.url, '/metrics', { auth: AUTH });
    assert.equal(metrics.status, 200);
    assert.match(String(metrics.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const value = (line: string) => {
      const match = metrics.text.split('\n').find((l) => l.startsWith(`${line} `));
      assert.ok(match, `no line ${line}`);
      return Number(match.slice(line.length + 1));
    };
    assert.equal(value('cubecache_http_requests_total{route="/request",status="200"}'), 2);
    assert.equal(value('cubecache_http_requests_total{route="/request",status="401"}'), 1);
    assert.equal(value('cubecache_http_request_duration_seconds_count{route="/request"}'), 3);
    assert.equal(value('cubecache_cells_written_total'), 1);
    assert.equal(value('cubecache_cells_read_total'), 2);
    assert.equal(value('cubecache_backups_total'), 1);
    assert.equal(value('cubecache_backup_failures_total'), 0);
    assert.ok(value('cubecache_backup_last_success_timestamp_seconds') > 1.7e9);
    assert.equal(value('cubecache_unsaved_changes'), 0);
    assert.ok(value('process_resident_memory_bytes') > 0);
    assert.ok(value('cubecache_event_loop_delay_seconds{quantile="0.99"}') >= 0);
    for (const line of metrics.text.trim().split('\n')) {
      assert.match(line, /^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? -?[\d.e+-]+)$/, `not exposition format: ${line}`);
    }
    assert.equal((await call(s.url, '/metrics')).status, 401);
  });
});
