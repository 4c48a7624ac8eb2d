/**
 * A strict JSON parser that keeps each number's source text, so `1.0` and `1e2` can be told from `1`
 * (JSON.parse cannot on Node 20). Used only when a body holds a '.', 'e' or 'E'; otherwise JSON.parse serves.
 */

/** A number as it was written. */
export class RawNumber {
  constructor(readonly text: string) {}
  /** The value if the text is a plain integer (no fraction, no exponent), else undefined. */
  integer(): number | undefined {
    return /^-?(0|[1-9]\d*)$/.test(this.text) ? Number(this.text) : undefined;
  }
}

/** A parsed JSON value; objects keep every member in order, duplicates included. */
export type RawValue = null | boolean | string | RawNumber | RawValue[] | RawObject;
/** An object with every member in source order, duplicates included. */
export class RawObject {
  constructor(readonly members: Array<[string, RawValue]>) {}
}

/** The error a malformed document raises; the message says where. */
export class JsonSyntaxError extends Error {
  override name = 'JsonSyntaxError';
}

/** Nesting deeper than this is refused (a command is two levels deep). */
export const MAX_JSON_DEPTH = 64;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const WHITESPACE = /[ \t\n\r]*/y;

/** Parses a whole JSON document (whitespace around it allowed, nothing else). */
export function parseRawJson(text: string): RawValue {
  let at = 0;
  const fail = (what: string): never => {
    throw new JsonSyntaxError(`${what} at offset ${at}`);
  };
  const skip = () => {
    WHITESPACE.lastIndex = at;
    WHITESPACE.exec(text);
    at = WHITESPACE.lastIndex;
  };
  const match = (re: RegExp): string | undefined => {
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m) return undefined;
    at = re.lastIndex;
    return m[0];
  };
  const value = (depth: number): RawValue => {
    if (depth > MAX_JSON_DEPTH) fail('nesting too deep');
    skip();
    const c = text[at];
    if (c === '{') {
      at++;
      const members: Array<[string, RawValue]> = [];
      skip();
      if (text[at] === '}') { at++; return new RawObject(members); }
      for (;;) {
        skip();
        const key = match(STRING) ?? fail('expected a string key');
        skip();
        if (text[at++] !== ':') fail('expected ":"');
        members.push([JSON.parse(key) as string, value(depth + 1)]);
        skip();
        const next = text[at++];
        if (next === '}') return new RawObject(members);
        if (next !== ',') fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      at++;
      const items: RawValue[] = [];
      skip();
      if (text[at] === ']') { at++; return items; }
      for (;;) {
        items.push(value(depth + 1));
        skip();
        const next = text[at++];
        if (next === ']') return items;
        if (next !== ',') fail('expected "," or "]"');
      }
    }
    if (c === '"') return JSON.parse(match(STRING) ?? fail('bad string')) as string;
    if (text.startsWith('true', at)) { at += 4; return true; }
    if (text.startsWith('false', at)) { at += 5; return false; }
    if (text.startsWith('null', at)) { at += 4; return null; }
    const number = match(NUMBER);
    if (number !== undefined) return new RawNumber(number);
    return fail(c === undefined ? 'unexpected end of input' : 'unexpected character');
  };
  const result = value(0);
  skip();
  if (at !== text.length) fail('unexpected data after the value');
  return result;
}
