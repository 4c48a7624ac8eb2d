import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HttpError } from '../lib/http.js';
import { encodeAnswer, MAX_BATCH, parseRequest, type CellCommand, type RequestBody } from '../lib/protocol.js';
import { parseInstant } from '../lib/values.js';

const CELLS = 16_777_216;
const zero = { category: 0, rotation: 0, sideA: 0, sideB: 0 };

const parse = (body: string | Buffer): RequestBody => parseRequest(typeof body === 'string' ? Buffer.from(body) : body, CELLS);

/** One command's body, decoded; fails the test if it decodes as a batch. */
function parseCellCommand(body: string | Buffer, _cells: number): CellCommand {
  const parsed = parse(body);
  assert.equal(parsed.batch, false, 'one command, not a batch');
  return (parsed as { command: CellCommand }).command;
}

function refused(body: string | Buffer, status: number, pattern: RegExp) {
  assert.throws(() => parse(body), (err: unknown) => {
    assert.ok(err instanceof HttpError, `expected HttpError, got ${String(err)}`);
    assert.equal(err.status, status, `status for ${String(body).slice(0, 80)}: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  }, `body ${String(body).slice(0, 80)}`);
}

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
    rejects('[[]]', /element 0: a command must be a JSON object/);
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

describe('parseRequest: the JSON grammar', () => {
  test('agrees with JSON.parse on what is valid JSON', () => {
    const docs = ['{}', '[]', '[1,2]', '{"a":{"b":[]}}', '"\\n"', '-0.5e-3', 'null', '{"a":1,}', '[1,]', '01', '1.', '.5', '+1', '"\u0001"',
      '{"a" 1}', 'tru', '[', '{"a":1', '"\\x"', '[1 2]', '{1:2}', 'nul', '\t[\n1\r]\n', '{"a":-}', '{"a":1e}', '{"a":1e+}', '{"a":1.e3}',
      '{"a":"\\u12"}', '{"a":"\\u00e9"}', '{"a":"é"}', '{"a":[null,true,false,{"b":"c"}]}', '{"a":nulls}', '{"a":truex}', '[{}{}]', '{"a":1}}',
      '{"index":1 , "action" : 0 }', '[ null , {} ]', '{"a":"\u007f"}', '{"a":01}', '{"a":-01}', '{"a":-0}', '{"a":0.0e-0}', '[1]]'];
    for (const doc of docs) {
      let valid = true;
      try { JSON.parse(doc); } catch { valid = false; }
      let syntaxError = false;
      try { parse(doc); } catch (err) { syntaxError = err instanceof HttpError && /invalid JSON/.test(err.message); }
      assert.equal(!syntaxError, valid, `document ${JSON.stringify(doc)}`);
    }
  });

  test('bytes that are not UTF-8 inside a string are characters, as JSON.parse of the decoded text has them', () => {
    const body = Buffer.concat([Buffer.from('{"note":"'), Buffer.from([0xff, 0xc3, 0x28, 0xe2, 0x82]), Buffer.from('","index":4}')]);
    assert.equal(parseCellCommand(body, CELLS).index, 4);
    refused(Buffer.concat([Buffer.from('{"index":4}'), Buffer.from([0xc3, 0xa9])]), 400, /invalid JSON/);
    refused(Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), 400, /invalid JSON/); // a BOM is not JSON whitespace
  });

  test('a body of nothing but whitespace is empty, whatever the whitespace', () => {
    for (const body of ['', ' \n\t\r', '\f', '\v ', '\u00a0', '\ufeff']) refused(body, 400, /empty body/);
  });

  test('refuses nesting deeper than 64 without overflowing the stack', () => {
    refused('['.repeat(100) + ']'.repeat(100), 400, /too deep/);
    refused('{"x":' + '['.repeat(200_000), 400, /too deep/);
    assert.equal(parseCellCommand('{"x":' + '['.repeat(60) + ']'.repeat(60) + ',"index":2}', CELLS).index, 2);
  });
});

describe('parseRequest: keys', () => {
  test('a key with escapes is decoded before it is compared', () => {
    assert.equal(parseCellCommand('{"\\u0069ndex":6}', CELLS).index, 6);
    assert.equal(parseCellCommand('{"IN\\u0044EX":6,"inde\\u0078":7}', CELLS).index, 7);
    assert.equal(parseCellCommand('{"index\\u0000":6}', CELLS).index, 0, 'a key that only starts like a field is another key');
    assert.equal(parseCellCommand('{"indexx":6,"inde":5,"sidec":1}', CELLS).index, 0);
    // Only ASCII letters fold: U+0130 (İ) lower-cases to "i̇", not "i".
    assert.equal(parseCellCommand('{"\\u0130ndex":6}', CELLS).index, 0);
  });

  test('the last duplicate wins in a conditional write too, each occurrence checked', () => {
    const cmd = parseCellCommand('{"action":1,"index":1,"expect":{"category":1},"EXPECT":{"Category":2,"category":3}}', CELLS);
    assert.deepEqual(cmd.expect, { ...zero, category: 3 });
    assert.equal(parseCellCommand('{"action":1,"expect":{"category":1},"expect":null}', CELLS).expect, undefined);
    refused('{"expect":{"category":300},"expect":null}', 400, /^expect\.category must be between 0 and 255$/);
    refused('{"expect":{"category":"1"}}', 400, /^expect\.category must be an integer$/);
    refused('{"expect":[]}', 400, /^expect must be a JSON object$/);
    assert.deepEqual(parseCellCommand('{"expect":{"category":300,"category":3,"index":-5,"action":"x"}}', CELLS).expect, { ...zero, category: 3 });
  });
});

describe('parseRequest: numbers', () => {
  test('action is checked against int64 exactly', () => {
    assert.equal(parseCellCommand('{"action":9223372036854775807}', CELLS).write, false);
    assert.equal(parseCellCommand('{"action":-9223372036854775808}', CELLS).write, false);
    refused('{"action":9223372036854775808}', 400, /action is out of range/);
    refused('{"action":-9223372036854775809}', 400, /action is out of range/);
    refused(`{"action":${'9'.repeat(30)}}`, 400, /action is out of range/);
    refused(`{"action":${'9'.repeat(100_000)}}`, 400, /action must be an integer/); // Infinity as a double, as before
    assert.equal(parseCellCommand('{"action":1,"action":9007199254740993}', CELLS).write, false);
    assert.equal(parseCellCommand('{"action":000000001}'.replace('000000001', '1'), CELLS).write, true);
  });

  test('long integers are read as JSON.parse reads them; too long for a double is not an integer', () => {
    refused('{"index":1000000000000000000000}', 400, /index must be between/);
    refused('{"category":-1000000000000000}', 400, /category must be between 0 and 255/);
    refused(`{"index":${'1'.repeat(400)}}`, 400, /index must be an integer/);
    assert.equal(parseCellCommand('{"index":0000}'.replace('0000', '0'), CELLS).index, 0);
    assert.equal(parseCellCommand('{"index":16777215}', CELLS).index, 16_777_215);
  });
});

describe('parseRequest: batches', () => {
  test('an array is a batch, in order; null reads cell 0', () => {
    const parsed = parse('[{"action":1,"index":1,"category":5}, null ,{"index":3}]');
    assert.ok(parsed.batch);
    assert.deepEqual(parsed.commands.map((c) => [c.write, c.index]), [[true, 1], [false, 0], [false, 3]]);
    assert.deepEqual(parse('[]'), { batch: true, commands: [] });
  });

  test('errors come in the order of a parse-then-validate decoder', () => {
    refused('[{"index":-1},{"index":"x"}', 400, /invalid JSON/); // a syntax error anywhere wins
    refused('{"index":"x"} x', 400, /invalid JSON/);
    refused('[{"index":1},{"index":-1},[1],7]', 400, /^element 1: index must be between/);
    refused('[{"index":1},[{"index":1}]]', 400, /^element 1: a command must be a JSON object$/);
    refused('[1,2]', 400, /^element 0: a command must be a JSON object$/);
    refused('{"index":"x","category":300,"index":-1}', 400, /^index must be an integer$/);
    refused('{"category":300,"index":-1}', 400, /^index must be between/); // the index before the bytes, as before
    refused('{"sideB":300,"category":300}', 400, /^category must be between/);
    refused(`[${'{},'.repeat(MAX_BATCH)}{"index":-1}]`, 413, /at most 4096 commands, got 4097/); // too many wins over a bad element
    refused(`[${'{},'.repeat(MAX_BATCH)}{"index":-1}`, 400, /invalid JSON/);
  });
});

describe('parseInstant', () => {
  test('names an instant to the minute or finer, in UTC or at an offset', () => {
    assert.equal(parseInstant('2026-12-01T14:03Z'), Date.UTC(2026, 11, 1, 14, 3));
    assert.equal(parseInstant('2026-12-01T14:03:05.123Z'), Date.UTC(2026, 11, 1, 14, 3, 5, 123));
    assert.equal(parseInstant('2026-12-01T14:03:00+05:30'), Date.UTC(2026, 11, 1, 8, 33));
    assert.equal(parseInstant('2024-02-29T00:00Z'), Date.UTC(2024, 1, 29), 'a leap day');
    assert.equal(parseInstant('2000-02-29T23:59:59Z'), Date.UTC(2000, 1, 29, 23, 59, 59), 'a leap day of a year divisible by 400');
  });

  test('refuses impossible dates and times instead of rolling them over into the next day or month', () => {
    for (const text of ['2026-02-30T00:00Z', '2026-02-29T00:00Z', '1900-02-29T00:00Z', '2026-04-31T00:00Z', '2026-13-01T00:00Z', '2026-00-10T00:00Z', '2026-01-00T00:00Z',
      '2026-01-01T24:00Z', '2026-01-01T24:61Z', '2026-01-01T12:60Z', '2026-01-01T12:00:60Z', '2026-01-01T12:00+24:00', '2026-01-01T12:00+01:60']) {
      assert.equal(parseInstant(text), undefined, text);
    }
  });

  test('refuses what is not an ISO 8601 instant with a zone', () => {
    for (const text of ['yesterday', '2026-12-01', '2026-12-01T14:03', '2026-12-01 14:03Z', '1764597780000', '']) assert.equal(parseInstant(text), undefined, text);
  });
});
