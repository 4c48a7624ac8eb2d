/** The fuzzer's oracle for whole requests: routing, auth, then each route's expected answer. */
import assert from 'node:assert/strict';
import { AUTH } from './app.js';
import { basicHeader } from './http.js';
import { CELLS, Rng, readJson, judgeRequestBody, verdictCells, World, type Res, seen, preview, assertError, assertJson200, checkRequestAnswer } from './fuzz-oracle.js';


export interface Req {
  method: string;
  /** The request target as sent. */
  path: string;
  headers: Record<string, string | string[]>;
  body?: Buffer;
  /** Sent with Transfer-Encoding: chunked, in these pieces. */
  chunks?: Buffer[];
}

export interface Probe {
  what: string;
  req: Req;
  /** Cells the request reads or writes if the server accepts it. */
  cells: number[];
  /** The answer may close the connection (413, an unread body): the client may see a reset instead. */
  closes: boolean;
  /** Might change the world. */
  writes: boolean;
  judge(res: Res): void;
}

export type AuthKind = 'ok' | 'deny' | 'either';
export interface AuthChoice { header: string | string[] | undefined; kind: AuthKind; what: string }

export const GOOD_AUTH = basicHeader(AUTH.user, AUTH.password);
export const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
export const GOOD_B64 = b64(`${AUTH.user}:${AUTH.password}`);

export const AUTH_VARIANTS: ReadonlyArray<AuthChoice> = [
  { what: 'no Authorization', header: undefined, kind: 'deny' },
  { what: 'empty Authorization', header: '', kind: 'deny' },
  { what: 'wrong password', header: basicHeader(AUTH.user, 'wrong'), kind: 'deny' },
  { what: 'wrong user', header: basicHeader('other', AUTH.password), kind: 'deny' },
  { what: 'password with a suffix', header: basicHeader(AUTH.user, `${AUTH.password}x`), kind: 'deny' },
  { what: 'password prefix', header: basicHeader(AUTH.user, AUTH.password.slice(0, -1)), kind: 'deny' },
  { what: 'user in upper case', header: basicHeader(AUTH.user.toUpperCase(), AUTH.password), kind: 'deny' },
  { what: 'no colon', header: `Basic ${b64(AUTH.user)}`, kind: 'deny' },
  { what: 'empty user', header: `Basic ${b64(`:${AUTH.password}`)}`, kind: 'deny' },
  { what: 'Bearer', header: `Bearer ${GOOD_B64}`, kind: 'deny' },
  { what: 'Digest', header: `Digest username="${AUTH.user}", realm="cubecache", nonce="x", response="y"`, kind: 'deny' },
  { what: 'scheme only', header: 'Basic', kind: 'deny' },
  { what: 'not base64', header: 'Basic %%%', kind: 'deny' },
  { what: 'junk after the credentials', header: `${GOOD_AUTH}!!`, kind: 'deny' },
  { what: 'two credentials in one header', header: `${GOOD_AUTH}, ${GOOD_AUTH}`, kind: 'deny' },
  { what: 'latin-1 password suffix', header: `Basic ${Buffer.from(`${AUTH.user}:${AUTH.password}\u00e9`, 'latin1').toString('base64')}`, kind: 'deny' },
  { what: 'long garbage', header: `Basic ${'QUFB'.repeat(750)}`, kind: 'deny' },
  { what: 'NTLM', header: 'NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==', kind: 'deny' },
  { what: 'scheme in lower case', header: `basic ${GOOD_B64}`, kind: 'ok' },
  { what: 'scheme in upper case', header: `BASIC ${GOOD_B64}`, kind: 'ok' },
  { what: 'two spaces after the scheme', header: `Basic  ${GOOD_B64}`, kind: 'ok' },
  { what: 'base64 without padding', header: `Basic ${GOOD_B64.replace(/=+$/, '')}`, kind: 'either' },
  { what: 'tab after the scheme', header: `Basic\t${GOOD_B64}`, kind: 'either' },
  { what: 'two headers, good first', header: [GOOD_AUTH, basicHeader(AUTH.user, 'wrong')], kind: 'either' },
  { what: 'two headers, bad first', header: [basicHeader(AUTH.user, 'wrong'), GOOD_AUTH], kind: 'either' },
];

export function pickAuth(r: Rng, pBad = 0.12): AuthChoice {
  return r.chance(pBad) ? r.pick(AUTH_VARIANTS) : { what: 'good credentials', header: GOOD_AUTH, kind: 'ok' };
}

/** The routes and their methods, as the README lists them. */
export const ROUTES = new Map<string, readonly string[]>([
  ['/request', ['POST']], ['/s3dump', ['POST']], ['/healthcheck', ['GET', 'HEAD']], ['/backups', ['GET']],
  ['/restore', ['POST']], ['/cells', ['GET', 'PUT']], ['/stats', ['GET']], ['/metrics', ['GET']],
  ['/favicon.ico', ['GET', 'HEAD']], // the console's icon (lib/routes/console.ts), which the fuzzer's paths include
]);
/** The query parameters each route and method takes: any other, or one given twice, is a 400 that changes nothing. */
const TAKES = new Map<string, readonly string[]>([
  ['POST /request', []], ['POST /s3dump', ['async']], ['GET /healthcheck', ['backup']], ['HEAD /healthcheck', ['backup']], ['GET /backups', []],
  ['POST /restore', ['by']], ['GET /cells', ['start', 'count', 'box', 'at']], ['PUT /cells', ['start', 'box', 'by']], ['GET /stats', []], ['GET /metrics', []],
]);

/** True when `query` names a parameter the route does not take, or one twice. */
function queryRefused(method: string, path: string, query: URLSearchParams): boolean {
  const takes = TAKES.get(`${method} ${path}`);
  if (takes === undefined) throw new Error(`fuzzer bug: no parameters listed for ${method} ${path}`);
  const names = [...query.keys()];
  return names.some((name, i) => !takes.includes(name) || names.indexOf(name) !== i);
}

/** Methods node:http's parser knows (others are a 400 before any route). */
export const KNOWN_METHODS = new Set(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND', 'PURGE', 'QUERY', 'LOCK']);
export const CONTINUE_RE = /(?:^|\W)100-continue(?:$|\W)/i;

export function headerSize(req: Req): number {
  let size = req.method.length + req.path.length + 40;
  for (const [name, value] of Object.entries(req.headers)) for (const v of [value].flat()) size += name.length + v.length + 4;
  return size;
}

/** True when the request as serialized declares a body (chunked, a non-empty body, or a framing header of its own). */
export const declaresBody = (req: Req) => req.chunks !== undefined || (req.body?.length ?? 0) > 0
  || Object.keys(req.headers).some((name) => /^(content-length|transfer-encoding)$/i.test(name));

export const bodyOf = (req: Req) => req.body ?? (req.chunks ? Buffer.concat(req.chunks) : Buffer.alloc(0));

/** What the server must answer to `req`, whatever the route: the routing rules, auth, then the handler's. */
export function probe(what: string, req: Req, auth: AuthChoice, world: World): Probe {
  if (auth.header !== undefined) req.headers.Authorization = auth.header;
  const fullWhat = auth.kind === 'ok' ? what : `${what} [${auth.what}]`;
  const head = req.method === 'HEAD';
  const error = (statuses: readonly number[], check: (res: Res, body: any) => void = () => {}, opts: { bare?: boolean; closes?: boolean } = {}): Probe => ({ // eslint-disable-line @typescript-eslint/no-explicit-any
    what: fullWhat, req, cells: [], writes: false, closes: opts.closes ?? false,
    judge: (res) => check(res, assertError(res, statuses, { head, bare: opts.bare ?? false })),
  });
  if (!KNOWN_METHODS.has(req.method)) return error([400], undefined, { closes: true });
  if (/[^\x21-\x7e]/.test(req.path)) return error([400], undefined, { closes: true }); // node:http refuses 8-bit targets
  if (headerSize(req) > 17_000) return error([431], undefined, { closes: true });
  if (headerSize(req) > 15_000) throw new Error(`fuzzer bug: headers of ${headerSize(req)} bytes are too close to the 16 KiB limit to judge`);
  const expectHeader = req.headers.Expect;
  if (typeof expectHeader === 'string' && !CONTINUE_RE.test(expectHeader)) return error([417], undefined, { bare: true });
  const q = req.path.indexOf('?');
  const path = q < 0 ? req.path : req.path.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : req.path.slice(q + 1));
  const methods = ROUTES.get(path);
  if (!methods) return error([404]);
  if (!methods.includes(req.method)) {
    return error([405], (res) => {
      assert.deepEqual(String(res.headers.allow ?? '').split(/,\s*/).sort(), [...methods].sort(), 'Allow lists the methods of the route');
    });
  }
  if (path === '/healthcheck') {
    if (queryRefused(req.method, path, query)) return error([400]);
    return { what: fullWhat, req, cells: [], writes: false, closes: false, judge: (res) => checkHealth(res, head) };
  }
  // The icon needs no credentials: a browser asks for it on its own.
  if (path === '/favicon.ico') {
    return {
      what: fullWhat, req, cells: [], writes: false, closes: false,
      judge: (res) => {
        assert.equal(res.status, 200, `GET /favicon.ico: ${res.status}`);
        assert.equal(res.headers['content-type'], 'image/x-icon');
        assert.equal(res.body.length, head ? 0 : Number(res.headers['content-length']));
      },
    };
  }
  // A 401 (or 429) to a request that declares a body closes the connection: the stranger's body is never read.
  if (auth.kind === 'deny') {
    return error([401], (res) => assert.match(String(res.headers['www-authenticate']), /^Basic realm=/, 'WWW-Authenticate'), { closes: declaresBody(req) });
  }
  const handler = route(path, req, query, world);
  const judge = auth.kind === 'ok' ? handler.judge : (res: Res) => (res.status === 401 ? void assertError(res, [401]) : handler.judge(res));
  return { what: fullWhat, req, ...handler, closes: handler.closes || (auth.kind === 'either' && declaresBody(req)), judge };
}

export type Handler = Pick<Probe, 'cells' | 'closes' | 'writes' | 'judge'>;

export function route(path: string, req: Req, query: URLSearchParams, world: World): Handler {
  const body = bodyOf(req);
  const reject = (statuses: readonly number[], closes = statuses.includes(413)): Handler => ({ cells: [], writes: false, closes, judge: (res) => void assertError(res, statuses) });
  // Checked before the body is read: the body is then drained by node:http, and the connection stays.
  if (queryRefused(req.method, path, query)) return reject([400], false);
  switch (path) {
    case '/request': {
      const v = judgeRequestBody(body);
      const closes = v.kind === 'reject' && v.statuses.includes(413);
      return { cells: verdictCells(v), writes: v.kind !== 'reject', closes, judge: (res) => checkRequestAnswer(v, res, world) };
    }
    case '/cells': {
      const start = queryInteger(query, 'start', 0, 0, CELLS);
      if (start === undefined) return reject([400], req.method === 'PUT');
      if (req.method === 'GET') {
        const count = queryInteger(query, 'count', CELLS - start, 0, CELLS - start);
        if (count === undefined) return reject([400]);
        return {
          cells: range(start, start + count), writes: false, closes: false,
          judge: (res) => {
            assert.equal(res.status, 200, `GET /cells: status ${res.status} ${preview(res.body)}`);
            assert.match(String(res.headers['content-type']), /^application\/octet-stream/);
            const expected = world.bytes.subarray(start * 4, (start + count) * 4);
            assert.ok(Buffer.from(expected).equals(res.body), `GET /cells?start=${start}&count=${count}: ${firstDifference(expected, res.body)}`);
          },
        };
      }
      const room = (CELLS - start) * 4;
      if (req.chunks) {
        if (body.length > room) return reject([413]);
        if (body.length % 4 !== 0) return reject([400]);
      } else {
        if (body.length % 4 !== 0) return reject([400], true);
        if (body.length > room) return reject([413]);
      }
      return {
        cells: range(start, start + body.length / 4), writes: body.length > 0, closes: false,
        judge: (res) => {
          assert.deepEqual(assertJson200(res), { status: 200, start, cells: body.length / 4 }, 'PUT /cells answer');
          world.bytes.set(body, start * 4);
          seen.writes += body.length / 4;
        },
      };
    }
    case '/stats':
      return {
        cells: [], writes: false, closes: false,
        judge: (res) => {
          const json = assertJson200(res);
          assert.equal(json.status, 200);
          assert.equal(json.cells, CELLS);
          assert.equal(typeof json.cellsInUse, 'number');
          assert.equal(typeof json.categories, 'object');
        },
      };
    case '/metrics':
      return {
        cells: [], writes: false, closes: false,
        judge: (res) => {
          assert.equal(res.status, 200, `GET /metrics: ${res.status}`);
          assert.match(String(res.headers['content-type']), /^text\/plain/);
          assert.match(res.body.toString('utf8'), new RegExp(`^cubecache_cells ${CELLS}$`, 'm'));
        },
      };
    case '/backups':
      return { cells: [], writes: false, closes: false, judge: (res) => assert.ok(Array.isArray(assertJson200(res).backups), 'GET /backups lists backups') };
    case '/s3dump':
      if (body.length > 4096) return reject([413]);
      return {
        cells: [], writes: false, closes: false,
        judge: (res) => {
          const json = assertJson200(res);
          assert.equal(json.status, 200);
          assert.equal(typeof json.backup?.name, 'string', 'POST /s3dump names its backup');
        },
      };
    case '/restore': {
      if (body.length > 1024 * 1024) return reject([413]);
      const doc = readJson(body.toString('utf8'));
      const member = (key: string) => (doc?.value.t === 'obj' ? doc.value.members.filter(([k]) => k === key).at(-1)?.[1] : undefined);
      // An "at" makes it a restore to an instant: the fuzzer never sends a valid one (a 400, or a 400 naming the span).
      if (member('at') !== undefined) return reject([400]);
      const last = member('name');
      // Names the fuzzer sends never match a backup's (digits, T, Z): a good body is a 404, never a restore.
      return reject(last?.t === 'str' && last.v !== '' ? [404] : [400]);
    }
    default:
      throw new Error(`fuzzer bug: no oracle for ${path}`);
  }
}

export function checkHealth(res: Res, head: boolean): void {
  assert.equal(res.status, 200, `healthcheck: ${res.status} ${preview(res.body)}`);
  if (head) {
    assert.equal(res.body.length, 0);
    return;
  }
  const json = assertJson200(res);
  assert.equal(json.status, 200);
  assert.equal(json.cells, CELLS);
  assert.equal(json.bytes, CELLS * 4);
}

/** A query parameter: digits only (at most 15), within [min, max]; `fallback` when absent; undefined when bad. */
export function queryInteger(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number | undefined {
  const raw = query.get(name);
  if (raw === null) return fallback;
  if (!/^[0-9]{1,15}$/.test(raw)) return undefined;
  const value = Number(raw);
  return value >= min && value <= max ? value : undefined;
}

export const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

export function firstDifference(expected: Uint8Array, actual: Uint8Array): string {
  if (expected.length !== actual.length) return `expected ${expected.length} bytes, got ${actual.length}`;
  let diffs = 0;
  let first = -1;
  for (let i = 0; i < expected.length; i++) {
    if (expected[i] !== actual[i]) {
      diffs++;
      if (first < 0) first = i;
    }
  }
  if (first < 0) return 'equal';
  const cell = Math.floor(first / 4);
  return `${diffs} bytes differ; first at cell ${cell} (byte ${first}): expected [${[...expected.subarray(cell * 4, cell * 4 + 4)]}], got [${[...actual.subarray(cell * 4, cell * 4 + 4)]}]`;
}


/** A failure with where it happened: the seed, the worker, the request. */
export class FuzzFailure extends Error {
  override name = 'FuzzFailure';
}

export function annotate(err: unknown, what: string, req?: Req): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  const request = req ? `\n  request: ${req.method} ${req.path.length > 200 ? `${req.path.slice(0, 200)}…` : req.path} ${JSON.stringify(req.headers).slice(0, 300)} ${req.chunks ? '(chunked) ' : ''}body ${preview(bodyOf(req))}` : '';
  return new FuzzFailure(`${what}${request}\n  ${e.message}`, { cause: e instanceof FuzzFailure ? e.cause : e });
}
