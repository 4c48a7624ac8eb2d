/** The cross-site write guard: which requests a browser marks as another site's, and that curl's are not. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crossSiteRefusal } from '../lib/cross-site.js';
import { AUTH, openFileStore, startServer } from './support/app.js';

test('a request with neither Origin nor Sec-Fetch-Site (curl, PlayFab) passes', () => {
  assert.equal(crossSiteRefusal({ host: 'cube.example.com' }), undefined);
  assert.equal(crossSiteRefusal({}), undefined);
});

test('the console\'s own requests pass: same-origin, or none (typed in the address bar)', () => {
  assert.equal(crossSiteRefusal({ host: '127.0.0.1:5000', origin: 'http://127.0.0.1:5000', 'sec-fetch-site': 'same-origin' }), undefined);
  assert.equal(crossSiteRefusal({ host: '127.0.0.1:5000', 'sec-fetch-site': 'none' }), undefined);
  assert.equal(crossSiteRefusal({ host: '127.0.0.1:5000', 'sec-fetch-site': 'Same-Origin' }), undefined);
});

test('Sec-Fetch-Site cross-site or same-site is refused, whatever Origin says', () => {
  assert.match(crossSiteRefusal({ host: 'cube.example.com', 'sec-fetch-site': 'cross-site' })!, /another site.*Sec-Fetch-Site: cross-site/);
  // A sibling subdomain is another origin: it must not write with the operator's credentials either.
  assert.match(crossSiteRefusal({ host: 'cube.example.com', 'sec-fetch-site': 'same-site', origin: 'https://cube.example.com' })!, /same-site/);
  assert.ok(crossSiteRefusal({ host: 'cube.example.com', 'sec-fetch-site': 'anything-else' }));
});

test('an Origin naming another host or port is refused', () => {
  assert.match(crossSiteRefusal({ host: 'cube.example.com', origin: 'https://evil.example' })!, /Origin "https:\/\/evil.example" is not this server/);
  assert.ok(crossSiteRefusal({ host: '127.0.0.1:5000', origin: 'http://127.0.0.1:5001' }), 'another port is another origin');
  assert.ok(crossSiteRefusal({ host: 'cube.example.com', origin: 'https://cube.example.com.evil.example' }));
  assert.ok(crossSiteRefusal({ host: 'cube.example.com', origin: 'null' }), 'a sandboxed page or a file sends "null"');
  assert.ok(crossSiteRefusal({ origin: 'http://cube.example.com' }), 'an Origin without a Host to match');
  assert.ok(crossSiteRefusal({ host: 'cube.example.com', origin: 'not a url' }));
  assert.ok(crossSiteRefusal({ host: 'cube.example.com', origin: 'ftp://cube.example.com' }));
  assert.ok(crossSiteRefusal({ host: 'user@cube.example.com', origin: 'http://cube.example.com' }), 'a Host that is no plain host:port');
  assert.ok(crossSiteRefusal({ host: 'cube.example.com/x', origin: 'http://cube.example.com' }));
});

test('an Origin naming this server passes, default ports spelled or not, letters in any case', () => {
  assert.equal(crossSiteRefusal({ host: 'cube.example.com', origin: 'https://cube.example.com' }), undefined);
  assert.equal(crossSiteRefusal({ host: 'cube.example.com:443', origin: 'https://cube.example.com' }), undefined);
  assert.equal(crossSiteRefusal({ host: 'cube.example.com:80', origin: 'http://cube.example.com' }), undefined);
  assert.equal(crossSiteRefusal({ host: 'Cube.Example.com', origin: 'http://cube.example.com' }), undefined);
  assert.equal(crossSiteRefusal({ host: '[::1]:5000', origin: 'http://[::1]:5000' }), undefined);
});

test('every write route refuses a browser\'s cross-site request with a 403 and changes nothing; the same request from curl works', async (t) => {
  const s = await startServer(t, await openFileStore(t));
  const cellBytes = Buffer.from([9, 0, 0, 0]);
  const writes: Array<{ method: string; path: string; body: string | Uint8Array }> = [
    { method: 'POST', path: '/request', body: JSON.stringify({ action: 1, index: 7, category: 9 }) },
    { method: 'PUT', path: '/cells?start=8', body: cellBytes },
    { method: 'POST', path: '/s3dump', body: '{}' },
    { method: 'POST', path: '/restore', body: JSON.stringify({ at: new Date().toISOString() }) },
    { method: 'POST', path: '/rollback', body: JSON.stringify({ by: 'anyone', since: new Date(Date.now() - 1000).toISOString() }) },
  ];
  const host = new URL(s.url).host;
  const marks: Array<Record<string, string>> = [
    { 'Sec-Fetch-Site': 'cross-site', Origin: 'https://evil.example' },
    { 'Sec-Fetch-Site': 'same-site' },
    { Origin: 'https://evil.example' },
    { Origin: 'null' },
  ];
  for (const write of writes) {
    for (const headers of marks) {
      const answer = await s.call(write.path, { method: write.method, body: write.body, headers, auth: AUTH });
      assert.equal(answer.status, 403, `${write.method} ${write.path} with ${JSON.stringify(headers)}: ${answer.text}`);
      assert.equal(answer.json.status, 403);
      assert.match(answer.json.error, /a write from another site is refused/);
    }
  }
  // Nothing changed: no cell, no backup.
  assert.deepEqual([...Buffer.from((await s.call('/cells?start=7&count=2', { auth: AUTH })).text, 'latin1')], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal((await s.call('/backups', { auth: AUTH })).json.backups.length, 1, 'the first boot\'s only');
  // Reads are not writes: a GET from another site is the browser's business (it keeps the answer from the page).
  assert.equal((await s.call('/stats', { auth: AUTH, headers: { 'Sec-Fetch-Site': 'cross-site' } })).status, 200);
  // The console's own requests, and curl's, write.
  const own = await s.call('/request', { method: 'POST', body: JSON.stringify({ action: 1, index: 7, category: 9 }), auth: AUTH, headers: { 'Sec-Fetch-Site': 'same-origin', Origin: `http://${host}` } });
  assert.equal(own.status, 200, own.text);
  assert.equal((await s.call('/cells?start=8', { method: 'PUT', body: cellBytes, auth: AUTH })).status, 200);
  assert.equal((await s.post('/s3dump')).status, 200);
});
