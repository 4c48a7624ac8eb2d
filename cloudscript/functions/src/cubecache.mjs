/*
 * cubecache client for PlayFab CloudScript Functions (Azure Functions, Node.js v4 programming model): the
 * operations of the classic module (../../cubecache.js) as HTTP-triggered functions that PlayFab calls
 * with a FunctionExecutionContext (ExecuteFunction), a ScheduledTaskFunctionExecutionContext (a scheduled
 * task) or a PlayStream context; each reads its arguments from the context's FunctionArgument.
 *
 * The server's address and credentials come from the function app's settings (never from code):
 *   CUBECACHE_URL         the server's base URL, e.g. https://cubecache.example.com
 *   CUBECACHE_USER        the server's AUTH_USER
 *   CUBECACHE_PASSWORD    the server's AUTH_PASSWORD (a Key Vault reference keeps it out of the settings page)
 *   CUBECACHE_TIMEOUT_MS  optional: how long one call to the server may take, 100 to 4000 (default 3000)
 *   CUBECACHE_MODERATORS  optional: comma-separated PlayFab ids who may call rollbackPlayer
 *
 * A box is [x, y, z, w, h, d]: its lowest corner and its extent along x, y (up) and z. readBox reads one (up
 * to 4096 cells, each with its x, y, z); rollbackPlayer takes one in place of start and count. indexOf and
 * coordsOf convert between an index and x, y, z for a world {x, y, z, order} (the server's GET /stats).
 *
 * Writes carry the calling player (the caller's master player account id, or the PlayStream event's player) as
 * their author, so GET /history and POST /rollback know who made each change.
 *
 * Every function answers HTTP 200 with {ok: true, ...} or {ok: false, status, error} and never throws, so
 * PlayFab hands the result to the caller instead of a bare failure. status is the server's HTTP status, or 0
 * when no answer came back in time, the arguments were refused before calling (`field` names the argument)
 * or the settings are missing (`missing` names them).
 *
 * This file does not import @azure/functions: index.mjs passes the package's `app` to register(), and the
 * tests call the handlers directly with the request shapes PlayFab sends.
 */

/** The operations, each registered as an HTTP function of the same name. */
export const OPERATIONS = ['readCell', 'writeCell', 'readCells', 'readCellsAt', 'readBox', 'writeCells', 'cellHistory', 'rollbackPlayer', 's3dump'];

/**
 * How long one call to the server may take by default, and at most: PlayFab gives a function run by a
 * scheduled task or a PlayStream rule 4.5 s in all (ExecuteFunction more), so a call must end well before.
 */
export const DEFAULT_TIMEOUT_MS = 3000;
export const MAX_TIMEOUT_MS = 4000;

const MAX_BATCH = 4096;
const BYTE_FIELDS = ['category', 'rotation', 'sideA', 'sideB'];
const SETTINGS = ['CUBECACHE_URL', 'CUBECACHE_USER', 'CUBECACHE_PASSWORD'];

/** A result out of a handler body, thrown by the argument checks and caught by run(). */
class Refusal extends Error {
  constructor(result) {
    super(result.error);
    this.result = result;
  }
}

/**
 * The handlers for the app settings `env` ({CUBECACHE_URL, ...}): one async function per operation, taking
 * the body PlayFab posts (an execution context) and resolving to the result object. `fetch` is for tests.
 */
export function createHandlers(env, { fetch = globalThis.fetch } = {}) {
  const call = (path, payload, method) => callServer(fetch, settingsFrom(env), path, payload, method);
  const moderators = String(env.CUBECACHE_MODERATORS ?? '').split(',').map((id) => id.trim()).filter(Boolean);
  const bodies = {
    async readCell(args) {
      const index = checkIndex(args.index, 'index');
      const answer = await call('/request', { action: 0, index });
      return answer.ok ? cellResult(answer.body, index) : answer;
    },
    async writeCell(args, caller) {
      const command = writeCommand(args, '', caller);
      const answer = await call('/request', command);
      return answer.ok ? cellResult(answer.body, command.index) : answer;
    },
    async readCells(args) {
      const commands = checkList(args.indexes, 'indexes').map((index, i) => ({ action: 0, index: checkIndex(index, `indexes[${i}]`) }));
      const answer = await call('/request', commands);
      return answer.ok ? batchResult(answer.body, commands) : answer;
    },
    // The past: the cells as they were at an instant (ISO 8601), e.g. to look before a moderator restores a region.
    async readCellsAt(args) {
      if (typeof args.at !== 'string' || args.at === '') throw new Refusal({ ok: false, status: 0, error: 'at must be an ISO 8601 instant, e.g. "2026-12-01T14:03:00Z"', field: 'at' });
      const commands = checkList(args.indexes, 'indexes').map((index, i) => ({ action: 0, index: checkIndex(index, `indexes[${i}]`), at: args.at }));
      const answer = await call('/request', commands);
      return answer.ok ? batchResult(answer.body, commands) : answer;
    },
    // A box of the world, each cell with its x, y, z: two requests (the world's shape, then one batch read).
    async readBox(args) {
      const box = checkBox(args.box, 'box');
      if (args.at !== undefined && args.at !== null && (typeof args.at !== 'string' || args.at === '')) refuse('at', 'at must be an ISO 8601 instant, e.g. "2026-12-01T14:03:00Z"');
      const count = box[3] * box[4] * box[5];
      if (count > MAX_BATCH) refuse('box', `box holds ${count} cells; at most ${MAX_BATCH} in one call`);
      const stats = await call('/stats', undefined, 'GET');
      if (!stats.ok) return stats;
      if (!stats.body.shape || typeof stats.body.order !== 'string') return { ok: false, status: 0, error: 'the cubecache world is flat (its server has no WORLD_SHAPE): it has no x, y, z' };
      const world = { ...stats.body.shape, order: stats.body.order };
      ['x', 'y', 'z'].forEach((axis, a) => {
        if (box[a] + box[a + 3] > world[axis]) refuse('box', `box runs outside the world along ${axis}: ${box[a]} + ${box[a + 3]} > ${world[axis]}`);
      });
      const indexes = [];
      for (let x = box[0]; x < box[0] + box[3]; x++) for (let y = box[1]; y < box[1] + box[4]; y++) for (let z = box[2]; z < box[2] + box[5]; z++) indexes.push(indexOf(world, x, y, z));
      indexes.sort((p, q) => p - q);
      const commands = indexes.map((index) => (args.at ? { action: 0, index, at: args.at } : { action: 0, index }));
      const answer = await call('/request', commands);
      if (!answer.ok) return answer;
      const result = batchResult(answer.body, commands);
      if (!result.ok) return result;
      return { ok: true, cells: result.cells.map((cell) => ({ ...coordsOf(world, cell.index), ...cell })) };
    },
    async cellHistory(args) {
      const index = checkIndex(args.index, 'index');
      const query = ['since', 'until', 'limit', 'cursor'].filter((name) => args[name] !== undefined && args[name] !== null).map((name) => `&${name}=${encodeURIComponent(String(args[name]))}`).join('');
      const answer = await call(`/history?start=${index}&count=1${query}`, undefined, 'GET');
      if (!answer.ok) return answer;
      return answer.body.next ? { ok: true, changes: answer.body.changes, next: answer.body.next } : { ok: true, changes: answer.body.changes };
    },
    // A moderator's rollback of one player's changes (POST /rollback): callers must be in CUBECACHE_MODERATORS;
    // a scheduled task (no caller) is the title's own and may.
    async rollbackPlayer(args, caller) {
      if (caller !== undefined && !moderators.includes(caller)) return { ok: false, status: 403, error: 'rollbackPlayer is for moderators: add the caller\'s PlayFab id to CUBECACHE_MODERATORS' };
      if (typeof args.by !== 'string' || args.by === '') refuse('by', 'by must be the PlayFab id of the player whose changes to roll back');
      if (typeof args.since !== 'string' || args.since === '') refuse('since', 'since must be an ISO 8601 instant, e.g. "2026-12-01T14:03:00Z"');
      const body = { by: args.by, since: args.since };
      for (const name of ['until', 'count']) if (args[name] !== undefined && args[name] !== null) body[name] = args[name];
      if (args.start !== undefined && args.start !== null) body.start = checkIndex(args.start, 'start');
      if (args.box !== undefined && args.box !== null) {
        if (body.start !== undefined || body.count !== undefined) refuse('box', 'give either box or start and count, not both');
        body.box = checkBox(args.box, 'box');
      }
      if (args.preview !== undefined && args.preview !== null) body.preview = args.preview === true;
      const answer = await call(`/rollback?by=${encodeURIComponent(caller ?? 'scheduled-task')}`, body);
      if (!answer.ok) return answer;
      const { preview, restored, skipped, cells, skippedCells } = answer.body;
      return { ok: true, preview, restored, skipped, cells, skippedCells };
    },
    async writeCells(args, caller) {
      const commands = checkList(args.cells, 'cells').map((cell, i) => writeCommand(cell, `cells[${i}].`, caller));
      const answer = await call('/request', commands);
      return answer.ok ? batchResult(answer.body, commands) : answer;
    },
    // The asynchronous form: a 64 MiB backup can outlast the 4.5 s a scheduled task's function has. The
    // server answers 202 at once; the backup's outcome is in its GET /healthcheck.
    async s3dump() {
      const answer = await call('/s3dump?async=1', {});
      if (!answer.ok) return answer;
      const { backup, requestedAt, outcome } = answer.body;
      if (backup !== 'started' && backup !== 'joined') return unexpected(JSON.stringify(answer.body));
      return { ok: true, backup, requestedAt, outcome };
    },
  };
  const handlers = {};
  for (const name of OPERATIONS) {
    handlers[name] = async (executionContext) => {
      try {
        return await bodies[name](functionArgument(executionContext), callerOf(executionContext));
      } catch (err) {
        if (err instanceof Refusal) return err.result;
        return { ok: false, status: 0, error: `${name} failed: ${err instanceof Error ? err.message : String(err)}` };
      }
    };
  }
  return handlers;
}

/** The index of the cell at x, y, z in `world` ({x, y, z, order} as the server's GET /stats reports them; order names the axes fastest first, y is up). */
export function indexOf(world, x, y, z) {
  const s = strides(world);
  return x * s.x + y * s.y + z * s.z;
}

/** The {x, y, z} of the cell at `index` in `world` ({x, y, z, order}). */
export function coordsOf(world, index) {
  const [fast, mid, slow] = world.order;
  const out = { x: 0, y: 0, z: 0 };
  out[fast] = index % world[fast];
  const rest = Math.floor(index / world[fast]);
  out[mid] = rest % world[mid];
  out[slow] = Math.floor(rest / world[mid]);
  return out;
}

/** How far one step along each axis moves the index in `world`. */
function strides(world) {
  const [fast, mid, slow] = world.order;
  return { [fast]: 1, [mid]: world[fast], [slow]: world[fast] * world[mid] };
}

/**
 * Registers every operation with the Azure Functions `app` of @azure/functions (v4): POST, function-level
 * key (PlayFab's registered URL carries it), the result as the JSON body of a 200. Failures are logged
 * through the invocation context, never with the credentials.
 */
export function register(app, env, options) {
  const handlers = createHandlers(env, options);
  for (const name of OPERATIONS) {
    app.http(name, {
      methods: ['POST'],
      authLevel: 'function',
      handler: async (request, context) => {
        let body;
        try {
          body = await request.json();
        } catch {
          body = undefined; // refused below as a body that is not an execution context
        }
        const result = await handlers[name](body);
        if (!result.ok) context.error(`cubecache ${name}: ${result.status ? `${result.status} ` : ''}${result.error}`);
        return { status: 200, jsonBody: result };
      },
    });
  }
}

/** The calling player's PlayFab id: the caller of ExecuteFunction, or the player of a PlayStream event; undefined for a scheduled task. */
function callerOf(executionContext) {
  const id = executionContext?.CallerEntityProfile?.Lineage?.MasterPlayerAccountId ?? executionContext?.PlayerProfile?.PlayerId;
  return typeof id === 'string' && id !== '' ? id : undefined;
}

/** The FunctionArgument of an execution context (an empty object when PlayFab sends none, e.g. a scheduled task without arguments). */
function functionArgument(executionContext) {
  if (executionContext === null || typeof executionContext !== 'object' || Array.isArray(executionContext)) {
    throw new Refusal({ ok: false, status: 0, field: 'FunctionArgument', error: 'the request body must be a PlayFab function execution context (a JSON object with FunctionArgument)' });
  }
  const args = executionContext.FunctionArgument;
  if (args === undefined || args === null) return {};
  if (typeof args !== 'object' || Array.isArray(args)) throw new Refusal({ ok: false, status: 0, field: 'FunctionArgument', error: 'FunctionArgument must be an object' });
  return args;
}

/** The server's URL, the Authorization header and the timeout from the app settings; refuses naming what is missing or wrong. */
function settingsFrom(env) {
  const missing = SETTINGS.filter((name) => typeof env[name] !== 'string' || env[name].trim() === '');
  if (missing.length > 0) {
    throw new Refusal({ ok: false, status: 0, missing, error: `cubecache is not configured: set the function app setting${missing.length > 1 ? 's' : ''} ${missing.join(', ')}` });
  }
  const url = env.CUBECACHE_URL.trim().replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/i.test(url)) {
    throw new Refusal({ ok: false, status: 0, error: `the app setting CUBECACHE_URL must be an http(s) URL such as https://cubecache.example.com, got ${JSON.stringify(url)}` });
  }
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  const rawTimeout = env.CUBECACHE_TIMEOUT_MS;
  if (rawTimeout !== undefined && rawTimeout.trim() !== '') {
    timeoutMs = Number(rawTimeout);
    if (!/^\d+$/.test(rawTimeout.trim()) || timeoutMs < 100 || timeoutMs > MAX_TIMEOUT_MS) {
      throw new Refusal({ ok: false, status: 0, error: `the app setting CUBECACHE_TIMEOUT_MS must be a whole number of milliseconds from 100 to ${MAX_TIMEOUT_MS} (PlayFab's limits), got ${JSON.stringify(rawTimeout)}` });
    }
  }
  const authorization = `Basic ${Buffer.from(`${env.CUBECACHE_USER}:${env.CUBECACHE_PASSWORD}`, 'utf8').toString('base64')}`;
  return { url, authorization, timeoutMs };
}

/** POSTs `payload` as JSON; {ok:true, body} for a 200 or 202 answer, else the error result. */
async function callServer(fetch, settings, path, payload, method = 'POST') {
  const where = `${settings.url.replace(/\/\/[^/@]*@/, '//')}${path}`; // never a password from the URL in a message
  let response;
  let text;
  try {
    response = await fetch(settings.url + path, {
      method,
      headers: { Authorization: settings.authorization, 'Content-Type': 'application/json' },
      body: payload === undefined ? undefined : JSON.stringify(payload),
      signal: AbortSignal.timeout(settings.timeoutMs),
    });
    text = await response.text();
  } catch (err) {
    const reason = err?.name === 'TimeoutError' ? `no answer within ${settings.timeoutMs} ms` : describe(err);
    return { ok: false, status: 0, error: `no answer from cubecache at ${where}: ${reason}` };
  }
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    return unexpected(text);
  }
  if (response.status === 200 || response.status === 202) return { ok: true, body };
  return errorResult(body) ?? unexpected(text);
}

/** The result for a server error body {"status":N,"error":"...", ...}, or undefined if `body` is not one. */
function errorResult(body) {
  if (body === null || typeof body !== 'object' || typeof body.status !== 'number' || typeof body.error !== 'string') return undefined;
  const result = { ok: false, status: body.status, error: body.error };
  if (body.status === 409 && typeof body.index === 'number' && isCell(body)) {
    result.current = { index: body.index, category: body.category, rotation: body.rotation, sideA: body.sideA, sideB: body.sideB };
    if (typeof body.element === 'number') result.element = body.element;
  }
  return result;
}

function describe(err) {
  const cause = err?.cause;
  const code = cause?.code ?? err?.code;
  const message = err instanceof Error ? err.message : String(err);
  return code ? `${message} (${code})` : message;
}

function refuse(field, error) {
  throw new Refusal({ ok: false, status: 0, field, error });
}

/** A cell index: a whole number >= 0 (the server checks the upper bound, which only it knows). */
function checkIndex(value, field) {
  if (value === undefined || value === null) refuse(field, `${field} is missing`);
  if (!Number.isSafeInteger(value) || value < 0) refuse(field, `${field} must be a whole number >= 0, got ${JSON.stringify(value)}`);
  return value;
}

/** A box [x, y, z, w, h, d]: six whole numbers, w, h and d at least 1 (the server checks it fits its world). */
function checkBox(value, field) {
  if (!Array.isArray(value) || value.length !== 6 || !value.every((v, i) => Number.isSafeInteger(v) && v >= (i < 3 ? 0 : 1))) {
    refuse(field, `${field} must be [x, y, z, w, h, d]: whole numbers, w, h and d at least 1, got ${JSON.stringify(value)}`);
  }
  return [...value];
}

/** A byte field: missing or null is 0 (as on the server), else a whole number 0..255. */
function checkByte(value, field) {
  if (value === undefined || value === null) return 0;
  if (!Number.isInteger(value) || value < 0 || value > 255) refuse(field, `${field} must be a whole number from 0 to 255, got ${JSON.stringify(value)}`);
  return value;
}

/** A non-empty array of at most MAX_BATCH elements. */
function checkList(value, field) {
  if (value === undefined || value === null) refuse(field, `${field} is missing`);
  if (!Array.isArray(value)) refuse(field, `${field} must be an array`);
  if (value.length === 0) refuse(field, `${field} is empty`);
  if (value.length > MAX_BATCH) refuse(field, `${field} holds ${value.length} elements; at most ${MAX_BATCH}`);
  return value;
}

/** The /request command for a write of `cell` ({index, category, ..., expect?}); `where` prefixes field names. */
function writeCommand(cell, where, caller) {
  const name = where ? where.slice(0, -1) : 'FunctionArgument';
  if (cell === null || typeof cell !== 'object' || Array.isArray(cell)) refuse(name, `${name} must be an object {index, category, rotation, sideA, sideB}`);
  const command = { action: 1, index: checkIndex(cell.index, `${where}index`) };
  if (caller !== undefined) command.by = caller; // the calling player made it (never the caller's own say-so)
  for (const field of BYTE_FIELDS) command[field] = checkByte(cell[field], `${where}${field}`);
  if (cell.expect !== undefined && cell.expect !== null) {
    if (typeof cell.expect !== 'object' || Array.isArray(cell.expect)) refuse(`${where}expect`, `${where}expect must be an object {category, rotation, sideA, sideB}`);
    command.expect = {};
    for (const field of BYTE_FIELDS) command.expect[field] = checkByte(cell.expect[field], `${where}expect.${field}`);
  }
  return command;
}

function cellResult(body, index) {
  if (!isCell(body)) return unexpected(JSON.stringify(body));
  return { ok: true, index, category: body.category, rotation: body.rotation, sideA: body.sideA, sideB: body.sideB };
}

function batchResult(body, commands) {
  if (!Array.isArray(body) || body.length !== commands.length || !body.every(isCell)) return unexpected(JSON.stringify(body));
  return { ok: true, cells: body.map((cell, i) => ({ index: commands[i].index, category: cell.category, rotation: cell.rotation, sideA: cell.sideA, sideB: cell.sideB })) };
}

function isCell(value) {
  return value !== null && typeof value === 'object' && BYTE_FIELDS.every((field) => typeof value[field] === 'number');
}

function unexpected(text) {
  return { ok: false, status: 0, error: `unexpected answer from cubecache: ${String(text).slice(0, 300)}` };
}
