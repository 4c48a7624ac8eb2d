/** Query parameters and the operator of a change: parsed and validated, a 400 naming the parameter otherwise. */
import type { IncomingMessage } from 'node:http';
import { parseBasic } from '../auth.js';
import { HttpError } from '../http.js';
import { isAuthor, MAX_AUTHOR, parseInstant } from '../values.js';

/** A route that takes no query parameter. */
export const NO_PARAMETERS: readonly string[] = [];

/** queryOf(req, NO_PARAMETERS) without its result: POST /request's hot path allocates nothing for a URL without a query. */
export function refuseQuery(req: IncomingMessage): void {
  if (req.url?.includes('?')) queryOf(req, NO_PARAMETERS);
}

/**
 * The query of `req`, once it is known to hold only parameters of `takes`, each at most once: a 400 naming
 * any other (a typo such as `strat` must not be read as no parameter) or any given twice. Every route calls
 * it before it reads a body or changes anything.
 */
export function queryOf(req: IncomingMessage, takes: readonly string[]): URLSearchParams {
  const url = req.url ?? '/';
  // The hot path (POST /request) has no query: no URL is parsed for it.
  if (!url.includes('?')) return new URLSearchParams();
  const query = new URL(url, 'http://x').searchParams;
  const unknown: string[] = [];
  const seen = new Set<string>();
  for (const name of query.keys()) {
    if (!takes.includes(name)) {
      if (!unknown.includes(name)) unknown.push(name);
    } else if (seen.has(name)) throw new HttpError(400, `query parameter ${name} is given more than once; give it once`);
    else seen.add(name);
  }
  if (unknown.length > 0) {
    const names = unknown.map((name) => JSON.stringify(name)).join(', ');
    throw new HttpError(400, `unknown query parameter${unknown.length > 1 ? 's' : ''} ${names}: ${takes.length === 0 ? 'this route takes none' : `this route takes ${takes.join(', ')}`}`);
  }
  return query;
}

/** A query parameter naming an instant (ISO 8601), in ms; undefined when absent, 400 when it names none. */
export function queryInstant(query: URLSearchParams, name: string): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  const at = parseInstant(raw);
  if (at === undefined) throw new HttpError(400, `${name} must be an ISO 8601 instant, e.g. 2026-12-01T14:03:00Z`);
  return at;
}

/** A query parameter that must be a whole number in [min, max]; `fallback` when absent. */
export function queryInteger(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name);
  if (raw === null) return fallback;
  if (!/^\d{1,15}$/.test(raw)) throw new HttpError(400, `${name} must be a whole number`);
  const value = Number(raw);
  if (value < min || value > max) throw new HttpError(400, `${name} must be between ${min} and ${max}`);
  return value;
}


/** Who an operator's change is by: `?by=`, else the authenticated user. 400 for a `by` that is no author id. */
export function operator(req: IncomingMessage, query: URLSearchParams): string {
  const by = query.get('by');
  if (by !== null) {
    if (!isAuthor(by)) throw new HttpError(400, `by must be up to ${MAX_AUTHOR} printable ASCII characters`);
    return by;
  }
  return parseBasic(req.headers.authorization)?.user ?? '';
}
