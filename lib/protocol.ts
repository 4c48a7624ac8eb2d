/** The seed's /request protocol: decode and validate bodies into typed commands, encode answers. */
import type { Cell } from './cube.js';
import { HttpError } from './http.js';
import { JsonSyntaxError, MAX_JSON_DEPTH, parseRawJson, RawNumber, RawObject } from './json.js';

/** One validated command: a write of `cell` at `index` (only if the cell holds `expect`, when given), or a read of it. */
export interface CellCommand { write: boolean; index: number; cell: Cell; expect?: Cell }

/** A /request body: one command (the seed's protocol) or a batch of them (a JSON array). */
export type RequestBody = { batch: false; command: CellCommand } | { batch: true; commands: CellCommand[] };

/** The longest batch one request may carry. */
export const MAX_BATCH = 4096;

type Field = 'action' | 'index' | keyof Cell;
const CELL_FIELDS = new Map<string, keyof Cell>([['category', 'category'], ['rotation', 'rotation'], ['sidea', 'sideA'], ['sideb', 'sideB']]);
// Lower-case key → field: the seed (Go's encoding/json) matches keys case-insensitively.
const FIELDS = new Map<string, Field>([
  ['action', 'action'], ['index', 'index'], ['category', 'category'],
  ['rotation', 'rotation'], ['sidea', 'sideA'], ['sideb', 'sideB'],
]);
// The seed's action and index are Go ints (int64): anything outside is an error there too.
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const FIELD_BITS: Record<Field, number> = { action: 1, index: 2, category: 4, rotation: 8, sideA: 16, sideB: 32 };
const EXPECT_BIT = 64;

/** Decodes a /request body holding one command; 400 (naming the problem) for anything the seed would refuse. */
export function parseCellCommand(body: string, cells: number): CellCommand {
  return withExactParse(body, (value) => decodeCommand(value, cells));
}

/** Decodes a /request body: an array is a batch (every element checked; the first bad one named), anything else one command. */
export function parseRequest(body: string, cells: number): RequestBody {
  return withExactParse(body, (value) => decodeRequest(value, cells));
}

function decodeRequest(value: unknown, cells: number): RequestBody {
  if (!Array.isArray(value)) return { batch: false, command: decodeCommand(value, cells) };
  if (value.length > MAX_BATCH) throw new HttpError(413, `a batch holds at most ${MAX_BATCH} commands, got ${value.length}`);
  const commands = new Array<CellCommand>(value.length);
  for (let i = 0; i < value.length; i++) {
    const element: unknown = value[i];
    if (Array.isArray(element)) throw new HttpError(400, `element ${i}: a command must be a JSON object`);
    commands[i] = decodeCommand(element, cells, `element ${i}: `);
  }
  return { batch: true, commands };
}

/** The answer to a command: the cell after the request, as the seed writes it. */
export function encodeAnswer(cell: Cell): string {
  return `{"status":200,"category":${cell.category},"rotation":${cell.rotation},"sideA":${cell.sideA},"sideB":${cell.sideB}}`;
}

/** Thrown by the decoders when JSON.parse's view of a body is not exact enough; the body is parsed again, strictly. */
class NeedsExactParse extends Error {}

/**
 * Parses the body and decodes it. JSON.parse is fast but loses what the seed's protocol depends on: a
 * number's source text (1.0 and 1e2 must be refused; int64 edges must be exact) and repeated keys (each is
 * checked, the last one wins, in any case). Bodies where that could matter go through the strict parser:
 * a digit followed by '.', 'e' or 'E' (every fraction and exponent has one), a run of 16 digits (beyond a
 * double's exact integers), a repeated key, or keys that repeat in another case (found while decoding).
 */
function withExactParse<T>(body: string, decode: (value: unknown) => T): T {
  if (body.trim() === '') throw new HttpError(400, 'empty body');
  try {
    if (!/\d[.eE]|\d{16}/.test(body)) {
      const value: unknown = JSON.parse(body);
      // JSON.parse keeps one of a repeated key: as many ':' in the text as keys in the value proves there was none.
      if (countColons(body) === countKeys(value)) {
        try {
          return decode(value);
        } catch (err) {
          if (!(err instanceof NeedsExactParse)) throw err;
        }
      }
    }
    return decode(parseRawJson(body));
  } catch (err) {
    if (err instanceof SyntaxError || err instanceof JsonSyntaxError) throw new HttpError(400, `invalid JSON: ${err.message}`);
    throw err;
  }
}

function countColons(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 58) n++;
  return n;
}

/** Keys in every object of a JSON.parse value; -1 past the strict parser's depth (which then refuses it). */
function countKeys(value: unknown, depth = 0): number {
  if (typeof value !== 'object' || value === null) return 0;
  if (depth > MAX_JSON_DEPTH) return -1;
  let n = 0;
  const add = (count: number) => {
    if (count < 0 || n < 0) n = -1;
    else n += count;
  };
  if (Array.isArray(value)) {
    for (const item of value) add(countKeys(item, depth + 1));
    return n;
  }
  for (const key in value) {
    const inner = countKeys((value as Record<string, unknown>)[key], depth + 1);
    add(inner < 0 ? -1 : 1 + inner);
  }
  return n;
}

/** Validates one decoded command; `where` prefixes messages (e.g. "element 3: ") for batches. */
export function decodeCommand(value: unknown, cells: number, where = ''): CellCommand {
  const fields = { action: 0, index: 0, category: 0, rotation: 0, sideA: 0, sideB: 0 };
  let expect: Cell | undefined;
  if (value !== null) { // the seed reads cell 0 for `null`
    if (typeof value !== 'object' || Array.isArray(value) || value instanceof RawNumber) {
      throw new HttpError(400, `${where}a command must be a JSON object`);
    }
    const exact = value instanceof RawObject;
    const members = exact ? value.members : Object.entries(value);
    let seen = 0;
    for (const [key, raw] of members) {
      const lower = key.toLowerCase();
      if (lower === 'expect') {
        if (!exact && seen & EXPECT_BIT) throw new NeedsExactParse();
        seen |= EXPECT_BIT;
        expect = raw === null ? undefined : decodeCell(raw, `${where}expect.`);
        continue;
      }
      const field = FIELDS.get(lower);
      if (field === undefined) continue; // unknown keys are ignored
      // JSON.parse keeps a key repeated in another case at its first place: only the strict parser knows which came last.
      if (!exact && seen & FIELD_BITS[field]) throw new NeedsExactParse();
      seen |= FIELD_BITS[field];
      if (raw === null) continue; // null leaves the field as it was
      fields[field] = field === 'action' ? actionField(raw, where) : integerField(raw, field, where);
    }
  }
  const { action, index, ...cell } = fields;
  if (index < 0 || index >= cells) throw new HttpError(400, `${where}index must be between 0 and ${cells - 1}`);
  checkBytes(cell, where);
  return expect ? { write: action === 1, index, cell, expect } : { write: action === 1, index, cell };
}

/** The expected value of a conditional write: an object of the four byte fields (missing or null ones are 0). */
function decodeCell(value: unknown, where: string): Cell {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof RawNumber) {
    throw new HttpError(400, `${where.slice(0, -1)} must be a JSON object`);
  }
  const cell: Cell = { category: 0, rotation: 0, sideA: 0, sideB: 0 };
  const exact = value instanceof RawObject;
  let seen = 0;
  for (const [key, raw] of exact ? value.members : Object.entries(value)) {
    const field = CELL_FIELDS.get(key.toLowerCase());
    if (field === undefined) continue;
    if (!exact && seen & FIELD_BITS[field]) throw new NeedsExactParse();
    seen |= FIELD_BITS[field];
    if (raw !== null) cell[field] = integerField(raw, field, where);
  }
  checkBytes(cell, where);
  return cell;
}

function checkBytes(cell: Cell, where: string): void {
  for (const name of ['category', 'rotation', 'sideA', 'sideB'] as const) {
    if (cell[name] < 0 || cell[name] > 255) throw new HttpError(400, `${where}${name} must be between 0 and 255`);
  }
}

/** The action: 1 (a write) or 0 (any other int64: a read), checked against int64 exactly. */
function actionField(raw: unknown, where: string): number {
  const value = integerField(raw, 'action', where);
  if (Number.isSafeInteger(value)) return value === 1 ? 1 : 0;
  // Beyond 2^53 only the source text is exact; JSON.parse never sees such bodies (see withExactParse).
  const exact = raw instanceof RawNumber ? BigInt(raw.text) : BigInt(value);
  if (exact < INT64_MIN || exact > INT64_MAX) throw new HttpError(400, `${where}action is out of range`);
  return 0;
}

function integerField(raw: unknown, field: Field | keyof Cell, where: string): number {
  const value = raw instanceof RawNumber ? raw.integer() : typeof raw === 'number' ? raw : undefined;
  if (value === undefined || !Number.isInteger(value)) throw new HttpError(400, `${where}${field} must be an integer`);
  return value === 0 ? 0 : value; // -0 is 0
}
