/** lib/log.ts: one JSON line per event. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLog } from '../lib/log.js';

describe('log', () => {
  test('one JSON line per event, errors spelled out', () => {
    const lines: string[] = [];
    const log = createLog((line) => lines.push(line));
    log.error('boom', { err: Object.assign(new Error('bad'), { code: 'EX' }), n: 1 });
    assert.equal(lines.length, 1);
    assert.ok(lines[0]!.endsWith('\n'));
    const event = JSON.parse(lines[0]!);
    assert.equal(event.level, 'error');
    assert.equal(event.event, 'boom');
    assert.equal(event.n, 1);
    assert.equal(event.err.message, 'bad');
    assert.equal(event.err.code, 'EX');
  });
});
