/**
 * The seed's /request protocol: one strict single-pass decoder from body bytes to typed commands, and the
 * answer encoder. The decoder is the JSON grammar (RFC 8259) and the seed's rules at once, so no value tree
 * is built and no second parser exists: keys match case-insensitively, the last duplicate wins, null counts
 * as 0, numbers must be integers written as such (no fraction, no exponent) and action is checked against
 * Go's int64 exactly.
 *
 * Errors keep the order of a parse-then-validate decoder: any syntax error in the body wins over a rule it
 * breaks, a batch over MAX_BATCH commands over any bad element, and the first bad element is the one named.
 * So a broken rule is noted (the first one only) and the scan goes on to the end before it is thrown.
 */
import type { Cell } from './cube.js';
import { HttpError } from './http.js';

/** One validated command: a write of `cell` at `index` (only if the cell holds `expect`, when given), or a read of it (as it was at the instant `at`, ms since the epoch, when given). */
export interface CellCommand { write: boolean; index: number; cell: Cell; expect?: Cell; at?: number; by?: string }

/** A /request body: one command (the seed's protocol) or a batch of them (a JSON array). */
export type RequestBody = { batch: false; command: CellCommand } | { batch: true; commands: CellCommand[] };

/** The longest batch one request may carry. */
export const MAX_BATCH = 4096;
/** Nesting deeper than this is refused (a command is at most three levels deep: batch, command, expect). */
export const MAX_JSON_DEPTH = 64;

/** Decodes a whole /request body: an array is a batch (every element checked; the first bad one named), anything else one command. 400 (naming the problem) for anything the seed would refuse, 413 for a batch over MAX_BATCH. */
export function parseRequest(body: Uint8Array, cells: number): RequestBody {
  return new Decoder(body, cells).request();
}

/** True when the first non-whitespace byte of a /request body opens a batch (so the body may be larger than one command's). */
export function opensBatch(byte: number): boolean {
  return byte === LBRACKET;
}

/** True for the bytes JSON allows between tokens. */
export function isJsonSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/** The longest author id a change may carry (PlayFab's ids are 16 hex characters). */
export const MAX_AUTHOR = 64;

/** True for an author id: up to MAX_AUTHOR printable ASCII characters (space to tilde). */
export function isAuthor(text: string): boolean {
  return text.length <= MAX_AUTHOR && /^[\x20-\x7e]*$/.test(text);
}

/** The instant an ISO 8601 text names (date, time to the minute or finer, and Z or an offset), in ms since the epoch; undefined if it names none. */
export function parseInstant(text: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-](\d{2}):(\d{2}))$/.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second = 0, offsetHours = 0, offsetMinutes = 0] = m.slice(1).map((f) => (f === undefined ? undefined : Number(f)));
  // Date.parse rolls an impossible date over (2026-02-30 is March 2, 24:00 the next day): each field must name a real one.
  const leap = year! % 4 === 0 && (year! % 100 !== 0 || year! % 400 === 0);
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month!) ? 30 : 31;
  if (month! < 1 || month! > 12 || day! < 1 || day! > daysInMonth || hour! > 23 || minute! > 59 || second > 59 || offsetHours > 23 || offsetMinutes > 59) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/** The answer to a command: the cell after the request, as the seed writes it. */
export function encodeAnswer(cell: Cell): string {
  return `{"status":200,"category":${cell.category},"rotation":${cell.rotation},"sideA":${cell.sideA},"sideB":${cell.sideB}}`;
}

const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c, COLON = 0x3a, MINUS = 0x2d, PLUS = 0x2b, DOT = 0x2e;
const LBRACE = 0x7b, RBRACE = 0x7d, LBRACKET = 0x5b, RBRACKET = 0x5d, ZERO = 0x30, NINE = 0x39;

// Field ids; their names as the error texts spell them.
const ACTION = 0, INDEX = 1, CATEGORY = 2, ROTATION = 3, SIDE_A = 4, SIDE_B = 5, EXPECT = 6, AT = 7, BY = 8, UNKNOWN = -1;
const NAMES = ['action', 'index', 'category', 'rotation', 'sideA', 'sideB', 'expect', 'at', 'by'];
const BY_LOWER_NAME = new Map(NAMES.map((name, id) => [name.toLowerCase(), id]));
// The seed's action is a Go int (int64): anything outside is an error there too.
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
/** Integers of up to 15 digits are exact in a double when summed digit by digit; longer ones go through Number(). */
const EXACT_DIGITS = 15;
/** A broken rule noted while the scan goes on; thrown only if the body turns out to be valid JSON. */
const NONE = -1;

class Decoder {
  private at = 0;
  /** The first broken rule (an HttpError to throw once the whole body is known to be JSON). */
  private pending: HttpError | undefined;
  // Where the digits of the last integer read lie (for the exact int64 check of a long one).
  private numberStart = 0;
  private numberEnd = 0;

  constructor(private readonly buf: Uint8Array, private readonly cells: number) {}

  request(): RequestBody {
    const buf = this.buf;
    this.space();
    if (this.at === buf.length) throw new HttpError(400, 'empty body');
    let result: RequestBody;
    let count = 0;
    if (buf[this.at] === LBRACKET) {
      const commands: CellCommand[] = [];
      this.at++;
      this.space();
      if (buf[this.at] === RBRACKET) this.at++;
      else {
        for (;;) {
          this.space();
          if (count < MAX_BATCH && this.pending === undefined) {
            const command = this.command(1, count);
            if (command !== undefined) commands.push(command);
          } else this.skip(1); // its verdict no longer matters; its syntax still does
          count++;
          this.space();
          const next = buf[this.at++];
          if (next === RBRACKET) break;
          if (next !== COMMA) this.fail(next === undefined ? 'unexpected end of input' : 'expected "," or "]"', -1);
        }
      }
      result = { batch: true, commands };
    } else {
      result = { batch: false, command: this.command(0, NONE)! };
    }
    this.space();
    if (this.at !== buf.length) this.fail('unexpected data after the value');
    if (count > MAX_BATCH) throw new HttpError(413, `a batch holds at most ${MAX_BATCH} commands, got ${count}`);
    if (this.pending) throw this.pending;
    return result;
  }

  /** One command at `at` (an object or null); undefined once it broke a rule (noted). `element` is its place in a batch, or NONE. */
  private command(depth: number, element: number): CellCommand | undefined {
    const buf = this.buf;
    const c = buf[this.at];
    if (c !== LBRACE) {
      if (c === 0x6e && this.literal('null')) return { write: false, index: 0, cell: { category: 0, rotation: 0, sideA: 0, sideB: 0 } };
      this.skip(depth);
      this.note(element, 'a command must be a JSON object');
      return undefined;
    }
    this.at++;
    let action = 0, index = 0, category = 0, rotation = 0, sideA = 0, sideB = 0;
    let expect: Cell | undefined;
    let at: number | undefined;
    let by: string | undefined;
    let broken = false;
    if (this.openMembers()) {
      do {
        const field = this.memberKey();
        if (broken || field === UNKNOWN) this.skip(depth + 1); // unknown keys are ignored, whatever they hold
        else if (field === BY) {
          if (buf[this.at] === 0x6e && this.literal('null')) by = undefined;
          else {
            by = this.text(depth + 1);
            if (by === undefined || !isAuthor(by)) {
              this.note(element, `by must be a string of up to ${MAX_AUTHOR} printable ASCII characters (a player id)`);
              broken = true;
            }
          }
        } else if (field === AT) {
          if (buf[this.at] === 0x6e && this.literal('null')) at = undefined;
          else {
            at = this.instant(depth + 1);
            if (at === undefined) {
              this.note(element, 'at must be an ISO 8601 instant, e.g. "2026-12-01T14:03:00Z"');
              broken = true;
            }
          }
        } else if (field === EXPECT) {
          if (buf[this.at] === 0x6e && this.literal('null')) expect = undefined;
          else {
            expect = this.cell(depth + 1, element);
            broken = expect === undefined;
          }
        } else if (!(buf[this.at] === 0x6e && this.literal('null'))) { // null leaves the field as it was
          const value = this.integer(depth + 1);
          if (Number.isNaN(value)) {
            this.note(element, `${NAMES[field]} must be an integer`);
            broken = true;
          } else if (field === ACTION) {
            if (Number.isSafeInteger(value)) action = value === 1 ? 1 : 0;
            else {
              // Beyond 2^53 only the digits are exact. Past 19 digits (no leading zeros) it is beyond int64 for sure,
              // which also keeps BigInt from parsing a megabyte of digits.
              const digits = this.numberEnd - this.numberStart - (buf[this.numberStart] === MINUS ? 1 : 0);
              const exact = digits > 19 ? INT64_MAX + 1n : BigInt(this.numberText());
              if (exact < INT64_MIN || exact > INT64_MAX) {
                this.note(element, 'action is out of range');
                broken = true;
              } else action = 0;
            }
          } else if (field === INDEX) index = value;
          else if (field === CATEGORY) category = value;
          else if (field === ROTATION) rotation = value;
          else if (field === SIDE_A) sideA = value;
          else sideB = value;
        }
      } while (this.nextMember());
    }
    if (broken) return undefined;
    if (index < 0 || index >= this.cells) {
      this.note(element, `index must be between 0 and ${this.cells - 1}`);
      return undefined;
    }
    const cell = { category, rotation, sideA, sideB };
    if (!this.bytesFit(cell, element, '')) return undefined;
    if (at !== undefined && action === 1) {
      this.note(element, 'at is for reads: a write changes the world as it is now (POST /restore puts back the past)');
      return undefined;
    }
    const command: CellCommand = expect ? { write: action === 1, index, cell, expect } : { write: action === 1, index, cell };
    if (at !== undefined) command.at = at;
    if (by !== undefined) command.by = by;
    return command;
  }

  /** The expected value of a conditional write: an object of the four byte fields (missing or null ones are 0); undefined once it broke a rule. */
  private cell(depth: number, element: number): Cell | undefined {
    const buf = this.buf;
    if (buf[this.at] !== LBRACE) {
      this.skip(depth);
      this.note(element, 'expect must be a JSON object');
      return undefined;
    }
    this.at++;
    const cell: Cell = { category: 0, rotation: 0, sideA: 0, sideB: 0 };
    let broken = false;
    if (this.openMembers()) {
      do {
        const field = this.memberKey();
        if (broken || field < CATEGORY || field > SIDE_B) this.skip(depth + 1);
        else if (!(buf[this.at] === 0x6e && this.literal('null'))) {
          const value = this.integer(depth + 1);
          if (Number.isNaN(value)) {
            this.note(element, `expect.${NAMES[field]} must be an integer`);
            broken = true;
          } else if (field === CATEGORY) cell.category = value;
          else if (field === ROTATION) cell.rotation = value;
          else if (field === SIDE_A) cell.sideA = value;
          else cell.sideB = value;
        }
      } while (this.nextMember());
    }
    if (broken || !this.bytesFit(cell, element, 'expect.')) return undefined;
    return cell;
  }

  /** After an object's `{`: skips whitespace; false (and past the `}`) when the object is empty. */
  private openMembers(): boolean {
    this.space();
    if (this.buf[this.at] !== RBRACE) return true;
    this.at++;
    return false;
  }

  /** A member's key and its `:`, leaving the position at its value. */
  private memberKey(): number {
    this.space();
    const field = this.key();
    this.space();
    if (this.buf[this.at] !== COLON) this.fail('expected ":"');
    this.at++;
    this.space();
    return field;
  }

  /** After a member's value: true at a `,` (another member follows), false past the closing `}`. */
  private nextMember(): boolean {
    this.space();
    const next = this.buf[this.at++];
    if (next === RBRACE) return false;
    if (next !== COMMA) this.fail(next === undefined ? 'unexpected end of input' : 'expected "," or "}"', -1);
    return true;
  }

  private bytesFit(cell: Cell, element: number, where: string): boolean {
    for (const name of ['category', 'rotation', 'sideA', 'sideB'] as const) {
      const value = cell[name];
      if (value < 0 || value > 255) {
        this.note(element, `${where}${name} must be between 0 and 255`);
        return false;
      }
    }
    return true;
  }

  /** Notes the first broken rule; `element` names the batch element it is in. */
  private note(element: number, message: string): void {
    this.pending ??= new HttpError(400, element === NONE ? message : `element ${element}: ${message}`);
  }

  /**
   * The value at `at` as an integer field reads it: the number if it is one written as an integer, NaN for
   * anything else (a fraction, an exponent, a string, true, an array...), which is skipped. -0 is 0.
   */
  private integer(depth: number): number {
    const buf = this.buf;
    const start = this.at;
    let c = buf[this.at];
    if (c !== MINUS && (c === undefined || c < ZERO || c > NINE)) {
      this.skip(depth);
      return NaN;
    }
    const negative = c === MINUS;
    if (negative) c = buf[++this.at];
    const digitsStart = this.at;
    let value = 0;
    if (c === ZERO) this.at++;
    else if (c !== undefined && c > ZERO && c <= NINE) {
      while (c !== undefined && c >= ZERO && c <= NINE) {
        value = value * 10 + (c - ZERO);
        c = buf[++this.at];
      }
    } else this.fail(c === undefined ? 'unexpected end of input' : 'unexpected character');
    const digitsEnd = this.at;
    if (this.fractionOrExponent()) return NaN;
    this.numberStart = start;
    this.numberEnd = digitsEnd;
    // Past 15 digits the running sum may round where the parse of the whole text does not: use the latter, as JSON.parse would.
    if (digitsEnd - digitsStart > EXACT_DIGITS) value = Number(this.numberText());
    else if (negative) value = 0 - value; // 0 - 0 is +0
    return Number.isFinite(value) ? value : NaN;
  }

  /** The source text of the last integer read. */
  private numberText(): string {
    return Buffer.from(this.buf.buffer, this.buf.byteOffset + this.numberStart, this.numberEnd - this.numberStart).toString('latin1');
  }

  /** Consumes a fraction and an exponent after an integer's digits, if any; true if there was either. */
  private fractionOrExponent(): boolean {
    const buf = this.buf;
    let any = false;
    if (buf[this.at] === DOT) {
      this.at++;
      this.digits();
      any = true;
    }
    const e = buf[this.at];
    if (e === 0x65 || e === 0x45) {
      this.at++;
      if (buf[this.at] === PLUS || buf[this.at] === MINUS) this.at++;
      this.digits();
      any = true;
    }
    return any;
  }

  /** One or more digits. */
  private digits(): void {
    const buf = this.buf;
    const start = this.at;
    while (this.at < buf.length && buf[this.at]! >= ZERO && buf[this.at]! <= NINE) this.at++;
    if (this.at === start) this.fail(this.at === buf.length ? 'unexpected end of input' : 'expected a digit');
  }

  /**
   * A key at `at` (its opening quote), consumed: the field it names, compared case-insensitively, or UNKNOWN.
   * A key without escapes is compared in place; one with escapes is decoded first, as JSON.parse would.
   */
  private key(): number {
    const buf = this.buf;
    if (buf[this.at] !== QUOTE) this.fail(this.at === buf.length ? 'unexpected end of input' : 'expected a string key');
    const open = this.at;
    const escaped = this.string();
    const start = open + 1;
    const length = this.at - 1 - start;
    if (escaped) {
      const text = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + open, this.at - open).toString('utf8')) as string;
      return BY_LOWER_NAME.get(text.toLowerCase()) ?? UNKNOWN;
    }
    switch (length) {
      case 5:
        if (this.is(start, 'index')) return INDEX;
        if (this.is(start, 'side')) return (buf[start + 4]! | 0x20) === 0x61 ? SIDE_A : (buf[start + 4]! | 0x20) === 0x62 ? SIDE_B : UNKNOWN;
        return UNKNOWN;
      case 2:
        return this.is(start, 'at') ? AT : this.is(start, 'by') ? BY : UNKNOWN;
      case 6:
        return this.is(start, 'action') ? ACTION : this.is(start, 'expect') ? EXPECT : UNKNOWN;
      case 8:
        return this.is(start, 'category') ? CATEGORY : this.is(start, 'rotation') ? ROTATION : UNKNOWN;
      default:
        return UNKNOWN;
    }
  }

  /** A string value at `at` naming an instant (see parseInstant), consumed; undefined for anything else (consumed too). */
  private instant(depth: number): number | undefined {
    const text = this.text(depth);
    return text === undefined ? undefined : parseInstant(text);
  }

  /** A string value at `at`, consumed and decoded; undefined for any other value (consumed too). */
  private text(depth: number): string | undefined {
    const buf = this.buf;
    if (buf[this.at] !== QUOTE) {
      this.skip(depth);
      return undefined;
    }
    const open = this.at;
    this.string();
    return JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + open, this.at - open).toString('utf8')) as string;
  }

  /** True when the bytes at `start` spell the lower-case ASCII `word` in any case (b | 0x20 maps only 'A'-'Z' onto 'a'-'z'). */
  private is(start: number, word: string): boolean {
    const buf = this.buf;
    for (let i = 0; i < word.length; i++) if ((buf[start + i]! | 0x20) !== word.charCodeAt(i)) return false;
    return true;
  }

  /**
   * A string at `at` (its opening quote), consumed and checked: no raw control character, only JSON's
   * escapes. Bytes from 0x80 up are taken as they are: decoded as UTF-8 they are characters (or U+FFFD),
   * all valid in a JSON string, and none is a quote or a backslash. True if it held an escape.
   */
  private string(): boolean {
    const buf = this.buf;
    const end = buf.length;
    let at = this.at + 1;
    let escaped = false;
    for (;;) {
      if (at >= end) { this.at = at; this.fail('unexpected end of input'); }
      const c = buf[at]!;
      if (c === QUOTE) break;
      if (c < 0x20) { this.at = at; this.fail('control character in a string'); }
      if (c === BACKSLASH) {
        escaped = true;
        const e = buf[at + 1];
        if (e === 0x75) { // \uXXXX
          for (let i = 2; i < 6; i++) {
            if (!isHex(buf[at + i])) { this.at = at; this.fail('bad escape in a string'); }
          }
          at += 6;
          continue;
        }
        if (e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
          at += 2;
          continue;
        }
        this.at = at;
        this.fail('bad escape in a string');
      }
      at++;
    }
    this.at = at + 1;
    return escaped;
  }

  /** Consumes `word` (true, false, null) at `at` if it is there. */
  private literal(word: string): boolean {
    const buf = this.buf;
    for (let i = 0; i < word.length; i++) if (buf[this.at + i] !== word.charCodeAt(i)) return false;
    this.at += word.length;
    return true;
  }

  /** Consumes any JSON value at `at`, checking its syntax; `depth` is its nesting level (the top value is 0). */
  private skip(depth: number): void {
    if (depth > MAX_JSON_DEPTH) this.fail('nesting too deep');
    const buf = this.buf;
    const c = buf[this.at];
    if (c === LBRACE || c === LBRACKET) {
      const close = c === LBRACE ? RBRACE : RBRACKET;
      this.at++;
      this.space();
      if (buf[this.at] === close) { this.at++; return; }
      for (;;) {
        this.space();
        if (close === RBRACE) {
          if (buf[this.at] !== QUOTE) this.fail(this.at === buf.length ? 'unexpected end of input' : 'expected a string key');
          this.string();
          this.space();
          if (buf[this.at] !== COLON) this.fail('expected ":"');
          this.at++;
          this.space();
        }
        this.skip(depth + 1);
        this.space();
        const next = buf[this.at++];
        if (next === close) return;
        if (next !== COMMA) this.fail(next === undefined ? 'unexpected end of input' : close === RBRACE ? 'expected "," or "}"' : 'expected "," or "]"', -1);
      }
    }
    if (c === QUOTE) { this.string(); return; }
    if (c === 0x74 && this.literal('true')) return;
    if (c === 0x66 && this.literal('false')) return;
    if (c === 0x6e && this.literal('null')) return;
    if (c === MINUS || (c !== undefined && c >= ZERO && c <= NINE)) {
      if (c === MINUS) this.at++;
      const first = buf[this.at];
      if (first === ZERO) this.at++;
      else if (first !== undefined && first > ZERO && first <= NINE) this.digits();
      else this.fail(first === undefined ? 'unexpected end of input' : 'unexpected character');
      this.fractionOrExponent();
      return;
    }
    this.fail(c === undefined ? 'unexpected end of input' : 'unexpected character');
  }

  private space(): void {
    const buf = this.buf;
    let at = this.at;
    while (at < buf.length && isJsonSpace(buf[at]!)) at++;
    this.at = at;
  }

  /**
   * A syntax error: 400 "invalid JSON" saying what and where (`back` steps back over a byte already
   * consumed). A body of nothing but whitespace (in String.prototype.trim's sense, as before) is "empty".
   */
  private fail(what: string, back = 0): never {
    const text = Buffer.from(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength).toString('utf8');
    if (text.trim() === '') throw new HttpError(400, 'empty body');
    throw new HttpError(400, `invalid JSON: ${what} at offset ${this.at + back}`);
  }
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= ZERO && c <= NINE) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66));
}
