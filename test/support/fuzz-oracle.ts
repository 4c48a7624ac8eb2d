/**
 * The fuzzer's oracle (test/fuzz-*.test.ts): its settings (FUZZ_SEED, FUZZ_KNOWN_BUGS), its seeded randomness, its own
 * JSON reader, the rules of POST /request bodies, its copy of the world, and the checks of answers against them.
 */
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { TEST_CELLS } from './app.js';

/*
 * Bugs this fuzzer found, all fixed; their generators run on every run. Setting FUZZ_KNOWN_BUGS=none leaves them out
 * (to tell a new failure from an old one while bisecting):
 * - duplicates: keys repeated (in any case) must be decoded in order, last one wins, each one checked.
 * - pipelining: a GET /cells pipelined after a write must see that write.
 * - int64: action is checked against int64 exactly (9223372036854775807 is a read, -9223372036854775809 a 400).
 * - bare: a malformed Expect (417) and an HTTP/1.1 request without Host (400) get JSON bodies too.
 */
export const KNOWN_BUGS = new Set((process.env.FUZZ_KNOWN_BUGS ?? 'all').split(',').map((s) => s.trim()).filter(Boolean));
export const trips = (bug: 'duplicates' | 'pipelining' | 'int64' | 'bare') => KNOWN_BUGS.has('all') || KNOWN_BUGS.has(bug);

export const CELLS = TEST_CELLS;
/** The documented limits; checked against the server's constants below so a change is noticed here. */
export const SINGLE_LIMIT = 4096;
export const BATCH_LIMIT = 4096 * 256;
export const BATCH_MAX = 4096;
export const WORKERS = 8;
export const BLOCK = CELLS / WORKERS;
/** Short, but well above how long this shared event loop stalls on a busy machine (the diagnostics print it). */
export const HEADERS_MS = 1000;
export const TOTAL = Number(process.env.FUZZ_REQUESTS ?? 3000);
export const SEED = parseSeed(process.env.FUZZ_SEED);

export function parseSeed(text: string | undefined): number {
  if (text === undefined || text === '') return randomInt(2 ** 32);
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** 32) throw new Error(`FUZZ_SEED must be an integer in [0, 2^32), got ${text}`);
  return value;
}

// Seeded randomness (mulberry32)

export class Rng {
  private state: number;
  constructor(seed: number) { this.state = seed >>> 0; }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number { return Math.floor(this.next() * n); }
  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number { return lo + this.int(hi - lo + 1); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(items: readonly T[]): T { return items[this.int(items.length)]!; }
  weighted<T>(entries: ReadonlyArray<readonly [number, T]>): T {
    let roll = this.next() * entries.reduce((sum, [w]) => sum + w, 0);
    for (const [w, value] of entries) if ((roll -= w) < 0) return value;
    return entries.at(-1)![1];
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

// The oracle's own JSON reader: RFC 8259, numbers kept as text, members in order with duplicates, depth

export type JVal =
  | { t: 'null' } | { t: 'bool' } | { t: 'num'; text: string } | { t: 'str'; v: string }
  | { t: 'arr'; items: JVal[] } | { t: 'obj'; members: Array<[string, JVal]> };

export const ESCAPES = new Map([['"', '"'], ['\\', '\\'], ['/', '/'], ['b', '\b'], ['f', '\f'], ['n', '\n'], ['r', '\r'], ['t', '\t']]);
export const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
export const SPACE_RE = /[ \t\n\r]*/y;
export const PLAIN_RE = /[^"\\\u0000-\u001f]+/y;
export const LITERALS: ReadonlyArray<[string, JVal]> = [['true', { t: 'bool' }], ['false', { t: 'bool' }], ['null', { t: 'null' }]];

/** The document, and the deepest level any value sits at (the top value is level 0); undefined if not JSON. */
export function readJson(text: string): { value: JVal; depth: number } | undefined {
  let at = 0;
  let depth = 0;
  const space = () => {
    SPACE_RE.lastIndex = at;
    SPACE_RE.test(text);
    at = SPACE_RE.lastIndex;
  };
  const string = (): string | undefined => {
    let out = '';
    at++;
    for (;;) {
      PLAIN_RE.lastIndex = at; // a run of plain characters at once
      if (PLAIN_RE.test(text)) { out += text.slice(at, PLAIN_RE.lastIndex); at = PLAIN_RE.lastIndex; }
      const c = text[at];
      if (c === undefined || c < ' ') return undefined;
      if (c === '"') { at++; return out; }
      const e = text[at + 1] ?? '';
      const simple = ESCAPES.get(e);
      if (simple !== undefined) { out += simple; at += 2; continue; }
      const hex = text.slice(at + 2, at + 6);
      if (e !== 'u' || !/^[0-9a-fA-F]{4}$/.test(hex)) return undefined;
      out += String.fromCharCode(parseInt(hex, 16));
      at += 6;
    }
  };
  const value = (level: number): JVal | undefined => {
    depth = Math.max(depth, level);
    space();
    const c = text[at];
    if (c === '{') {
      at++;
      const members: Array<[string, JVal]> = [];
      space();
      if (text[at] === '}') { at++; return { t: 'obj', members }; }
      for (;;) {
        space();
        if (text[at] !== '"') return undefined;
        const key = string();
        if (key === undefined) return undefined;
        space();
        if (text[at++] !== ':') return undefined;
        const member = value(level + 1);
        if (!member) return undefined;
        members.push([key, member]);
        space();
        const next = text[at++];
        if (next === '}') return { t: 'obj', members };
        if (next !== ',') return undefined;
      }
    }
    if (c === '[') {
      at++;
      const items: JVal[] = [];
      space();
      if (text[at] === ']') { at++; return { t: 'arr', items }; }
      for (;;) {
        const item = value(level + 1);
        if (!item) return undefined;
        items.push(item);
        space();
        const next = text[at++];
        if (next === ']') return { t: 'arr', items };
        if (next !== ',') return undefined;
      }
    }
    if (c === '"') {
      const s = string();
      return s === undefined ? undefined : { t: 'str', v: s };
    }
    for (const [word, literal] of LITERALS) {
      if (text.startsWith(word, at)) { at += word.length; return literal; }
    }
    NUMBER_RE.lastIndex = at;
    const number = NUMBER_RE.exec(text);
    if (!number) return undefined;
    at = NUMBER_RE.lastIndex;
    return { t: 'num', text: number[0] };
  };
  const top = value(0);
  if (!top) return undefined;
  space();
  return at === text.length ? { value: top, depth } : undefined;
}

// The oracle for POST /request bodies (the README's rules, with Go's int64 for action and index)

export type Quad = [number, number, number, number];
export const ZERO: Quad = [0, 0, 0, 0];
export interface Cmd { write: boolean; index: number; cell: Quad; expect?: Quad }
export type Verdict =
  | { kind: 'reject'; statuses: readonly number[]; why: string; element?: number }
  /** `lenient`: nested so deep that refusing it (400) is also fine. */
  | { kind: 'single'; cmd: Cmd; lenient: boolean }
  | { kind: 'batch'; cmds: Cmd[]; lenient: boolean };

export const CMD_FIELDS = new Set(['action', 'index', 'category', 'rotation', 'sidea', 'sideb']);
export const CELL_FIELDS = ['category', 'rotation', 'sidea', 'sideb'] as const;
export const INTEGER_RE = /^-?(?:0|[1-9][0-9]*)$/;
export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
/** Nesting this deep may be refused as too deep (the server's strict parser stops at 64 levels). */
export const LENIENT_DEPTH = 50;

export const lowerAscii = (s: string) => s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
export const integerOf = (v: JVal): bigint | undefined => (v.t === 'num' && INTEGER_RE.test(v.text) ? BigInt(v.text) : undefined);

export function quadOf(fields: Map<string, bigint>): Quad | string {
  const quad = CELL_FIELDS.map((name) => fields.get(name) ?? 0n);
  const bad = quad.findIndex((b) => b < 0n || b > 255n);
  return bad >= 0 ? `${CELL_FIELDS[bad]} must be a byte` : (quad.map(Number) as Quad);
}

/**
 * Set while decoding when some integer lies outside int64: Go refuses it even where a later duplicate overrides it,
 * the server once it is past a double's range; the fuzzer takes a 400 or the override.
 */
let doubtful = false;
/** The same, for the command being decoded (it counts only if the command is otherwise fine). */
let commandDoubtful = false;
export const INT_LIMIT = 2n ** 63n;

export function integerOccurrence(v: JVal): bigint | undefined {
  const n = integerOf(v);
  if (n !== undefined && (n >= INT_LIMIT || n < -INT_LIMIT)) commandDoubtful = true;
  return n;
}

export function decodeExpect(v: JVal): Quad | string {
  if (v.t !== 'obj') return 'expect must be an object';
  const fields = new Map<string, bigint>();
  for (const [key, raw] of v.members) {
    const name = lowerAscii(key);
    if (!(CELL_FIELDS as readonly string[]).includes(name) || raw.t === 'null') continue;
    const n = integerOccurrence(raw);
    if (n === undefined) return `expect.${name} must be an integer`;
    fields.set(name, n);
  }
  return quadOf(fields);
}

export function decodeCommand(v: JVal): Cmd | string {
  commandDoubtful = false;
  const cmd = decodeFields(v);
  if (typeof cmd !== 'string' && commandDoubtful) doubtful = true;
  return cmd;
}

export function decodeFields(v: JVal): Cmd | string {
  if (v.t === 'null') return { write: false, index: 0, cell: ZERO };
  if (v.t !== 'obj') return 'a command must be an object';
  const fields = new Map<string, bigint>();
  let expect: Quad | undefined;
  for (const [key, raw] of v.members) {
    const name = lowerAscii(key);
    if (name === 'expect') {
      if (raw.t === 'null') { expect = undefined; continue; }
      const cell = decodeExpect(raw);
      if (typeof cell === 'string') return cell;
      expect = cell;
      continue;
    }
    if (!CMD_FIELDS.has(name) || raw.t === 'null') continue;
    const n = integerOccurrence(raw);
    if (n === undefined) return `${name} must be an integer`;
    fields.set(name, n);
  }
  const action = fields.get('action') ?? 0n;
  const index = fields.get('index') ?? 0n;
  if (action < INT64_MIN || action > INT64_MAX) return 'action outside int64';
  if (index < 0n || index >= BigInt(CELLS)) return 'index outside the world';
  const cell = quadOf(fields);
  if (typeof cell === 'string') return cell;
  return expect ? { write: action === 1n, index: Number(index), cell, expect } : { write: action === 1n, index: Number(index), cell };
}

/** The last body judged and its verdict: a generator's self-check and the probe judge the same body. */
let lastJudged: { body: Buffer; verdict: Verdict } | undefined;

export function judgeRequestBody(body: Buffer): Verdict {
  if (lastJudged?.body.equals(body)) return lastJudged.verdict;
  const verdict = judgeBody(body);
  lastJudged = { body, verdict };
  return verdict;
}

export function judgeBody(body: Buffer): Verdict {
  if (body.length > BATCH_LIMIT) return reject([413], 'body over the batch limit');
  const doc = readJson(body.toString('utf8'));
  // One command over 4 KiB is a 413; refusing it as invalid first (400) is fine too.
  const big = body.length > SINGLE_LIMIT ? [400, 413] : [400];
  if (!doc) return reject(big, 'not JSON (or empty)');
  doubtful = false;
  const verdict = judgeDocument(doc.value, body.length, big);
  // Nested so deep, or holding integers so large, that a 400 is fine too (and names no element).
  if (doc.depth <= LENIENT_DEPTH && !doubtful) return verdict;
  if (verdict.kind !== 'reject') return { ...verdict, lenient: true };
  return reject([...new Set([...verdict.statuses, 400])], verdict.why);
}

export function reject(statuses: readonly number[], why: string, element?: number): Verdict {
  return { kind: 'reject', statuses, why, ...(element === undefined ? {} : { element }) };
}

export function judgeDocument(value: JVal, length: number, big: number[]): Verdict {
  if (value.t === 'arr') {
    const items = value.items;
    if (items.length > BATCH_MAX) return reject([413], `a batch of ${items.length} commands`);
    const cmds: Cmd[] = [];
    for (let i = 0; i < items.length; i++) {
      const cmd = items[i]!.t === 'arr' ? 'a command must be an object' : decodeCommand(items[i]!);
      if (typeof cmd === 'string') return reject([400], `element ${i}: ${cmd}`, i);
      cmds.push(cmd);
    }
    return { kind: 'batch', cmds, lenient: false };
  }
  const cmd = decodeCommand(value);
  if (typeof cmd === 'string') return reject(big, cmd);
  if (length > SINGLE_LIMIT) return reject([413], 'one command over 4 KiB');
  return { kind: 'single', cmd, lenient: false };
}

/** The cells a request reads or writes if the server accepts it. */
export function verdictCells(v: Verdict): number[] {
  if (v.kind === 'single') return [v.cmd.index];
  if (v.kind === 'batch') return v.cmds.map((c) => c.index);
  return [];
}

/**
 * True when the body trips the fast-path duplicate-key bug (see KNOWN BUGS): no '.', 'e' or 'E' anywhere, and an
 * object with two keys for the same field that differ in case. Conservative: some of these would still pass.
 */
export function tripsDuplicateKeyBug(body: Buffer): boolean {
  const text = body.toString('utf8');
  if (/[.eE]/.test(text)) return false;
  const doc = readJson(text);
  if (!doc) return false;
  const fields = new Set([...CMD_FIELDS, 'expect']);
  const objects: JVal[] = doc.value.t === 'arr' ? doc.value.items : [doc.value];
  for (let i = 0; i < objects.length; i++) {
    const o = objects[i]!;
    if (o.t !== 'obj') continue;
    const seen = new Map<string, string>();
    for (const [key, value] of o.members) {
      const name = lowerAscii(key);
      if (!fields.has(name)) continue;
      if (seen.has(name) && seen.get(name) !== key) return true;
      seen.set(name, key);
      if (name === 'expect') objects.push(value);
    }
  }
  return false;
}

// The model of the world and the checks of answers

export class World {
  readonly bytes = new Uint8Array(CELLS * 4);
  get(index: number): Quad {
    const b = this.bytes;
    const at = index * 4;
    return [b[at]!, b[at + 1]!, b[at + 2]!, b[at + 3]!];
  }
  set(index: number, cell: Quad): void { this.bytes.set(cell, index * 4); }
}

export const sameQuad = (a: Quad, b: Quad) => a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
export const answer = (q: Quad) => ({ status: 200, category: q[0], rotation: q[1], sideA: q[2], sideB: q[3] });

/** An answer, from node:http or from the raw-socket parser. */
export interface Res { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

/** What the run saw, for the diagnostics. */
export const seen = {
  statuses: new Map<number, number>(), bareErrors: 0, resets: 0, conflicts: 0, writes: 0, lenient: 0,
  raw: 0, pipelines: 0, pipelined: 0, slow: [] as number[], cutOff: [] as number[],
};

/** FUZZ_PREVIEW=<chars> shows more of each request and answer in failures (300 by default). */
export const PREVIEW = Number(process.env.FUZZ_PREVIEW ?? 300);

export function preview(data: Buffer | string, max = PREVIEW): string {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…(${text.length} chars)` : text);
}

/** Every answer: a status, never a 5xx. */
export function record(res: Res): void {
  seen.statuses.set(res.status, (seen.statuses.get(res.status) ?? 0) + 1);
  assert.ok(res.status >= 100 && res.status < 500, `a ${res.status} answer (never a 5xx): ${preview(res.body)}`);
}

export function parseJsonBody(res: Res): any { // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    return JSON.parse(res.body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * An error answer: its status is one of `allowed` and its body is {"status": <the status>, "error": "..."}.
 * `bare`: node:http answers it itself (a known bug, see KNOWN BUGS): an empty body is tolerated unless that bug is named.
 */
export function assertError(res: Res, allowed: readonly number[], { head = false, bare = false } = {}): any { // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.ok(allowed.includes(res.status), `status ${res.status}, expected ${allowed.join(' or ')}; body ${preview(res.body)}`);
  if (head) {
    assert.equal(res.body.length, 0, 'an answer to HEAD has no body');
    return undefined;
  }
  const body = parseJsonBody(res);
  if (body === undefined && bare && !trips('bare')) {
    seen.bareErrors++;
    return undefined;
  }
  assert.ok(body !== undefined && typeof body === 'object' && body !== null, `error ${res.status} without a JSON body: ${preview(res.body)}`);
  assert.match(String(res.headers['content-type']), /^application\/json/, `error ${res.status} Content-Type`);
  assert.equal(body.status, res.status, `the JSON status of a ${res.status}: ${preview(res.body)}`);
  assert.equal(typeof body.error, 'string', `the JSON error of a ${res.status}`);
  return body;
}

export function assertJson200(res: Res): any { // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(res.status, 200, `status ${res.status}, expected 200; body ${preview(res.body)}`);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const body = parseJsonBody(res);
  assert.ok(body !== undefined, `a 200 without a JSON body: ${preview(res.body)}`);
  return body;
}

/** Checks the answer to POST /request against the verdict and the model, and applies an accepted write to the model. */
export function checkRequestAnswer(v: Verdict, res: Res, world: World): void {
  if (v.kind === 'reject') {
    const body = assertError(res, v.statuses);
    if (v.element !== undefined && res.status === 400 && body) {
      const named = /element (\d+)/.exec(body.error);
      assert.equal(named ? Number(named[1]) : undefined, v.element, `the 400 must name the first bad element (${v.why}): ${body.error}`);
    }
    return;
  }
  if (v.lenient && res.status === 400) {
    seen.lenient++;
    assertError(res, [400]);
    return;
  }
  if (v.kind === 'single') {
    const { cmd } = v;
    const current = world.get(cmd.index);
    if (cmd.write && cmd.expect && !sameQuad(current, cmd.expect)) {
      const body = assertError(res, [409]);
      checkConflictBody(body, cmd.index, current, undefined);
      seen.conflicts++;
      return;
    }
    const body = assertJson200(res);
    assert.deepEqual(body, answer(cmd.write ? cmd.cell : current), `the answer for cell ${cmd.index}`);
    if (cmd.write) {
      world.set(cmd.index, cmd.cell);
      seen.writes++;
    }
    return;
  }
  const pending = new Map<number, Quad>();
  const answers: Quad[] = [];
  for (let i = 0; i < v.cmds.length; i++) {
    const cmd = v.cmds[i]!;
    const current = pending.get(cmd.index) ?? world.get(cmd.index);
    if (!cmd.write) {
      answers.push(current);
      continue;
    }
    if (cmd.expect && !sameQuad(current, cmd.expect)) {
      const body = assertError(res, [409]);
      checkConflictBody(body, cmd.index, current, i);
      seen.conflicts++;
      return;
    }
    pending.set(cmd.index, cmd.cell);
    answers.push(cmd.cell);
  }
  const body = assertJson200(res);
  assert.deepEqual(body, answers.map(answer), `the answers to a batch of ${v.cmds.length}`);
  for (const [index, cell] of pending) world.set(index, cell);
  seen.writes += pending.size;
}

/** A 409 may say where and what the cell holds; when it does, that must be right. */
export function checkConflictBody(body: any, index: number, current: Quad, element: number | undefined): void { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (body === undefined) return;
  if ('index' in body) assert.equal(body.index, index, '409 index');
  if ('category' in body) assert.deepEqual([body.category, body.rotation, body.sideA, body.sideB], current, '409: the cell as it is');
  if (element !== undefined && 'element' in body) assert.equal(body.element, element, '409 element');
}
