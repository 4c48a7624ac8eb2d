/*
 * cubecache client for PlayFab CloudScript (legacy, JavaScript). PlayFab now calls classic CloudScript "Legacy"
 * and recommends CloudScript Functions: cloudscript/functions/ is the same client as an Azure Function.
 *
 * Install
 *   1. Game Manager > Automation > CloudScript (Legacy) > Revisions: add this file to a new revision
 *      (next to your own files: all files of a revision share one global scope, so every helper here is
 *      named cubecache...) and deploy the revision live.
 *   2. Set three Title Internal Data keys (Game Manager > Content > Title Data > Title Internal Data, or the
 *      Server API SetTitleInternalData). Internal data is readable by CloudScript only, never by game clients:
 *        cubecacheUrl       the server's base URL, e.g. https://cubecache.example.com (no path; a trailing / is fine)
 *        cubecacheUser      the server's AUTH_USER (cubecache unless changed)
 *        cubecachePassword  the server's AUTH_PASSWORD
 *   3. Backups: Automation > Scheduled Tasks > New task, type "Execute CloudScript", function s3dump, no
 *      arguments, e.g. hourly. The server also backs up on its own schedule; this is the seed's hourly dump.
 *      s3dump starts the backup and returns at once (POST /s3dump?async=1): a backup can outlast the 4 s a
 *      CloudScript call has. Its outcome is in the server's GET /healthcheck (backup.lastSuccessAt, lastError).
 *
 * Handlers (game clients call them with ExecuteCloudScript; FunctionParameter is `args`):
 *   readCell   {index}                                              -> {ok, index, category, rotation, sideA, sideB}
 *   writeCell  {index, category, rotation, sideA, sideB, expect?}   -> {ok, index, category, rotation, sideA, sideB}
 *   readCells  {indexes: [index, ...]}                              -> {ok, cells: [{index, category, ...}, ...]}
 *   readCellsAt {indexes: [index, ...], at: "2026-12-01T14:03:00Z"} -> the same, as the cells were at that instant
 *   cellHistory {index, since?, until?, limit?}                     -> {ok, changes: [{at, index, before, after, by}, ...] newest first, next?}
 *   readBox    {box: [x, y, z, w, h, d], at?}                      -> {ok, cells: [{x, y, z, index, category, ...}, ...]} in index order (up to 4096 cells)
 *   rollbackPlayer {by, since, until?, start?, count? or box?, preview?} -> {ok, preview, restored, skipped, cells, skippedCells} (moderators only)
 * Writes carry the calling player (currentPlayerId) as their author, so GET /history and POST /rollback know who
 * made each change. rollbackPlayer is for moderators: the callers listed (comma-separated PlayFab ids) in the
 * Title Internal Data key cubecacheModerators; anyone else gets {ok: false, status: 403}.
 *   writeCells {cells: [{index, category, ..., expect?}, ...]}      -> {ok, cells: [{index, category, ...}, ...]}
 *   s3dump     {}                                                   -> {ok, backup: 'started' or 'joined', requestedAt, outcome: '/healthcheck'}
 * A box is its lowest corner x, y, z and its extent w, h, d along x, y (up) and z. For your own code the file
 * also has cubecacheWorld() (the server's {x, y, z, order}, from GET /stats), cubecacheIndexOf(world, x, y, z)
 * and cubecacheCoordsOf(world, index), which convert between an index and x, y, z.
 * Missing byte fields are 0, as on the server. `expect` ({category, rotation, sideA, sideB}) makes a write
 * conditional: if the cell holds something else nothing is written and the result is
 * {ok: false, status: 409, error, current: {index, category, rotation, sideA, sideB}} (plus `element`, the
 * position in `cells`, for writeCells). A batch is applied all or nothing.
 * Every handler returns {ok: true, ...} or {ok: false, status, error} and never throws. status is the
 * server's HTTP status (400 bad argument, 401 wrong credentials, 409 conflict, 502 backup store failed, ...);
 * 0 when no answer came back (network failure, timeout, bad URL) or the handler refused its arguments
 * before calling (then also `field`) or the configuration is missing (then also `missing`: the keys).
 */

var CUBECACHE_CONFIG_KEYS = ['cubecacheUrl', 'cubecacheUser', 'cubecachePassword'];
var CUBECACHE_MODERATORS_KEY = 'cubecacheModerators';
var CUBECACHE_MAX_BATCH = 4096;
var CUBECACHE_BYTE_FIELDS = ['category', 'rotation', 'sideA', 'sideB'];

handlers.readCell = function (args) {
  return cubecacheGuard('readCell', function () {
    var index = cubecacheIndex(args && args.index, 'index');
    var answer = cubecacheCall('/request', { action: 0, index: index });
    return answer.ok ? cubecacheCellResult(answer.body, index) : answer;
  });
};

handlers.writeCell = function (args) {
  return cubecacheGuard('writeCell', function () {
    var command = cubecacheWriteCommand(args, '');
    var answer = cubecacheCall('/request', command);
    return answer.ok ? cubecacheCellResult(answer.body, command.index) : answer;
  });
};

handlers.readCells = function (args) {
  return cubecacheGuard('readCells', function () {
    var indexes = cubecacheList(args && args.indexes, 'indexes');
    var commands = [];
    for (var i = 0; i < indexes.length; i++) {
      commands.push({ action: 0, index: cubecacheIndex(indexes[i], 'indexes[' + i + ']') });
    }
    var answer = cubecacheCall('/request', commands);
    return answer.ok ? cubecacheBatchResult(answer.body, commands) : answer;
  });
};

// The past: the cells as they were at an instant (ISO 8601), e.g. to look before a moderator restores a region.
handlers.readCellsAt = function (args) {
  return cubecacheGuard('readCellsAt', function () {
    var at = args && args.at;
    if (typeof at !== 'string' || at === '') cubecacheBadArgument('at', 'at must be an ISO 8601 instant, e.g. "2026-12-01T14:03:00Z"');
    var indexes = cubecacheList(args && args.indexes, 'indexes');
    var commands = [];
    for (var i = 0; i < indexes.length; i++) {
      commands.push({ action: 0, index: cubecacheIndex(indexes[i], 'indexes[' + i + ']'), at: at });
    }
    var answer = cubecacheCall('/request', commands);
    return answer.ok ? cubecacheBatchResult(answer.body, commands) : answer;
  });
};

handlers.cellHistory = function (args) {
  return cubecacheGuard('cellHistory', function () {
    var index = cubecacheIndex(args && args.index, 'index');
    var query = '?start=' + index + '&count=1';
    var names = ['since', 'until', 'limit', 'cursor'];
    for (var i = 0; i < names.length; i++) {
      var value = args && args[names[i]];
      if (value !== undefined && value !== null) query += '&' + names[i] + '=' + encodeURIComponent(String(value));
    }
    var answer = cubecacheCall('/history' + query, undefined, 'GET');
    if (!answer.ok) return answer;
    var result = { ok: true, changes: answer.body.changes };
    if (answer.body.next) result.next = answer.body.next;
    return result;
  });
};

// A moderator's rollback of one player's changes: see POST /rollback. Game clients can call any handler, so
// only the callers listed in cubecacheModerators may.
handlers.rollbackPlayer = function (args) {
  return cubecacheGuard('rollbackPlayer', function () {
    var moderator = cubecachePlayer();
    if (!moderator || cubecacheModerators().indexOf(moderator) < 0) {
      return { ok: false, status: 403, error: 'rollbackPlayer is for moderators: add the caller\'s PlayFab id to the Title Internal Data key ' + CUBECACHE_MODERATORS_KEY };
    }
    if (!args || typeof args.by !== 'string' || args.by === '') cubecacheBadArgument('by', 'by must be the PlayFab id of the player whose changes to roll back');
    if (typeof args.since !== 'string' || args.since === '') cubecacheBadArgument('since', 'since must be an ISO 8601 instant, e.g. "2026-12-01T14:03:00Z"');
    var body = { by: args.by, since: args.since };
    if (args.until !== undefined && args.until !== null) body.until = args.until;
    if (args.start !== undefined && args.start !== null) body.start = cubecacheIndex(args.start, 'start');
    if (args.count !== undefined && args.count !== null) body.count = args.count;
    if (args.box !== undefined && args.box !== null) {
      if (body.start !== undefined || body.count !== undefined) cubecacheBadArgument('box', 'give either box or start and count, not both');
      body.box = cubecacheBox(args.box, 'box');
    }
    if (args.preview !== undefined && args.preview !== null) body.preview = args.preview === true;
    var answer = cubecacheCall('/rollback?by=' + encodeURIComponent(moderator), body);
    if (!answer.ok) return answer;
    var b = answer.body;
    return { ok: true, preview: b.preview, restored: b.restored, skipped: b.skipped, cells: b.cells, skippedCells: b.skippedCells };
  });
};

// A box of the world, each cell with its x, y, z: two requests (the world's shape, then one batch read).
handlers.readBox = function (args) {
  return cubecacheGuard('readBox', function () {
    var box = cubecacheBox(args && args.box, 'box');
    var at = args && args.at;
    if (at !== undefined && at !== null && (typeof at !== 'string' || at === '')) cubecacheBadArgument('at', 'at must be an ISO 8601 instant, e.g. "2026-12-01T14:03:00Z"');
    var count = box[3] * box[4] * box[5];
    if (count > CUBECACHE_MAX_BATCH) cubecacheBadArgument('box', 'box holds ' + count + ' cells; at most ' + CUBECACHE_MAX_BATCH + ' in one call');
    var world = cubecacheWorld();
    var axes = ['x', 'y', 'z'];
    for (var a = 0; a < 3; a++) {
      if (box[a] + box[a + 3] > world[axes[a]]) {
        cubecacheBadArgument('box', 'box runs outside the world along ' + axes[a] + ': ' + box[a] + ' + ' + box[a + 3] + ' > ' + world[axes[a]]);
      }
    }
    var indexes = [];
    for (var x = box[0]; x < box[0] + box[3]; x++) {
      for (var y = box[1]; y < box[1] + box[4]; y++) {
        for (var z = box[2]; z < box[2] + box[5]; z++) indexes.push(cubecacheIndexOf(world, x, y, z));
      }
    }
    indexes.sort(function (p, q) { return p - q; });
    var commands = [];
    for (var i = 0; i < indexes.length; i++) {
      var command = { action: 0, index: indexes[i] };
      if (at !== undefined && at !== null) command.at = at;
      commands.push(command);
    }
    var answer = cubecacheCall('/request', commands);
    if (!answer.ok) return answer;
    var result = cubecacheBatchResult(answer.body, commands);
    if (!result.ok) return result;
    var cells = [];
    for (var j = 0; j < result.cells.length; j++) {
      var c = result.cells[j];
      var where = cubecacheCoordsOf(world, c.index);
      cells.push({ x: where.x, y: where.y, z: where.z, index: c.index, category: c.category, rotation: c.rotation, sideA: c.sideA, sideB: c.sideB });
    }
    return { ok: true, cells: cells };
  });
};

/** The server's world: {x, y, z, order} from GET /stats (order names the axes fastest first, e.g. "xzy"; y is up). Fails for a flat world. */
function cubecacheWorld() {
  var answer = cubecacheCall('/stats', undefined, 'GET');
  if (!answer.ok) cubecacheFail(answer);
  var shape = answer.body.shape;
  if (!shape || typeof answer.body.order !== 'string') {
    cubecacheFail({ ok: false, status: 0, error: 'the cubecache world is flat (its server has no WORLD_SHAPE): it has no x, y, z' });
  }
  return { x: shape.x, y: shape.y, z: shape.z, order: answer.body.order };
}

/** How far one step along each axis moves the index in `world`. */
function cubecacheStrides(world) {
  var fast = world.order.charAt(0);
  var mid = world.order.charAt(1);
  var strides = { x: 0, y: 0, z: 0 };
  strides[fast] = 1;
  strides[mid] = world[fast];
  strides[world.order.charAt(2)] = world[fast] * world[mid];
  return strides;
}

/** The index of the cell at x, y, z in `world` ({x, y, z, order}, as cubecacheWorld() gives it). */
function cubecacheIndexOf(world, x, y, z) {
  var s = cubecacheStrides(world);
  return x * s.x + y * s.y + z * s.z;
}

/** The {x, y, z} of the cell at `index` in `world` ({x, y, z, order}). */
function cubecacheCoordsOf(world, index) {
  var fast = world.order.charAt(0);
  var mid = world.order.charAt(1);
  var out = { x: 0, y: 0, z: 0 };
  out[fast] = index % world[fast];
  var rest = Math.floor(index / world[fast]);
  out[mid] = rest % world[mid];
  out[world.order.charAt(2)] = Math.floor(rest / world[mid]);
  return out;
}

/** A box [x, y, z, w, h, d]: six whole numbers, w, h and d at least 1 (the server checks it fits its world). */
function cubecacheBox(value, field) {
  if (!Array.isArray(value) || value.length !== 6) cubecacheBadArgument(field, field + ' must be [x, y, z, w, h, d], got ' + JSON.stringify(value));
  for (var i = 0; i < 6; i++) {
    var v = value[i];
    if (typeof v !== 'number' || v < (i < 3 ? 0 : 1) || Math.floor(v) !== v || !isFinite(v)) {
      cubecacheBadArgument(field, field + ' must be [x, y, z, w, h, d]: whole numbers, w, h and d at least 1, got ' + JSON.stringify(value));
    }
  }
  return [value[0], value[1], value[2], value[3], value[4], value[5]];
}

/** The calling player's PlayFab id, or '' when there is none. */
function cubecachePlayer() {
  return typeof currentPlayerId === 'string' ? currentPlayerId : '';
}

/** The moderators' PlayFab ids from Title Internal Data (none when the key is unset). */
function cubecacheModerators() {
  var data = server.GetTitleInternalData({ Keys: [CUBECACHE_MODERATORS_KEY] }).Data || {};
  var list = String(data[CUBECACHE_MODERATORS_KEY] || '').split(',');
  var out = [];
  for (var i = 0; i < list.length; i++) {
    var id = list[i].replace(/^\s+|\s+$/g, '');
    if (id) out.push(id);
  }
  return out;
}

handlers.writeCells = function (args) {
  return cubecacheGuard('writeCells', function () {
    var cells = cubecacheList(args && args.cells, 'cells');
    var commands = [];
    for (var i = 0; i < cells.length; i++) commands.push(cubecacheWriteCommand(cells[i], 'cells[' + i + '].'));
    var answer = cubecacheCall('/request', commands);
    return answer.ok ? cubecacheBatchResult(answer.body, commands) : answer;
  });
};

// The asynchronous form: a classic CloudScript API call has 4 s, and a large backup on a slow day takes longer.
// The server answers 202 at once; the backup's outcome is in its /healthcheck (and its log).
handlers.s3dump = function () {
  return cubecacheGuard('s3dump', function () {
    var answer = cubecacheCall('/s3dump?async=1', {});
    if (!answer.ok) return answer;
    if (answer.body.backup !== 'started' && answer.body.backup !== 'joined') return cubecacheUnexpected(JSON.stringify(answer.body));
    log.info('cubecache s3dump: backup ' + answer.body.backup + ' at ' + answer.body.requestedAt + '; its outcome is in ' + answer.body.outcome);
    return { ok: true, backup: answer.body.backup, requestedAt: answer.body.requestedAt, outcome: answer.body.outcome };
  });
};

/** Runs a handler body: a refused argument becomes {ok:false, status:0, ...}; any other surprise too, logged. */
function cubecacheGuard(name, body) {
  var result;
  try {
    result = body();
  } catch (ex) {
    result = ex && ex.cubecacheResult ? ex.cubecacheResult : { ok: false, status: 0, error: name + ' failed: ' + cubecacheText(ex) };
  }
  if (!result.ok) log.error('cubecache ' + name + ': ' + (result.status ? result.status + ' ' : '') + result.error);
  return result;
}

/** Throws a ready result out of the handler (caught by cubecacheGuard). */
function cubecacheFail(result) {
  var ex = new Error(result.error);
  ex.cubecacheResult = result;
  throw ex;
}

function cubecacheBadArgument(field, message) {
  cubecacheFail({ ok: false, status: 0, error: message, field: field });
}

/** A cell index: a whole number >= 0 (the server checks the upper bound, which only it knows). */
function cubecacheIndex(value, field) {
  if (value === undefined || value === null) cubecacheBadArgument(field, field + ' is missing');
  if (typeof value !== 'number' || value < 0 || Math.floor(value) !== value || !isFinite(value)) {
    cubecacheBadArgument(field, field + ' must be a whole number >= 0, got ' + JSON.stringify(value));
  }
  return value;
}

/** A byte field: missing or null is 0 (as on the server), else a whole number 0..255. */
function cubecacheByte(value, field) {
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || value < 0 || value > 255 || Math.floor(value) !== value) {
    cubecacheBadArgument(field, field + ' must be a whole number from 0 to 255, got ' + JSON.stringify(value));
  }
  return value;
}

/** A non-empty array of at most CUBECACHE_MAX_BATCH elements. */
function cubecacheList(value, field) {
  if (value === undefined || value === null) cubecacheBadArgument(field, field + ' is missing');
  if (!Array.isArray(value)) cubecacheBadArgument(field, field + ' must be an array');
  if (value.length === 0) cubecacheBadArgument(field, field + ' is empty');
  if (value.length > CUBECACHE_MAX_BATCH) cubecacheBadArgument(field, field + ' holds ' + value.length + ' elements; at most ' + CUBECACHE_MAX_BATCH);
  return value;
}

/** The /request command for a write of `cell` ({index, category, ..., expect?}); `where` prefixes field names. */
function cubecacheWriteCommand(cell, where) {
  if (cell === undefined || cell === null || typeof cell !== 'object' || Array.isArray(cell)) {
    cubecacheBadArgument(where ? where.slice(0, -1) : 'args', (where ? where.slice(0, -1) : 'args') + ' must be an object {index, category, rotation, sideA, sideB}');
  }
  var command = { action: 1, index: cubecacheIndex(cell.index, where + 'index') };
  var player = cubecachePlayer();
  if (player) command.by = player; // the calling player made it (never the caller's own say-so)
  for (var i = 0; i < CUBECACHE_BYTE_FIELDS.length; i++) {
    var name = CUBECACHE_BYTE_FIELDS[i];
    command[name] = cubecacheByte(cell[name], where + name);
  }
  if (cell.expect !== undefined && cell.expect !== null) {
    if (typeof cell.expect !== 'object' || Array.isArray(cell.expect)) {
      cubecacheBadArgument(where + 'expect', where + 'expect must be an object {category, rotation, sideA, sideB}');
    }
    command.expect = {};
    for (var j = 0; j < CUBECACHE_BYTE_FIELDS.length; j++) {
      var field = CUBECACHE_BYTE_FIELDS[j];
      command.expect[field] = cubecacheByte(cell.expect[field], where + 'expect.' + field);
    }
  }
  return command;
}

/** {ok:true, index, category, rotation, sideA, sideB} from one /request answer. */
function cubecacheCellResult(body, index) {
  if (!cubecacheIsCell(body)) return cubecacheUnexpected(JSON.stringify(body));
  return { ok: true, index: index, category: body.category, rotation: body.rotation, sideA: body.sideA, sideB: body.sideB };
}

/** {ok:true, cells:[...]} from a batch answer: one cell per command, in order. */
function cubecacheBatchResult(body, commands) {
  if (!Array.isArray(body) || body.length !== commands.length) return cubecacheUnexpected(JSON.stringify(body));
  var cells = [];
  for (var i = 0; i < body.length; i++) {
    if (!cubecacheIsCell(body[i])) return cubecacheUnexpected(JSON.stringify(body));
    cells.push({ index: commands[i].index, category: body[i].category, rotation: body[i].rotation, sideA: body[i].sideA, sideB: body[i].sideB });
  }
  return { ok: true, cells: cells };
}

function cubecacheIsCell(value) {
  return value !== null && typeof value === 'object' && typeof value.category === 'number' && typeof value.rotation === 'number'
    && typeof value.sideA === 'number' && typeof value.sideB === 'number';
}

function cubecacheUnexpected(text) {
  return { ok: false, status: 0, error: 'unexpected answer from cubecache: ' + String(text).slice(0, 300) };
}

/** URL and credentials from Title Internal Data; never from this file. Fails naming the keys that are missing. */
function cubecacheConfig() {
  var data;
  try {
    data = server.GetTitleInternalData({ Keys: CUBECACHE_CONFIG_KEYS }).Data || {};
  } catch (ex) {
    cubecacheFail({ ok: false, status: 0, error: 'cannot read Title Internal Data: ' + cubecacheText(ex) });
  }
  var missing = [];
  for (var i = 0; i < CUBECACHE_CONFIG_KEYS.length; i++) {
    var value = data[CUBECACHE_CONFIG_KEYS[i]];
    if (typeof value !== 'string' || value.replace(/^\s+|\s+$/g, '') === '') missing.push(CUBECACHE_CONFIG_KEYS[i]);
  }
  if (missing.length > 0) {
    cubecacheFail({ ok: false, status: 0, missing: missing, error: 'cubecache is not configured: set the Title Internal Data key' + (missing.length > 1 ? 's ' : ' ') + missing.join(', ') });
  }
  var url = data.cubecacheUrl.replace(/^\s+|\s+$/g, '').replace(/\/+$/, '');
  if (!/^https?:\/\/[^\/]+/i.test(url)) {
    cubecacheFail({ ok: false, status: 0, error: 'the Title Internal Data key cubecacheUrl must be an http(s) URL such as https://cubecache.example.com, got ' + JSON.stringify(url) });
  }
  return { url: url, authorization: 'Basic ' + cubecacheBase64(data.cubecacheUser + ':' + data.cubecachePassword) };
}

/**
 * POSTs `payload` as JSON to the server. {ok:true, body} for an answer with status 200, else the error result.
 * The server's error bodies carry their status ({"status":N,"error":"..."}), so the body alone tells the outcome
 * whether http.request returns it (what it does for most statuses) or throws with it.
 */
function cubecacheCall(path, payload, method) {
  var config = cubecacheConfig();
  var text;
  try {
    text = http.request(config.url + path, method || 'POST', payload === undefined ? '' : JSON.stringify(payload), 'application/json', { Authorization: config.authorization });
  } catch (ex) {
    var thrown = cubecacheText(ex);
    var embedded = cubecacheErrorBody(thrown);
    if (embedded) return embedded;
    return { ok: false, status: 0, error: 'no answer from cubecache at ' + config.url.replace(/\/\/[^\/@]*@/, '//') + path + ': ' + thrown };
  }
  var body;
  try {
    body = JSON.parse(text);
  } catch (parseError) {
    return cubecacheUnexpected(text);
  }
  if (body !== null && typeof body === 'object' && !Array.isArray(body) && body.status !== 200 && body.status !== 202) {
    return cubecacheError(body) || cubecacheUnexpected(text);
  }
  return { ok: true, body: body };
}

/** The result for a server error body {"status":N,"error":"...", ...}, or null if `body` is not one. */
function cubecacheError(body) {
  if (body === null || typeof body !== 'object' || typeof body.status !== 'number' || typeof body.error !== 'string') return null;
  var result = { ok: false, status: body.status, error: body.error };
  if (body.status === 409 && typeof body.index === 'number' && cubecacheIsCell(body)) {
    result.current = { index: body.index, category: body.category, rotation: body.rotation, sideA: body.sideA, sideB: body.sideB };
    if (typeof body.element === 'number') result.element = body.element;
  }
  return result;
}

/** A server error body inside the text of a thrown exception, if there is one. */
function cubecacheErrorBody(text) {
  var start = text.indexOf('{"status":');
  var end = text.lastIndexOf('}');
  if (start < 0 || end < start) return null;
  try {
    return cubecacheError(JSON.parse(text.slice(start, end + 1)));
  } catch (ex) {
    return null;
  }
}

function cubecacheText(ex) {
  if (ex === undefined || ex === null) return String(ex);
  if (typeof ex === 'string') return ex;
  if (typeof ex.message === 'string' && ex.message !== '') return ex.message;
  try {
    return JSON.stringify(ex);
  } catch (stringifyError) {
    return String(ex);
  }
}

/** Base64 of the UTF-8 bytes of `text` (CloudScript has neither btoa nor Buffer). */
function cubecacheBase64(text) {
  var alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  var bytes = [];
  for (var i = 0; i < text.length; i++) {
    var code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      var low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        i++;
      }
    }
    if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd; // a lone surrogate, as TextEncoder and Buffer write it
    if (code < 0x80) bytes.push(code);
    else if (code < 0x800) bytes.push(0xc0 | (code >> 6), 0x80 | (code & 0x3f));
    else if (code < 0x10000) bytes.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
    else bytes.push(0xf0 | (code >> 18), 0x80 | ((code >> 12) & 0x3f), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
  }
  var out = '';
  for (var j = 0; j < bytes.length; j += 3) {
    var b0 = bytes[j];
    var b1 = j + 1 < bytes.length ? bytes[j + 1] : 0;
    var b2 = j + 2 < bytes.length ? bytes[j + 2] : 0;
    out += alphabet.charAt(b0 >> 2) + alphabet.charAt(((b0 & 3) << 4) | (b1 >> 4))
      + (j + 1 < bytes.length ? alphabet.charAt(((b1 & 15) << 2) | (b2 >> 6)) : '=')
      + (j + 2 < bytes.length ? alphabet.charAt(b2 & 63) : '=');
  }
  return out;
}
