import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HttpError } from '../lib/http.js';
import { parseRawJson, RawNumber, RawObject } from '../lib/json.js';
import { encodeAnswer, parseCellCommand } from '../lib/protocol.js';

const CELLS = 16_777_216;
const zero = { category: 0, rotation: 0, sideA: 0, sideB: 0 };

function rejects(body: string, pattern: RegExp) {
  assert.throws(() => parseCellCommand(body, CELLS), (err: unknown) => {
    assert.ok(err instanceof HttpError, `expected HttpError, got ${String(err)}`);
    assert.equal(err.status, 400);
    assert.match(err.message, pattern);
    return true;
  }, `body ${body}`);
}

describe('parseCellCommand', () => {
  test('action 1 writes, every other integer action reads', () => {
    assert.deepEqual(parseCellCommand('{"action":1,"index":7,"category":9,"rotation":1,"sideA":2,"sideB":3}', CELLS),
      { write: true, index: 7, cell: { category: 9, rotation: 1, sideA: 2, sideB: 3 } });
    for (const action of [0, 2, -1, 9_000_000_000_000]) {
      assert.equal(parseCellCommand(`{"action":${action},"index":7}`, CELLS).write, false, `action ${action}`);
    }
  });

  test('missing fields, {} and null read cell 0', () => {
    assert.deepEqual(parseCellCommand('{}', CELLS), { write: false, index: 0, cell: zero });
    assert.deepEqual(parseCellCommand('null', CELLS), { write: false, index: 0, cell: zero });
    assert.deepEqual(parseCellCommand(' {"index":null,"category":null} ', CELLS), { write: false, index: 0, cell: zero });
  });

  test('keys match case-insensitively and the last duplicate wins', () => {
    assert.deepEqual(parseCellCommand('{"INDEX":7,"Action":1,"CATEGORY":9}', CELLS), { write: true, index: 7, cell: { ...zero, category: 9 } });
    assert.equal(parseCellCommand('{"index":1,"INDEX":2}', CELLS).index, 2);
    assert.equal(parseCellCommand('{"index":1,"Index":2,"iNDEX":3,"note":"e"}', CELLS).index, 3);
  });

  test('null leaves a field as an earlier duplicate set it', () => {
    assert.equal(parseCellCommand('{"index":5,"index":null,"x":"e"}', CELLS).index, 5);
  });

  test('unknown fields are ignored, whatever they hold', () => {
    assert.equal(parseCellCommand('{"index":3,"extra":{"a":[1.5,true,null,"e"]},"other":1e99}', CELLS).index, 3);
  });

  test('refuses what the seed refuses', () => {
    rejects('', /empty body/);
    rejects('   ', /empty body/);
    rejects('{', /invalid JSON/);
    rejects('{"index":1}x', /invalid JSON/);
    rejects('{"index":1} {}', /invalid JSON/);
    rejects('[]', /JSON object/);
    rejects('7', /JSON object/);
    rejects('"x"', /JSON object/);
    rejects('true', /JSON object/);
    rejects('{"index":-1}', /index must be between 0 and 16777215/);
    rejects(`{"index":${CELLS}}`, /index must be between/);
    rejects('{"index":4611686018427387911}', /index must be between/); // 2^62+7 aliased cell 7 in the seed
    rejects('{"index":2305843009213693952}', /index must be between/); // 2^61 crashed the seed
    rejects('{"index":1.5}', /index must be an integer/);
    rejects('{"index":1.0}', /index must be an integer/);
    rejects('{"index":1e2}', /index must be an integer/);
    rejects('{"index":1E2}', /index must be an integer/);
    rejects('{"index":"5"}', /index must be an integer/);
    rejects('{"index":true}', /index must be an integer/);
    rejects('{"index":[1]}', /index must be an integer/);
    rejects('{"index":{}}', /index must be an integer/);
    rejects('{"action":1,"index":1,"category":256}', /category must be between 0 and 255/);
    rejects('{"action":1,"index":1,"rotation":-1}', /rotation must be between 0 and 255/);
    rejects('{"action":1,"index":1,"sideA":1000}', /sideA must be between 0 and 255/);
    rejects('{"action":1,"index":1,"sideb":2.5}', /sideB must be an integer/);
    rejects('{"action":99999999999999999999}', /action is out of range/);
    rejects('{"index":"x","index":3}', /index must be an integer/);
  });

  test('-0 is 0', () => {
    assert.ok(Object.is(parseCellCommand('{"index":-0}', CELLS).index, 0));
  });
});

describe('encodeAnswer', () => {
  test('writes the seed answer, parseable JSON with the fields in order', () => {
    const text = encodeAnswer({ category: 9, rotation: 1, sideA: 2, sideB: 255 });
    assert.equal(text, '{"status":200,"category":9,"rotation":1,"sideA":2,"sideB":255}');
    assert.deepEqual(JSON.parse(text), { status: 200, category: 9, rotation: 1, sideA: 2, sideB: 255 });
  });
});

describe('parseRawJson', () => {
  test('keeps number text and every member in order', () => {
    const value = parseRawJson(' {"a":1.0,"a":-2e3,"b":[true,false,null,"x\\u0041"]} ');
    assert.ok(value instanceof RawObject);
    assert.deepEqual(value.members.map(([k]) => k), ['a', 'a', 'b']);
    assert.equal((value.members[0]![1] as RawNumber).text, '1.0');
    assert.equal((value.members[0]![1] as RawNumber).integer(), undefined);
    assert.deepEqual(value.members[2]![1], [true, false, null, 'xA']);
    assert.equal(new RawNumber('-12').integer(), -12);
  });

  test('agrees with JSON.parse on what is valid', () => {
    const docs = ['{}', '[]', '[1,2]', '{"a":{"b":[]}}', '"\\n"', '-0.5e-3', 'null', '{"a":1,}', '[1,]', '01', '1.', '.5', '+1', '"\u0001"',
      '{"a" 1}', 'tru', '[', '{"a":1', '"\\x"', '[1 2]', '{1:2}', 'nul', '\t[\n1\r]\n'];
    for (const doc of docs) {
      let expected = true;
      try { JSON.parse(doc); } catch { expected = false; }
      let actual = true;
      try { parseRawJson(doc); } catch { actual = false; }
      assert.equal(actual, expected, `document ${JSON.stringify(doc)}`);
    }
  });

  test('refuses nesting deeper than 64', () => {
    assert.throws(() => parseRawJson('['.repeat(100) + ']'.repeat(100)), /too deep/);
    assert.doesNotThrow(() => parseRawJson('['.repeat(60) + ']'.repeat(60)));
  });
});
