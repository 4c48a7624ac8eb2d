/** The fuzzer's generators: random, edge-case and malformed requests, each judged by the oracle before it is sent. */
import assert from 'node:assert/strict';
import type { Agent } from 'node:http';
import { trips, CELLS, SINGLE_LIMIT, BATCH_LIMIT, BATCH_MAX, Rng, type Quad, ZERO, type Cmd, type Verdict, CMD_FIELDS, lowerAscii, judgeRequestBody, tripsDuplicateKeyBug, World, sameQuad, preview } from './fuzz-oracle.js';
import { type Req, type Probe, pickAuth, probe } from './fuzz-routes.js';


export interface Worker {
  id: number;
  rng: Rng;
  /** Own cells: [lo, hi). */
  lo: number;
  hi: number;
  /** A few cells written and read often, so conditional writes and batches meet earlier writes. */
  hot: number[];
  sent: number;
  quota: number;
}

export interface Fuzz { world: World; agent: Agent; port: number; failed: boolean }

export const owns = (w: Worker, cells: readonly number[]) => cells.every((c) => c >= w.lo && c < w.hi);
export function pickCell(w: Worker): number {
  const r = w.rng;
  return r.chance(0.6) ? r.pick(w.hot) : r.between(w.lo, w.hi - 1);
}
export function randomByte(r: Rng): number {
  return r.weighted([[3, 0], [2, 1], [2, 255], [1, 254], [1, 128], [10, r.int(256)]] as const);
}
export const randomQuad = (r: Rng): Quad => [randomByte(r), randomByte(r), randomByte(r), randomByte(r)];
export function otherQuad(r: Rng, q: Quad): Quad {
  for (;;) {
    const other = r.chance(0.5) ? randomQuad(r) : (q.map((b, i) => (i === r.int(4) ? (b + 1 + r.int(255)) % 256 : b)) as Quad);
    if (!sameQuad(other, q)) return other;
  }
}

export const WHITESPACE = ['', '', '', '', '', ' ', '\n', '\t', '\r\n', '  ', ' \t\n '];
export const ws = (r: Rng) => (r.chance(0.3) ? r.pick(WHITESPACE) : '');

/** A JSON key for `name`: random case, sometimes with \u escapes. */
export function keyText(r: Rng, name: string): string {
  let k = name;
  if (r.chance(0.3)) k = [...k].map((c) => (r.chance(0.5) ? c.toUpperCase() : c.toLowerCase())).join('');
  else if (r.chance(0.1)) k = k.toUpperCase();
  else if (r.chance(0.1)) k = k.toLowerCase();
  let out = '';
  for (const c of k) {
    if (r.chance(0.04)) {
      const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
      out += `\\u${r.chance(0.5) ? hex : hex.toUpperCase()}`;
    } else out += c;
  }
  return `"${out}"`;
}

export const intText = (r: Rng, n: number) => (n === 0 && r.chance(0.2) ? '-0' : String(n));

/** Keys that are no field, whatever their case. */
export const UNKNOWN_KEYS = ['junk', 'x', '', ' ', 'Index2', 'indexx', 'in dex', 'action ', ' action', 'sidec', 'side_a', 'side-a', 'sideAB', 'ca tegory',
  '\u0130ndex', '\u0131ndex', 'acti\u00f3n', '\u043a\u0430\u0442\u0435\u0433\u043e\u0440\u0438\u044f', '\ud83e\uddca', '__proto__', 'constructor', 'toString',
  'hasOwnProperty', 'status', 'expect2', 'expec', 'cells', 'start', 'count', 'batch', 'name', 'index\u0000', 'a\\"b', 'tab\\there'];

export const KEY_CHARS = [...'abcdefghijklmnopqrstuvwxyzABCXYZ_-0129 \u00e9\u4e16'];

export function unknownKey(r: Rng): string {
  for (;;) {
    const key = r.chance(0.7) ? r.pick(UNKNOWN_KEYS) : Array.from({ length: r.between(1, 12) }, () => r.pick(KEY_CHARS)).join('');
    const name = lowerAscii(key.replace(/\\"/g, '"').replace(/\\t/g, '\t'));
    if (!CMD_FIELDS.has(name) && name !== 'expect' && name !== 'at' && name !== 'by') return `"${key.replace(/[\u0000-\u001f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
  }
}

export const GARBAGE_NUMBERS = ['1.5', '-0.0', '1e400', '-1E-7', '0', '123456789012345678901234567890', '3', '-12', '0.000001', '2E+2', '9007199254740993'];
export const GARBAGE_STRINGS = ['""', '"x"', '"\\u0000"', '"\\ud83e\\uddca"', '"\\ud800"', '"\u00e9\u4e16"', '"\\n\\t\\r\\b\\f\\/\\\\\\""', '"{\\"index\\":1}"', '"1"', '"null"'];

/** A random JSON value (valid JSON), for unknown fields and wrong types. */
export function garbage(r: Rng, depth = 0): string {
  switch (r.int(depth > 3 ? 4 : 7)) {
    case 0: return r.pick(GARBAGE_NUMBERS);
    case 1: return r.chance(0.1) ? `"${'s'.repeat(r.between(50, 400))}"` : r.pick(GARBAGE_STRINGS);
    case 2: return r.pick(['true', 'false', 'null']);
    case 3: return r.pick(['[]', '{}', '[{}]', '[null]']);
    case 4: return `[${ws(r)}${Array.from({ length: r.between(1, 4) }, () => garbage(r, depth + 1)).join(`${ws(r)},${ws(r)}`)}${ws(r)}]`;
    case 5: return `{${Array.from({ length: r.between(1, 3) }, () => `${ws(r)}${r.chance(0.3) ? keyText(r, r.pick(['index', 'action', 'category'])) : unknownKey(r)}${ws(r)}:${ws(r)}${garbage(r, depth + 1)}`).join(',')}${ws(r)}}`;
    default: return nested(r, r.between(2, 12));
  }
}

export function nested(r: Rng, depth: number): string {
  if (r.chance(0.5)) return `${'['.repeat(depth)}${r.pick(['', '1', 'null', '{}'])}${']'.repeat(depth)}`;
  return `${'{"a":'.repeat(depth)}${r.pick(['1', 'null', '[]', '"x"'])}${'}'.repeat(depth)}`;
}

/** Reads: any action but 1 (some absent or null). */
export const READ_ACTIONS = ['omit', 'null', '0', '-0', '2', '3', '-1', '255', '256', '2147483648', '-2147483649', '4611686018427387904', '-4611686018427387904', '9007199254740993', '1099511627776'];

/**
 * A command's JSON text with random key case and order, whitespace, unknown and null fields, and duplicates
 * (an earlier decoy the later value overrides, or a later null that changes nothing). `override` replaces one
 * field's value text (for edge numbers and wrong types).
 */
export function renderCommand(r: Rng, it: Cmd, override?: { field: string; text: string }): string {
  type Member = { key: string; name: string; text: string; explicit: boolean };
  const members: Member[] = [];
  const field = (name: string, value: number | undefined) => {
    let text: string;
    if (override?.field === name) text = override.text;
    else if (name === 'action' && value === undefined) text = r.pick(READ_ACTIONS);
    else if (value === 0 && r.chance(0.45)) text = r.chance(0.6) ? 'omit' : 'null';
    else text = intText(r, value!);
    if (text !== 'omit') members.push({ key: keyText(r, name), name, text, explicit: text !== 'null' });
  };
  field('action', it.write ? 1 : undefined);
  field('index', it.index);
  (['category', 'rotation', 'sideA', 'sideB'] as const).forEach((name, i) => field(name, it.cell[i]));
  if (override?.field === 'expect') members.push({ key: keyText(r, 'expect'), name: 'expect', text: override.text, explicit: true });
  else if (it.expect) members.push({ key: keyText(r, 'expect'), name: 'expect', text: renderCell(r, it.expect), explicit: true });
  const unknown = r.weighted([[6, 0], [3, 1], [1, r.between(2, 4)]] as const);
  for (let i = 0; i < unknown; i++) members.push({ key: unknownKey(r), name: '', text: garbage(r), explicit: false });
  r.shuffle(members);
  // A condition that a later null takes back.
  if (!it.expect && r.chance(0.05)) {
    const at = r.int(members.length + 1);
    members.splice(at, 0, { key: keyText(r, 'expect'), name: '', text: renderCell(r, randomQuad(r)), explicit: false });
    members.splice(at + 1 + r.int(members.length - at), 0, { key: keyText(r, 'expect'), name: '', text: 'null', explicit: false });
  }
  for (const m of [...members]) {
    if (!m.explicit || m.name === '') continue;
    if (r.chance(0.1)) { // an earlier decoy that this one overrides
      const at = r.int(members.indexOf(m) + 1);
      const decoy = m.name === 'expect' ? (r.chance(0.3) ? 'null' : renderCell(r, randomQuad(r)))
        : r.chance(0.2) ? 'null' : String(r.between(-100_000, 100_000));
      members.splice(at, 0, { key: keyText(r, m.name), name: '', text: decoy, explicit: false });
    }
    if (m.name !== 'expect' && r.chance(0.05)) { // a later null that changes nothing (for expect, it takes the condition back)
      const at = members.indexOf(m) + 1 + r.int(members.length - members.indexOf(m));
      members.splice(at, 0, { key: keyText(r, m.name), name: '', text: 'null', explicit: false });
    }
  }
  if (members.length === 0) return r.chance(0.3) && it.index === 0 && !it.write ? 'null' : `{${ws(r)}}`;
  return `{${members.map((m) => `${ws(r)}${m.key}${ws(r)}:${ws(r)}${m.text}${ws(r)}`).join(',')}}`;
}

export function renderCell(r: Rng, q: Quad): string {
  const parts: string[] = [];
  (['category', 'rotation', 'sideA', 'sideB'] as const).forEach((name, i) => {
    if (q[i] === 0 && r.chance(0.4)) {
      if (r.chance(0.5)) parts.push(`${keyText(r, name)}:null`);
      return;
    }
    parts.push(`${ws(r)}${keyText(r, name)}${ws(r)}:${ws(r)}${intText(r, q[i]!)}`);
  });
  if (r.chance(0.15)) parts.push(`${unknownKey(r)}:${garbage(r)}`);
  if (r.chance(0.1)) parts.push(`${keyText(r, r.pick(['action', 'index']))}:${r.between(-5, 99999)}`); // not cell fields: ignored
  return `{${r.shuffle(parts).join(',')}${ws(r)}}`;
}

/** `object` (a JSON object's text, or null) with `member` ("key":value) first. */
export function prependMember(object: string, member: string): string {
  if (!object.startsWith('{')) return `{${member}}`;
  return /^\{\s*\}$/.test(object) ? `{${member}}` : `{${member},${object.slice(1)}`;
}

/** `object` (a JSON object's text) with `member` last, so it overrides any earlier duplicate. */
export function appendMember(object: string, member: string): string {
  return /^\{\s*\}$/.test(object) ? `{${member}}` : `${object.slice(0, -1)},${member}}`;
}

export function renderBatch(r: Rng, elements: string[]): string {
  return `[${ws(r)}${elements.join(`${ws(r)},${ws(r)}`)}${ws(r)}]`;
}

/** A command of this worker: a read or a write of an own cell, sometimes conditional. */
export function intentFor(w: Worker, world: World, pending?: Map<number, Quad>): Cmd {
  const r = w.rng;
  const index = pickCell(w);
  if (r.chance(0.45)) return { write: false, index, cell: r.chance(0.5) ? ZERO : randomQuad(r) };
  const cell = randomQuad(r);
  if (!r.chance(0.3)) return { write: true, index, cell };
  const current = pending?.get(index) ?? world.get(index);
  return { write: true, index, cell, expect: r.chance(0.7) ? current : otherQuad(r, current) };
}

export function requestReq(body: Buffer, r: Rng, extra: Record<string, string | string[]> = {}): Req {
  const headers: Record<string, string | string[]> = { ...extra };
  if (r.chance(0.7)) headers['Content-Type'] = 'application/json';
  const req: Req = { method: 'POST', path: '/request', headers, body };
  if (r.chance(0.1) && body.length > 0) { // chunked, in random pieces: no Content-Length to check up front
    const chunks: Buffer[] = [];
    for (let at = 0; at < body.length;) {
      const n = Math.min(body.length - at, r.between(1, Math.max(1, Math.ceil(body.length / 3))));
      chunks.push(body.subarray(at, at + n));
      at += n;
    }
    delete req.body;
    req.chunks = chunks;
  }
  return req;
}

/**
 * A POST /request probe for `body`, or undefined when it would touch another worker's cells or (unless named in
 * FUZZ_KNOWN_BUGS) trip a known bug. `intent`: what the generator meant; the oracle must agree (a check of the fuzzer itself).
 */
export function requestProbe(f: Fuzz, w: Worker, what: string, text: string | Buffer, intent?: Verdict, auth = pickAuth(w.rng), extra: Record<string, string | string[]> = {}): Probe | undefined {
  const body = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  if (intent) {
    const v = judgeRequestBody(body);
    const strip = (x: Verdict) => (x.kind === 'reject' ? { kind: x.kind, element: x.element } : x.kind === 'single' ? { kind: x.kind, cmd: x.cmd } : { kind: x.kind, cmds: x.cmds });
    if (v.kind === 'batch' && intent.kind === 'batch' && v.cmds.length === intent.cmds.length) {
      const i = v.cmds.findIndex((c, k) => JSON.stringify(c) !== JSON.stringify(intent.cmds[k]));
      assert.equal(i, -1, `fuzzer bug: element ${i} of ${preview(body, 100)} reads as ${JSON.stringify(v.cmds[i])}, meant ${JSON.stringify(intent.cmds[i])}`);
    }
    if (JSON.stringify(strip(v)) !== JSON.stringify(strip(intent))) assert.deepEqual(strip(v), strip(intent), `fuzzer bug: the oracle reads ${preview(body)} otherwise than it was meant (${JSON.stringify(v).slice(0, 500)})`);
  }
  if (!trips('duplicates') && tripsDuplicateKeyBug(body)) return undefined;
  const p = probe(what, requestReq(body, w.rng, extra), auth, f.world);
  return owns(w, p.cells) ? p : undefined;
}

// --- the generators proper: each returns a probe of this worker (or undefined to draw again) ---

export type Gen = (f: Fuzz, w: Worker) => Probe | undefined;

export const genSingle: Gen = (f, w) => {
  const cmd = intentFor(w, f.world);
  return requestProbe(f, w, cmd.expect ? 'a conditional write' : cmd.write ? 'a write' : 'a read', renderCommand(w.rng, cmd), { kind: 'single', cmd, lenient: false });
};

export const genBatch: Gen = (f, w) => {
  const r = w.rng;
  const n = r.weighted([[4, 0], [60, r.between(1, 8)], [30, r.between(9, 60)], [6, r.between(100, 400)]] as const);
  const pending = new Map<number, Quad>();
  const cmds: Cmd[] = [];
  for (let i = 0; i < n; i++) {
    const cmd = intentFor(w, f.world, pending);
    if (cmd.write) pending.set(cmd.index, cmd.cell);
    cmds.push(cmd);
  }
  return requestProbe(f, w, `a batch of ${n}`, renderBatch(r, cmds.map((c) => renderCommand(r, c))), { kind: 'batch', cmds, lenient: false });
};

export const BAD_ELEMENTS = ['[]', '[{}]', '5', '"x"', 'true', '{"index":-1}', `{"index":${CELLS}}`, '{"category":256}', '{"action":1,"rotation":1.0}',
  '{"expect":5}', '{"expect":[]}', '{"expect":{"sideA":-1}}', '{"rotation":"1"}', '{"index":1e2}', '{"sideB":[1]}', '{"action":9223372036854775808}',
  '{"index":4611686018427387907}', '{"category":{}}', '{"action":true}'];

export const genBadBatch: Gen = (f, w) => {
  const r = w.rng;
  const n = r.between(1, 30);
  const elements = Array.from({ length: n }, () => renderCommand(r, intentFor(w, f.world)));
  const bad = r.int(n);
  elements[bad] = r.pick(BAD_ELEMENTS);
  if (r.chance(0.3) && bad + 1 < n) elements[r.between(bad + 1, n - 1)] = r.pick(BAD_ELEMENTS);
  return requestProbe(f, w, `a batch whose element ${bad} is bad`, renderBatch(r, elements), { kind: 'reject', statuses: [400], why: '', element: bad });
};

/** Numbers at every edge, for any field; the oracle says which are fine where. */
export function edgeNumbers(r: Rng): string[] {
  const k = r.between(0, 9);
  const edges = ['-1', '0', '-0', '1', '254', '255', '256', '-256', String(CELLS - 1), String(CELLS), String(CELLS + 1), '2147483647', '2147483648',
    '-2147483648', '4294967295', '4294967296', '9007199254740991', '9007199254740992', '9007199254740993', String(2n ** 62n + BigInt(k)),
    String(-(2n ** 62n) - BigInt(k)), '9223372036854775808', '-9223372036854775808', '18446744073709551616', '1.0', '1e2', '1E+2', '-1e-2', '0.5',
    '1.5', '-0.0', '0e0', '1E2', '2e-1', '255.0', '1e0', '9'.repeat(400), `1${'0'.repeat(309)}`, `-${'9'.repeat(30)}`, '01', '+1', '.5', '1.', '0x10',
    'Infinity', '-Infinity', 'NaN', '-', '--1', '1_000', '\u0661', '\uff11', 'true', 'false', '"5"', '""', '[]', '[5]', '{}', '{"a":1}', 'null', '1 2', '1,'];
  // The Go seed's int64 edges for action (bug "int64", fixed).
  if (trips('int64')) edges.push('9223372036854775807', '-9223372036854775809', '9223372036854775295');
  return edges;
}

export const genEdge: Gen = (f, w) => {
  const r = w.rng;
  const cmd = intentFor(w, f.world);
  let field = r.pick(['action', 'index', 'index', 'category', 'rotation', 'sideA', 'sideB']);
  let text = r.pick(edgeNumbers(r));
  if (trips('int64') && r.chance(0.3)) { // bug "int64", fixed
    field = 'action';
    text = r.pick(['9223372036854775807', '-9223372036854775809', '9223372036854775295']);
  }
  if (r.chance(0.25) && cmd.write) { // in the condition instead
    const expect = appendMember(renderCell(r, cmd.expect ?? ZERO), `${keyText(r, r.pick(['category', 'rotation', 'sideA', 'sideB']))}:${text}`);
    return requestProbe(f, w, `expect holding ${text}`, renderCommand(r, { write: true, index: cmd.index, cell: cmd.cell }, { field: 'expect', text: expect }));
  }
  const body = renderCommand(r, cmd, { field, text });
  return requestProbe(f, w, `${field} = ${text.slice(0, 40)}`, r.chance(0.15) ? renderBatch(r, [renderCommand(r, intentFor(w, f.world)), body]) : body);
};

export const genWrongType: Gen = (f, w) => {
  const r = w.rng;
  const field = r.pick(['action', 'index', 'category', 'rotation', 'sideA', 'sideB', 'expect']);
  const text = r.chance(0.7) ? garbage(r) : nested(r, r.between(1, 20));
  return requestProbe(f, w, `${field} = ${text.slice(0, 40)}`, renderCommand(r, intentFor(w, f.world), { field, text }));
};

export const INVALID_UTF8 = [[0xff], [0xfe], [0xc0, 0x80], [0x80], [0xbf], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc3], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xef, 0xbb, 0xbf]];
export const TRAILERS = ['x', '}', ']', ',', '{}', '[]', 'null', '\u0000', ' \n', '//', '/* */', '0', ' 1', '"', '\u00a0', '\ufeff', '\u2028'];

/** A valid body, then broken a few ways: cut, tails, bytes flipped, inserted or removed, invalid UTF-8. */
export const genMutated: Gen = (f, w) => {
  const r = w.rng;
  const base = r.chance(0.75) ? renderCommand(r, intentFor(w, f.world)) : renderBatch(r, Array.from({ length: r.between(1, 5) }, () => renderCommand(r, intentFor(w, f.world))));
  let body = Buffer.from(base, 'utf8');
  const names: string[] = [];
  for (let i = r.between(1, 3); i > 0; i--) {
    const at = r.int(body.length + 1);
    switch (r.int(7)) {
      case 0: names.push('cut'); body = body.subarray(0, r.int(body.length)); break;
      case 1: names.push('tail'); body = Buffer.concat([body, Buffer.from(r.pick(TRAILERS), 'utf8')]); break;
      case 2: names.push('invalid UTF-8'); body = Buffer.concat([body.subarray(0, at), Buffer.from(r.pick(INVALID_UTF8)), body.subarray(at)]); break;
      case 3: names.push('byte flipped'); if (body.length > 0) { body = Buffer.from(body); body[r.int(body.length)] = r.chance(0.5) ? r.int(256) : r.pick([...'{}[]":,0123456789-.eE ntf'].map((c) => c.charCodeAt(0))); } break;
      case 4: names.push('byte removed'); body = Buffer.concat([body.subarray(0, at), body.subarray(at + 1)]); break;
      case 5: names.push('token inserted'); body = Buffer.concat([body.subarray(0, at), Buffer.from(r.pick(['{', '}', '[', ']', ',', ':', '"', '1', 'null', '\\', ' ', '-'])), body.subarray(at)]); break;
      default: names.push('BOM'); body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]); break;
    }
  }
  return requestProbe(f, w, `mutated (${names.join(', ')})`, body);
};

export const STRUCTURAL = ['', ' ', '\n\t\r ', '\u000b', '\u00a0', 'null', ' null ', '[]', '[ ]', '[[]]', '[null]', '[null,null]', '5', '-0', '"x"', 'true', 'false',
  '{', '}', '[', ']', '{}', '{ }', '{"":0}', '[{}, []]', '{"a" 1}', "{'index':1}", '{"index":1,}', '[1,]', '{index:1}', '\u0000', '{"index":1}{"index":2}',
  '{"index":1} {}', '[{"index":1}]]', '{"index":"1"}', '{"index":1', '"{\\"index\\":1}"', '{"action":1,"index":1,"category":1}garbage', '\ufeff{}', '{}\u0000',
  '{"expect":null}', '{"expect":{}}', '{"EXPECT":{},"action":0}', 'NaN', '[1,2,3]', '{"index":00}', '{"index":1}\n', '\t[\n{}\n]\t'];

export const genStructural: Gen = (f, w) => requestProbe(f, w, 'structural', w.rng.pick(STRUCTURAL));

export const genDeep: Gen = (f, w) => {
  const r = w.rng;
  const depth = r.weighted([[3, r.between(1, 40)], [3, r.between(55, 80)], [2, r.between(100, 300)]] as const);
  const cmd = intentFor(w, f.world);
  const base = renderCommand(r, cmd);
  const deep = nested(r, depth);
  const body = r.chance(0.3) ? deep : prependMember(base, `${unknownKey(r)}:${deep}`);
  return requestProbe(f, w, `nested ${depth} deep`, body);
};

/** Bodies at and just over the limits: 4096 bytes for one command, 1 MiB for any body, 4096 commands a batch. */
export const genHuge: Gen = (f, w) => {
  const r = w.rng;
  const cmd = intentFor(w, f.world);
  const text = renderCommand(r, cmd);
  const pad = (to: number, s: string) => (s.startsWith('{') || s.startsWith('[') ? `${s[0]}${' '.repeat(to - Buffer.byteLength(s))}${s.slice(1)}` : `${' '.repeat(to - Buffer.byteLength(s))}${s}`);
  switch (r.int(7)) {
    case 0: return requestProbe(f, w, 'one command of exactly 4096 bytes', pad(SINGLE_LIMIT, text), { kind: 'single', cmd, lenient: false });
    case 1: return requestProbe(f, w, 'one command just over 4096 bytes', pad(SINGLE_LIMIT + r.between(1, 64), text), { kind: 'reject', statuses: [413], why: '' });
    case 2: return requestProbe(f, w, 'one command padded in a string field', prependMember(text, `"pad":"${'p'.repeat(r.between(4000, 9000))}"`));
    case 3: { // a batch of exactly 1 MiB
      const cmds = Array.from({ length: r.between(1, 20) }, () => intentFor(w, f.world));
      return requestProbe(f, w, 'a batch of exactly 1 MiB', pad(BATCH_LIMIT, renderBatch(r, cmds.map((c) => renderCommand(r, c)))), { kind: 'batch', cmds, lenient: false });
    }
    case 4: return requestProbe(f, w, 'a body just over 1 MiB', pad(BATCH_LIMIT + r.between(1, 100), renderBatch(r, [text])), { kind: 'reject', statuses: [413], why: '' });
    case 5: { // 4096 commands (fine) or 4097 (too many)
      const n = BATCH_MAX + r.between(0, 1);
      const elements = Array.from({ length: n }, () => `{"index":${r.between(w.lo, w.hi - 1)}}`);
      const v: Verdict = n > BATCH_MAX ? { kind: 'reject', statuses: [413], why: '' } : judgeRequestBody(Buffer.from(`[${elements.join(',')}]`));
      return requestProbe(f, w, `a batch of ${n} commands`, `[${elements.join(',')}]`, v);
    }
    default: return requestProbe(f, w, 'a batch of 4097 nulls', `[${Array(BATCH_MAX + 1).fill('null').join(',')}]`, { kind: 'reject', statuses: [413], why: '' });
  }
};

export const BAD_QUERY_VALUES = ['-1', String(CELLS + 1), 'abc', '', '1e3', '+1', '%2B1', '%201', '1%20', '0x10', '1.0', '9'.repeat(16), '%2D1', String(2 ** 53), '%EF%BC%91', 'NaN', '1,2'];

export function queryValue(r: Rng, n: number): string {
  const text = r.chance(0.1) ? String(n).padStart(r.between(1, 15), '0') : String(n);
  return r.chance(0.08) ? [...text].map((c) => `%3${c}`).join('') : text;
}

export const genCellsRead: Gen = (f, w) => {
  const r = w.rng;
  const params: string[] = [];
  switch (r.int(5)) {
    case 0: case 1: {
      const start = r.between(w.lo, w.hi - 1);
      if (r.chance(0.95) || w.lo > 0) params.push(`start=${queryValue(r, start)}`);
      if (r.chance(0.95) || w.hi === CELLS) params.push(`count=${queryValue(r, r.between(0, w.hi - start))}`);
      break;
    }
    case 2: params.push(`start=${CELLS}`, ...(r.chance(0.5) ? ['count=0'] : [])); break;
    case 3: params.push(`start=${r.chance(0.5) ? r.pick(BAD_QUERY_VALUES) : w.lo}`, `count=${r.pick(BAD_QUERY_VALUES)}`); break;
    default: {
      const start = r.between(0, CELLS);
      params.push(`start=${start}`, `count=${CELLS - start + r.between(1, 5)}`);
    }
  }
  if (r.chance(0.1)) params.push(r.pick(['x=1', 'start=99999', 'count=', 'count=-1', 'a', '&']));
  const path = `/cells${params.length > 0 || r.chance(0.5) ? '?' : ''}${r.shuffle(params).join('&')}`;
  return ownedProbe(w, probe('GET /cells', { method: 'GET', path, headers: {} }, pickAuth(r), f.world));
};

export const genCellsWrite: Gen = (f, w) => {
  const r = w.rng;
  let start: string;
  let body: Buffer;
  switch (r.int(6)) {
    case 0: case 1: case 2: {
      const at = r.between(w.lo, w.hi - 1);
      start = queryValue(r, at);
      body = r.bytes(4 * r.between(0, Math.min(w.hi - at, r.chance(0.2) ? 256 : 16)));
      break;
    }
    case 3: start = String(r.between(w.lo, w.hi - 1)); body = r.bytes(4 * r.between(0, 4) + r.between(1, 3)); break;
    case 4: {
      const at = r.between(CELLS - 4, CELLS);
      start = String(at);
      body = r.bytes(4 * (CELLS - at + r.between(1, 3)) + (r.chance(0.3) ? r.between(1, 3) : 0));
      break;
    }
    default: start = r.pick(BAD_QUERY_VALUES); body = r.bytes(4 * r.between(0, 3));
  }
  const path = r.chance(0.05) && w.lo === 0 ? '/cells' : `/cells?start=${start}${r.chance(0.1) ? '&count=1' : ''}`;
  const req: Req = { method: 'PUT', path, headers: { 'Content-Type': 'application/octet-stream' }, body };
  if (r.chance(0.15) && body.length > 0) {
    const cut = r.int(body.length);
    req.chunks = [body.subarray(0, cut), body.subarray(cut)];
    delete req.body;
  }
  return ownedProbe(w, probe(`PUT /cells (${body.length} bytes)`, req, pickAuth(r), f.world));
};

export const RESTORE_BODIES = ['', ' ', '{}', '{"name":""}', '{"name":5}', '{"name":null}', '[]', 'null', '{"name":["x"]}', '{"name":"x"', '"x"', '{"Name":"x"}',
  '{"name":"x","name":7}', '{"__proto__":{"name":"x"}}', '{"at":"yesterday"}', '{"at":5}', '{"at":null}', '{"at":"2020-01-01T00:00:00Z","start":0,"count":1}',
  '{"name":"x","at":"2020-01-01T00:00:00Z"}'];

export const genMisc: Gen = (f, w) => {
  const r = w.rng;
  const auth = pickAuth(r);
  switch (r.int(9)) {
    case 0: return probe('healthcheck', { method: r.pick(['GET', 'HEAD']), path: r.pick(['/healthcheck', '/healthcheck?backup=1', '/healthcheck?backup=0', '/healthcheck?x']), headers: {} }, auth, f.world);
    case 1: return probe('stats', { method: 'GET', path: '/stats', headers: {} }, auth, f.world);
    case 2: return probe('metrics', { method: 'GET', path: '/metrics', headers: {} }, auth, f.world);
    case 3: return probe('backups', { method: 'GET', path: '/backups', headers: {} }, auth, f.world);
    case 4: return r.chance(0.3) ? probe('s3dump', { method: 'POST', path: '/s3dump', headers: {}, body: Buffer.from(r.pick(['{}', '', 'garbage', 'x'.repeat(5000)])) }, auth, f.world) : undefined;
    default: {
      const name = Array.from({ length: r.between(1, 30) }, () => r.pick([...'abcdefghijklmnopqrstuvwxyz0123456789._/-\u00e9'])).join('');
      const body = r.chance(0.5) ? JSON.stringify({ name }) : r.chance(0.9) ? r.pick(RESTORE_BODIES) : `{"name":"${'n'.repeat(5000)}"}`;
      return probe('restore', { method: 'POST', path: '/restore', headers: {}, body: Buffer.from(body) }, auth, f.world);
    }
  }
};

export const PATHS = ['/request', '/cells', '/healthcheck', '/stats', '/metrics', '/backups', '/s3dump', '/restore', '/request/', '/REQUEST', '/Request', '//request',
  '/request?x=1', '/request?', '/request?index=5&action=1', '/%72equest', '/request%00', '/request%2F', '/request/..', '/./request', '/request;a', '/', '/favicon.ico',
  '/cells/', '/Cells', '/healthcheck/', '/HEALTHCHECK', '/healthcheck?backup=1', '/healthcheck%3F', 'http://127.0.0.1/request', '*', '/request?\u00e9', '/\u00e9t\u00e9',
  '/request/extra', '/s3dump?x', '/..%2Frequest', '/%2e%2e/request'];
export const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND', 'PURGE', 'FOO', 'BREW', 'GETS', 'X', 'POSTX'];

/** Random methods on random paths, with or without a body. */
export const genRouting: Gen = (f, w) => {
  const r = w.rng;
  const path = r.chance(0.08) ? `/${'a'.repeat(r.between(1000, 6000))}` : r.chance(0.03) ? `/${'b'.repeat(17_000)}` : r.pick(PATHS);
  const method = r.pick(METHODS);
  const body = r.weighted([[3, undefined], [3, renderCommand(r, intentFor(w, f.world))], [1, garbage(r)]] as const);
  const req: Req = { method, path, headers: {}, ...(body === undefined ? {} : { body: Buffer.from(body) }) };
  return ownedProbe(w, probe(`${method} ${path.length > 60 ? `${path.slice(0, 30)}…(${path.length})` : path}`, req, pickAuth(r, 0.3), f.world));
};

/** Valid and invalid /request bodies under odd but legal headers. */
export const genHeaders: Gen = (f, w) => {
  const r = w.rng;
  const choice = r.int(12);
  const extra: Record<string, string | string[]> = {};
  switch (choice) {
    case 0: extra['Content-Type'] = ['application/json', 'text/plain']; break;
    case 1: extra['Content-Type'] = r.pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', '*/*', '']); break;
    case 2: extra['X-Forwarded-For'] = Array.from({ length: r.between(1, 5) }, () => `${r.int(256)}.${r.int(256)}.${r.int(256)}.${r.int(256)}`).join(', '); break;
    case 3: extra.Connection = 'close'; break;
    case 4: extra.Expect = '100-continue'; break;
    case 5: extra['Content-Encoding'] = r.pick(['gzip', 'br', 'identity']); break;
    case 6: extra['X-Big'] = 'a'.repeat(r.between(100, 8000)); break;
    case 7: for (let i = r.between(20, 200); i > 0; i--) extra[`X-H${i}`] = String(i); break;
    case 8: extra['X-Latin1'] = 'caf\u00e9 \u00ff'; break;
    case 9: extra['X-Huge'] = 'b'.repeat(17_000); break;
    case 10: extra.Expect = r.pick(['garbage', '200-ok', '100-continue-not']); break;
    default: extra.Accept = r.pick(['text/html', '*/*', 'application/octet-stream', '']); extra['Accept-Encoding'] = 'gzip, br'; break;
  }
  const text = r.chance(0.75) ? renderCommand(r, intentFor(w, f.world)) : r.pick(STRUCTURAL);
  return requestProbe(f, w, `with ${Object.keys(extra).slice(0, 3).join(', ')}`, text, undefined, pickAuth(r, choice === 9 ? 0 : 0.12), extra);
};

/**
 * Bug "duplicates" (fixed): commands with keys repeated in other case, and no '.', 'e' or 'E' anywhere (an 'e' in a key
 * is written \u0065), so the server takes its JSON.parse path. Left out with FUZZ_KNOWN_BUGS=none.
 */
export const genFastPathDuplicates: Gen = (f, w) => {
  if (!trips('duplicates')) return undefined;
  const r = w.rng;
  const cmd = intentFor(w, f.world);
  const key = (name: string) => {
    const cased = r.pick([name, name.toUpperCase(), name.toLowerCase(), name[0]!.toUpperCase() + name.slice(1)]);
    return `"${cased.replace(/e/g, '\\u0065').replace(/E/g, '\\u0045')}"`;
  };
  const cell = (q: Quad) => `{${['category', 'rotation', 'sideA', 'sideB'].map((n, i) => `${key(n)}:${q[i]}`).join(',')}}`;
  const members: string[] = [];
  const values: Array<[string, string]> = [['action', cmd.write ? '1' : r.pick(['0', '2'])], ['index', String(cmd.index)],
    ...(['category', 'rotation', 'sideA', 'sideB'] as const).map((n, i): [string, string] => [n, String(cmd.cell[i])])];
  if (cmd.expect) values.push(['expect', cell(cmd.expect)]);
  for (const [name, value] of r.shuffle(values)) {
    // Decoys first, in other case; the last one is the value.
    for (let i = r.between(0, 2); i > 0; i--) members.push(`${key(name)}:${name === 'expect' ? cell(randomQuad(r)) : name === 'action' ? r.pick(['0', '1', '7']) : String(r.between(0, 255))}`);
    members.push(`${key(name)}:${value}`);
  }
  const body = `{${members.join(',')}}`;
  assert.ok(!/[.eE]/.test(body), `fuzzer bug: ${body} has a '.', 'e' or 'E'`);
  return requestProbe(f, w, 'keys repeated in other case, no . e E in the body', body, { kind: 'single', cmd, lenient: false });
};

export function ownedProbe(w: Worker, p: Probe): Probe | undefined {
  return owns(w, p.cells) ? p : undefined;
}
