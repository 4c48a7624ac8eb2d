/** lib/auth.ts: parsing Basic credentials and checking them against the configured pair. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { basicChecker, parseBasic } from '../lib/auth.js';

const header = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('auth', () => {
  test('parseBasic reads user and password, colons allowed in the password', () => {
    assert.deepEqual(parseBasic(header('u', 'p:w:d')), { user: 'u', password: 'p:w:d' });
    assert.deepEqual(parseBasic('basic ' + Buffer.from('a:').toString('base64')), { user: 'a', password: '' });
    assert.equal(parseBasic(undefined), undefined);
    assert.equal(parseBasic('Bearer abc'), undefined);
    assert.equal(parseBasic('Basic ' + Buffer.from('nocolon').toString('base64')), undefined);
  });

  test('basicChecker accepts exactly the configured pair', () => {
    const check = basicChecker({ user: 'user', password: 'password' });
    assert.equal(check(header('user', 'password')), true);
    assert.equal(check(header('user', 'passwordx')), false);
    assert.equal(check(header('User', 'password')), false);
    assert.equal(check(header('user', '')), false);
    assert.equal(check(undefined), false);
    assert.equal(check('Basic !!!'), false);
    assert.equal(check(header('user', 'password') + 'x'), false, 'a longer header');
    assert.equal(check(header('user', 'password').slice(0, -1)), false, 'a shorter header');
    assert.equal(check(header('user', 'password').replace('Basic', 'basic')), true, 'the scheme in another case, off the fast path');
    assert.equal(check(header('user', 'password').replace('Basic ', 'Basic   ')), true, 'more spaces, off the fast path');
  });

  test('basicChecker: long credentials and non-ASCII ones take the full path and still match exactly', () => {
    const long = { user: 'u'.repeat(150), password: 'p'.repeat(300) };
    const check = basicChecker(long);
    assert.equal(check(header(long.user, long.password)), true);
    assert.equal(check(header(long.user, long.password.slice(1))), false);
    const unicode = basicChecker({ user: 'jöran', password: 'pässwörd✓' });
    assert.equal(unicode(header('jöran', 'pässwörd✓')), true);
    assert.equal(unicode(header('joran', 'passwords')), false);
  });
  test('basicChecker with a previous password (a rotation): both passwords log in, for the same user only', () => {
    const check = basicChecker({ user: 'user', password: 'new-password', previousPassword: 'old-password' });
    assert.equal(check(header('user', 'new-password')), true);
    assert.equal(check(header('user', 'old-password')), true);
    assert.equal(check(header('other', 'old-password')), false);
    assert.equal(check(header('user', 'older-password')), false);
    assert.equal(check(header('user', 'old-password').replace('Basic', 'basic')), true, 'the previous password off the fast path too');
    assert.equal(basicChecker({ user: 'user', password: 'new-password' })(header('user', 'old-password')), false, 'no previous password: only the current one');
  });
});
