/** The seed's /request protocol: decode and validate bodies into typed commands, encode answers. */
import type { Cell } from './cube.js';
import { HttpError } from './http.js';
import { JsonSyntaxError, parseRawJson, RawNumber, RawObject } from './json.js';

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
const INT64_MIN = -(2 ** 63);
const INT64_LIMIT = 2 ** 63;

/** Decodes a /request body holding one command; 400 (naming the problem) for anything the seed would refuse. */
export function parseCellCommand(body: string, cells: number): CellCommand {
  return decodeCommand(parseBody(body), cells);
}

/** Decodes a /request body: an array is a batch (every element checked; the first bad one named), anything else one command. */
export function parseRequest(body: string, cells: number): RequestBody {
  const value = parseBody(body);
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

/**
 * Parses the body as JSON. Numbers must keep their source text where it could hold a fraction or an
 * exponent, so only bodies with a '.', 'e' or 'E' somewhere go through the slower strict parser.
 */
export function parseBody(body: string): unknown {
  if (body.trim() === '') throw new HttpError(400, 'empty body');
  try {
    return /[.eE]/.test(body) ? parseRawJson(body) : JSON.parse(body);
  } catch (err) {
    if (err instanceof SyntaxError || err instanceof JsonSyntaxError) throw new HttpError(400, `invalid JSON: ${err.message}`);
    throw err;
  }
}

/** Validates one decoded command; `where` prefixes messages (e.g. "element 3: ") for batches. */
export function decodeCommand(value: unknown, cells: number, where = ''): CellCommand {
  const fields = { action: 0, index: 0, category: 0, rotation: 0, sideA: 0, sideB: 0 };
  let expect: Cell | undefined;
  if (value !== null) { // the seed reads cell 0 for `null`
    if (typeof value !== 'object' || Array.isArray(value) || value instanceof RawNumber) {
      throw new HttpError(400, `${where}a command must be a JSON object`);
    }
    const members = value instanceof RawObject ? value.members : Object.entries(value);
    for (const [key, raw] of members) {
      const lower = key.toLowerCase();
      if (lower === 'expect') {
        expect = raw === null ? undefined : decodeCell(raw, `${where}expect.`);
        continue;
      }
      const field = FIELDS.get(lower);
      if (field === undefined || raw === null) continue; // unknown keys are ignored; null leaves the field as it was
      fields[field] = integerField(raw, field, where);
    }
  }
  const { action, index, ...cell } = fields;
  if (action < INT64_MIN || action >= INT64_LIMIT) throw new HttpError(400, `${where}action is out of range`);
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
  for (const [key, raw] of value instanceof RawObject ? value.members : Object.entries(value)) {
    const field = CELL_FIELDS.get(key.toLowerCase());
    if (field !== undefined && raw !== null) cell[field] = integerField(raw, field, where);
  }
  checkBytes(cell, where);
  return cell;
}

function checkBytes(cell: Cell, where: string): void {
  for (const name of ['category', 'rotation', 'sideA', 'sideB'] as const) {
    if (cell[name] < 0 || cell[name] > 255) throw new HttpError(400, `${where}${name} must be between 0 and 255`);
  }
}

function integerField(raw: unknown, field: Field | keyof Cell, where: string): number {
  const value = raw instanceof RawNumber ? raw.integer() : typeof raw === 'number' ? raw : undefined;
  if (value === undefined || !Number.isInteger(value)) throw new HttpError(400, `${where}${field} must be an integer`);
  return value === 0 ? 0 : value; // -0 is 0
}
