/** Fuzzes failed logins against the login throttle (test/support/fuzz-oracle.ts: FUZZ_SEED picks the bad credentials). */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { test } from 'node:test';
import { openFileStore, startServer } from './support/app.js';
import { assertError, Rng, SEED } from './support/fuzz-oracle.js';
import { AUTH_VARIANTS, checkHealth, GOOD_AUTH } from './support/fuzz-routes.js';
import { send } from './support/fuzz-wire.js';

test('fuzz: repeated failed logins from one address are throttled with a JSON 429, whatever the bad credentials', async (t) => {
  const limit = 5;
  const s = await startServer(t, await openFileStore(t), { maxLoginFailures: limit });
  const port = Number(new URL(s.url).port);
  const agent = new Agent({ keepAlive: true, maxSockets: 2 });
  t.after(() => agent.destroy());
  const r = new Rng(SEED);
  const bad = AUTH_VARIANTS.filter((a) => a.kind === 'deny');
  for (let i = 0; i < limit; i++) {
    const auth = r.pick(bad);
    const res = await send(agent, port, { method: 'POST', path: '/request', headers: auth.header === undefined ? {} : { Authorization: auth.header }, body: Buffer.from('{"index":1}') });
    assert.equal(res.status, 401, `failure ${i + 1} (${auth.what}) [FUZZ_SEED=${SEED}] (replay with FUZZ_SEED=${SEED} npm test -- test/fuzz-login.test.ts)`);
    assertError(res, [401]);
  }
  const blocked = await send(agent, port, { method: 'POST', path: '/request', headers: { Authorization: GOOD_AUTH }, body: Buffer.from('{"index":1}') });
  assertError(blocked, [429]);
  assert.match(String(blocked.headers['retry-after']), /^\d+$/);
  checkHealth(await send(agent, port, { method: 'GET', path: '/healthcheck', headers: {} }), false);
});
