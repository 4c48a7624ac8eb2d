/**
 * A strict byte-level JSON scanner (RFC 8259) for single-pass decoders that build no value tree: a decoder
 * extends it and reads the values it cares about in place, skipping the rest with their syntax checked.
 * It knows the grammar only (whitespace, strings, literals, numbers' syntax, nesting depth) and where a
 * syntax error is; what the values mean is the decoder's business.
 */
import { HttpError } from './http.js';

/** Nesting deeper than this is refused (a value at the top is depth 0). */
export const MAX_JSON_DEPTH = 64;

/** The grammar's bytes, for decoders that look at the next one. */
export const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c, COLON = 0x3a, MINUS = 0x2d, PLUS = 0x2b, DOT = 0x2e;
/** Brackets and digits, as above. */
export const LBRACE = 0x7b, RBRACE = 0x7d, LBRACKET = 0x5b, RBRACKET = 0x5d, ZERO = 0x30, NINE = 0x39;

/** True for the bytes JSON allows between tokens. */
export function isJsonSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/** A position in `buf` and the grammar's steps from it; every syntax error is a 400 naming what and where. */
export class JsonScanner {
  /** The offset of the next byte to read. */
  protected at = 0;

  constructor(protected readonly buf: Uint8Array) {}

  /** After an object's `{`: skips whitespace; false (and past the `}`) when the object is empty. */
  protected openMembers(): boolean {
    this.space();
    if (this.buf[this.at] !== RBRACE) return true;
    this.at++;
    return false;
  }

  /** After a member's key: its `:` and the whitespace around it, leaving the position at the value. */
  protected colon(): void {
    this.space();
    if (this.buf[this.at] !== COLON) this.fail('expected ":"');
    this.at++;
    this.space();
  }

  /** After a member's value: true at a `,` (another member follows), false past the closing `}`. */
  protected nextMember(): boolean {
    this.space();
    const next = this.buf[this.at++];
    if (next === RBRACE) return false;
    if (next !== COMMA) this.fail(next === undefined ? 'unexpected end of input' : 'expected "," or "}"', -1);
    return true;
  }

  /** Fails unless a key's opening quote is at the position. */
  protected expectKey(): void {
    if (this.buf[this.at] !== QUOTE) this.fail(this.at === this.buf.length ? 'unexpected end of input' : 'expected a string key');
  }

  /** Consumes a fraction and an exponent after a number's integer digits, if any; true if there was either. */
  protected fractionOrExponent(): boolean {
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
  protected digits(): void {
    const buf = this.buf;
    const start = this.at;
    while (this.at < buf.length && buf[this.at]! >= ZERO && buf[this.at]! <= NINE) this.at++;
    if (this.at === start) this.fail(this.at === buf.length ? 'unexpected end of input' : 'expected a digit');
  }

  /** A string value at the position, consumed and decoded; undefined for any other value (consumed too). */
  protected text(depth: number): string | undefined {
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
  protected is(start: number, word: string): boolean {
    const buf = this.buf;
    for (let i = 0; i < word.length; i++) if ((buf[start + i]! | 0x20) !== word.charCodeAt(i)) return false;
    return true;
  }

  /**
   * A string at the position (its opening quote), consumed and checked: no raw control character, only
   * JSON's escapes. Bytes from 0x80 up are taken as they are: decoded as UTF-8 they are characters (or
   * U+FFFD), all valid in a JSON string, and none is a quote or a backslash. True if it held an escape.
   */
  protected string(): boolean {
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

  /** Consumes `word` (true, false, null) at the position if it is there. */
  protected literal(word: string): boolean {
    const buf = this.buf;
    for (let i = 0; i < word.length; i++) if (buf[this.at + i] !== word.charCodeAt(i)) return false;
    this.at += word.length;
    return true;
  }

  /** Consumes any JSON value at the position, checking its syntax; `depth` is its nesting level (the top value is 0). */
  protected skip(depth: number): void {
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
          this.expectKey();
          this.string();
          this.colon();
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

  /** Skips whitespace. */
  protected space(): void {
    const buf = this.buf;
    let at = this.at;
    while (at < buf.length && isJsonSpace(buf[at]!)) at++;
    this.at = at;
  }

  /**
   * A syntax error: 400 "invalid JSON" saying what and where (`back` steps back over a byte already
   * consumed). A body of nothing but whitespace (in String.prototype.trim's sense, as before) is "empty".
   */
  protected fail(what: string, back = 0): never {
    const text = Buffer.from(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength).toString('utf8');
    if (text.trim() === '') throw new HttpError(400, 'empty body');
    throw new HttpError(400, `invalid JSON: ${what} at offset ${this.at + back}`);
  }
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= ZERO && c <= NINE) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66));
}
