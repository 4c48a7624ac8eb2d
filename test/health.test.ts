/** lib/routes/health.ts: the role and replication in /healthcheck (the details only for a caller with the credentials) and /metrics. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ReplicationStatus, RoleView } from '../lib/role.js';
import { AUTH, openFileStore, startServer } from './support/app.js';

/** A standby's role as the standby machinery would report it. */
function standbyRole(status: ReplicationStatus): RoleView {
  return { kind: 'standby', writeTarget: async () => status.leaderUrl, status: () => status };
}

const FOLLOWING: ReplicationStatus = { role: 'standby', leaderUrl: 'http://10.0.1.23:5000', mode: 'sync', state: 'following', lagMs: 12, lagLsn: 3 };

describe('role and replication in health and metrics', () => {
  test('a server alone on its prefix leads: role leader to anyone, its address and replication state none to a caller with credentials', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const open = await s.call('/healthcheck');
    assert.equal(open.json.role, 'leader');
    assert.equal(open.json.replication, undefined);
    const authed = await s.call('/healthcheck', { auth: AUTH });
    assert.deepEqual(authed.json.replication, { role: 'leader', mode: 'sync', state: 'none', leaderUrl: s.url });
    const metrics = (await s.call('/metrics', { auth: AUTH })).text;
    assert.match(metrics, /^cubecache_role_leader 1$/m);
    assert.match(metrics, /^cubecache_replication_state\{state="none"\} 1$/m);
    assert.match(metrics, /^cubecache_replication_lag_ms 0$/m);
  });

  test('a standby: its role to anyone; the leader\'s address, state and lag only with the right credentials, and a wrong password is no 401 but counts as a failed login', async (t) => {
    const s = await startServer(t, await openFileStore(t), { role: standbyRole(FOLLOWING), maxLoginFailures: 2 });
    const open = await s.call('/healthcheck');
    assert.equal(open.status, 200);
    assert.equal(open.json.role, 'standby');
    assert.equal(open.json.replication, undefined);
    assert.doesNotMatch(open.text, /10\.0\.1\.23/, 'the leader\'s address is not public');
    assert.deepEqual((await s.call('/healthcheck', { auth: AUTH })).json.replication, FOLLOWING);
    const wrong = { user: AUTH.user, password: 'guess' };
    for (let i = 0; i < 2; i++) {
      const guessed = await s.call('/healthcheck', { auth: wrong });
      assert.equal(guessed.status, 200);
      assert.equal(guessed.json.replication, undefined);
    }
    // The address is throttled now: even the right password shows nothing, so /healthcheck tests no password past the limit.
    const throttled = await s.call('/healthcheck', { auth: AUTH });
    assert.equal(throttled.status, 200);
    assert.equal(throttled.json.replication, undefined);
    assert.equal((await s.call('/stats', { auth: AUTH })).status, 429);
  });

  test('/metrics: role, lag in ms and changes, one state gauge per state with 1 on the current one', async (t) => {
    const s = await startServer(t, await openFileStore(t), { role: standbyRole(FOLLOWING) });
    const metrics = (await s.call('/metrics', { auth: AUTH })).text;
    assert.match(metrics, /^cubecache_role_leader 0$/m);
    assert.match(metrics, /^cubecache_replication_lag_ms 12$/m);
    assert.match(metrics, /^cubecache_replication_lag_changes 3$/m);
    for (const state of ['none', 'sync', 'alone', 'catching-up', 'seeking']) assert.match(metrics, new RegExp(`^cubecache_replication_state\\{state="${state}"\\} 0$`, 'm'), state);
    assert.match(metrics, /^cubecache_replication_state\{state="following"\} 1$/m);
    assert.equal(metrics.match(/^# HELP cubecache_replication_state /gm)?.length, 1);
  });
});
