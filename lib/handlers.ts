/** One function per route. Handlers get everything through ctx; they never read the environment or exit. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FencedError, type Backups, type CellChange, type CellRange, type HistoryCursor } from './backup/backups.js';
import type { Run } from './backup/change.js';
import { CELL_BYTES, type Cell, type Cube } from './cube.js';
import { collectBody, hasBody, HttpError, readBody, readJson, sendJson, upstream, type BodyLimit } from './http.js';
import { clientAddress, type LoginGuard } from './login-guard.js';
import type { Metrics, Sample } from './metrics.js';
import { parseBasic } from './auth.js';
import { encodeAnswer, isAuthor, isJsonSpace, MAX_AUTHOR, MAX_BATCH, opensBatch, parseInstant, parseRequest, type CellCommand } from './protocol.js';

/** What handlers work with; built once per app. */
export interface Ctx {
  cube: Cube;
  backups: Backups;
  metrics: Metrics;
  /** True when the Authorization header carries the configured credentials. */
  checkAuth: (header: string | undefined) => boolean;
  guard: LoginGuard;
  /** Proxies in front of the server whose X-Forwarded-For entries are trusted. */
  trustedProxies: number;
  startedAt: number;
  now: () => number;
  /** An answer whose client reads none of it for this long is dropped (a whole-world GET /cells must not hold a slot forever). */
  stallMs: number;
}

/** Bodies of /request holding one command: it is under 200 bytes; a few KiB leaves room for whitespace and unknown fields. */
export const REQUEST_BODY_LIMIT = 4096;
/** Bodies of /request holding a batch: MAX_BATCH commands of up to 256 bytes each. */
export const BATCH_BODY_LIMIT = MAX_BATCH * 256;
/** /request's limit, picked on the body's first byte that is not whitespace: only a batch may pass 4 KiB. */
const REQUEST_LIMIT: BodyLimit = {
  bytes: BATCH_BODY_LIMIT,
  narrow(chunk) {
    for (let i = 0; i < chunk.length; i++) {
      if (!isJsonSpace(chunk[i]!)) return opensBatch(chunk[i]!) ? BATCH_BODY_LIMIT : REQUEST_BODY_LIMIT;
    }
    return undefined;
  },
};
/** Bodies of the other JSON routes: a name or nothing. */
const SMALL_BODY_LIMIT = 4096;
/** Range reads are sent in copies of this size: consistent cells, bounded memory, and backpressure between them. */
const RANGE_CHUNK_BYTES = 256 * 1024;

/** 401 unless the request carries the configured Basic credentials; 429 while its address is throttled for failed logins. */
export function requireAuth(req: IncomingMessage, ctx: Ctx): void {
  // While no address has failed logins on record (almost always), the address is needed only if this one fails.
  const address = ctx.guard.tracking ? clientAddress(req, ctx.trustedProxies) : undefined;
  const waitMs = address === undefined ? 0 : ctx.guard.blocked(address);
  if (waitMs > 0) {
    ctx.metrics.loginsThrottled++;
    throw new HttpError(429, 'too many failed logins from this address; try again later', { 'Retry-After': String(Math.ceil(waitMs / 1000)), ...strangerClose(req) });
  }
  if (!ctx.checkAuth(req.headers.authorization)) {
    ctx.metrics.authFailures++;
    ctx.guard.fail(address ?? clientAddress(req, ctx.trustedProxies));
    throw new HttpError(401, 'authentication required', { 'WWW-Authenticate': 'Basic realm="cubecache", charset="UTF-8"', ...strangerClose(req) });
  }
  if (address !== undefined) ctx.guard.succeed(address);
}

/** A stranger's body is not worth reading: answer and close, rather than drain a declared 64 MiB for a minute. */
function strangerClose(req: IncomingMessage): Record<string, string> {
  return hasBody(req) ? { Connection: 'close' } : {};
}

/**
 * POST /request: read or write one cell (the seed's protocol), or a batch of commands applied as one step.
 * The hot path, so no promise: the body is collected by callbacks, and `done` gets the error to answer, if any.
 */
export function request(req: IncomingMessage, res: ServerResponse, ctx: Ctx, done: (err?: unknown) => void): void {
  try {
    requireAuth(req, ctx);
  } catch (err) {
    done(err);
    return;
  }
  collectBody(req, REQUEST_LIMIT, (err, body) => {
    try {
      if (err) throw err;
      answerRequest(body!, res, ctx, done);
    } catch (caught) {
      done(caught);
    }
  });
}

/**
 * Decodes a whole /request body, applies it, logs its writes and sends the answer once the log has them
 * (then calls `done`); throws HttpError for the client's mistakes, before anything is written.
 */
function answerRequest(raw: Buffer, res: ServerResponse, ctx: Ctx, done: (err?: unknown) => void): void {
  const parsed = parseRequest(raw, ctx.cube.cells);
  if (!parsed.batch) {
    // One command (the common case) takes the same steps as a batch of one, without the batch's maps and arrays.
    const cmd = parsed.command;
    if (cmd.at !== undefined) answerPast([cmd], false, res, ctx).then(() => done(), done);
    else answerAfterWrite(encodeAnswer(applyCommand(ctx, cmd)), cmd.write, res, ctx, done);
    return;
  }
  const commands = parsed.commands;
  if (commands.some((cmd) => cmd.at !== undefined)) {
    answerPast(commands, true, res, ctx).then(() => done(), done);
    return;
  }
  const answers = applyCommands(ctx, commands, true);
  answerAfterWrite(`[${answers.map(encodeAnswer).join(',')}]`, commands.some((cmd) => cmd.write), res, ctx, done);
}

/** Sends `body` once every change recorded so far is in the log; a request that `wrote` gets the log's failure instead. */
function answerAfterWrite(body: string, wrote: boolean, res: ServerResponse, ctx: Ctx, done: (err?: unknown) => void): void {
  // A read waits too when writes are still being logged: it must not show a value that a crash could lose.
  ctx.backups.afterWrite((err) => {
    if (err && wrote) {
      done(notLogged(err));
      return;
    }
    sendJson(res, 200, body);
    done();
  });
}

/** Answers reads of the past (every command reads; those with `at` as the cells were then, the others as they are). */
async function answerPast(commands: CellCommand[], batch: boolean, res: ServerResponse, ctx: Ctx): Promise<void> {
  if (commands.some((cmd) => cmd.write)) throw new HttpError(400, 'a batch that reads the past holds reads only');
  const byInstant = new Map<number, CellCommand[]>();
  for (const cmd of commands) if (cmd.at !== undefined) byInstant.set(cmd.at, [...(byInstant.get(cmd.at) ?? []), cmd]);
  const past = new Map<CellCommand, Cell>();
  for (const [at, reads] of byInstant) {
    const cells = await upstream(ctx.backups.cellsAt(at, reads.map((cmd) => ({ start: cmd.index, count: 1 }))));
    reads.forEach((cmd, i) => past.set(cmd, { category: cells[i]![0]!, rotation: cells[i]![1]!, sideA: cells[i]![2]!, sideB: cells[i]![3]! }));
  }
  const answers = commands.map((cmd) => past.get(cmd) ?? ctx.cube.read(cmd.index));
  ctx.metrics.cellsRead += commands.length;
  sendJson(res, 200, batch ? `[${answers.map(encodeAnswer).join(',')}]` : encodeAnswer(answers[0]!));
}

/**
 * Applies commands as one step: every conditional write is checked (against the world as the earlier
 * commands leave it) before anything is written, so a conflict writes nothing; the writes are recorded as
 * one change. Returns each command's answer.
 */
function applyCommands(ctx: Ctx, commands: CellCommand[], batch: boolean): Cell[] {
  const pending = new Map<number, Cell>();
  const answers = new Array<Cell>(commands.length);
  let writes = 0;
  for (let i = 0; i < commands.length; i++) {
    const cmd = commands[i]!;
    const current = pending.get(cmd.index) ?? ctx.cube.read(cmd.index);
    if (cmd.write) {
      if (cmd.expect && !sameCell(current, cmd.expect)) throw conflict(ctx, cmd.index, current, batch ? `element ${i}: ` : '', batch ? { element: i } : {});
      pending.set(cmd.index, cmd.cell);
      answers[i] = cmd.cell;
      writes++;
    } else answers[i] = current;
  }
  if (writes > 0) {
    // A batch is one change, and a change has one author.
    const authors = new Set(commands.filter((cmd) => cmd.write).map((cmd) => cmd.by ?? ''));
    if (authors.size > 1) throw new HttpError(400, 'the writes of a batch are one change by one author: give them the same "by" (or none)');
    assertWritable(ctx);
    const runs: Run[] = [];
    for (const cmd of commands) {
      if (!cmd.write) continue;
      ctx.cube.write(cmd.index, cmd.cell);
      runs.push({ start: cmd.index, bytes: Uint8Array.of(cmd.cell.category, cmd.cell.rotation, cmd.cell.sideA, cmd.cell.sideB) });
    }
    ctx.backups.record(runs, [...authors][0]);
  }
  ctx.metrics.cellsWritten += writes;
  ctx.metrics.cellsRead += commands.length - writes;
  return answers;
}

/** applyCommands for one command that is not part of a batch: its answer. */
function applyCommand(ctx: Ctx, cmd: CellCommand): Cell {
  const current = ctx.cube.read(cmd.index);
  if (!cmd.write) {
    ctx.metrics.cellsRead++;
    return current;
  }
  if (cmd.expect && !sameCell(current, cmd.expect)) throw conflict(ctx, cmd.index, current, '');
  assertWritable(ctx);
  const cell = cmd.cell;
  ctx.cube.write(cmd.index, cell);
  ctx.backups.record([{ start: cmd.index, bytes: Uint8Array.of(cell.category, cell.rotation, cell.sideA, cell.sideB) }], cmd.by);
  ctx.metrics.cellsWritten++;
  return cell;
}

function sameCell(a: Cell, b: Cell): boolean {
  return a.category === b.category && a.rotation === b.rotation && a.sideA === b.sideA && a.sideB === b.sideB;
}

function conflict(ctx: Ctx, index: number, current: Cell, where: string, extra: Record<string, unknown> = {}): HttpError {
  ctx.metrics.conflicts++;
  return new HttpError(409, `${where}cell ${index} does not hold the expected value; nothing was written`, {}, { ...extra, index, ...current });
}

/** GET /cells?start=S&count=N: the raw bytes of N cells from S (4 a cell), streamed in consistent chunks. */
export async function readCells(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const query = new URL(req.url ?? '/', 'http://x').searchParams;
  const start = queryInteger(query, 'start', 0, 0, ctx.cube.cells);
  const count = queryInteger(query, 'count', ctx.cube.cells - start, 0, ctx.cube.cells - start);
  const at = queryInstant(query, 'at');
  // The past is rebuilt whole before the answer starts (an error is still a JSON 4xx); the present is read as it goes.
  const past = at === undefined ? undefined : (await upstream(ctx.backups.cellsAt(at, [{ start, count }])))[0]!;
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': count * CELL_BYTES, 'Cache-Control': 'no-store' });
  const source = past ?? ctx.cube.bytes;
  const from = past ? 0 : start * CELL_BYTES;
  const to = from + count * CELL_BYTES;
  for (let offset = from; offset < to; offset += RANGE_CHUNK_BYTES) {
    if (res.destroyed) return;
    // A copy, so bytes queued on a slow socket are the cells as they were when read, not whatever is there later.
    const chunk = source.slice(offset, Math.min(to, offset + RANGE_CHUNK_BYTES));
    if (!res.write(chunk)) await drainOrClose(res, ctx.stallMs);
  }
  res.end();
  ctx.metrics.cellsRead += count;
}

/** PUT /cells?start=S: writes the raw bytes of the body (whole cells, inside the world) as one step once the body is whole. */
export async function writeCells(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const query = new URL(req.url ?? '/', 'http://x').searchParams;
  const start = queryInteger(query, 'start', 0, 0, ctx.cube.cells);
  const room = (ctx.cube.cells - start) * CELL_BYTES;
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared % CELL_BYTES !== 0) throw new HttpError(400, `the body must be whole cells (a multiple of ${CELL_BYTES} bytes)`, { Connection: 'close' });
  // Nothing is written until the body is whole: a client that leaves mid-body changes nothing.
  const body = await readBody(req, room);
  if (body.length % CELL_BYTES !== 0) throw new HttpError(400, `the body must be whole cells (a multiple of ${CELL_BYTES} bytes), got ${body.length} bytes`);
  const cells = body.length / CELL_BYTES;
  if (cells > 0) {
    assertWritable(ctx);
    ctx.cube.writeRange(start, body);
    ctx.backups.record([{ start, bytes: body }], operator(req, query));
    await logged(ctx);
  }
  ctx.metrics.cellsWritten += cells;
  sendJson(res, 200, { status: 200, start, cells });
}

/** 503 while writes are refused (the log cannot be written, or another server took over): checked before anything changes. */
function assertWritable(ctx: Ctx): void {
  const refused = ctx.backups.refusal();
  if (refused) throw new HttpError(503, refused.message);
}

/** Resolves once the log holds every change recorded so far; 503 if it cannot be written. */
function logged(ctx: Ctx): Promise<void> {
  return new Promise((resolve, reject) => ctx.backups.afterWrite((err) => (err ? reject(notLogged(err)) : resolve())));
}

/**
 * The answer to a change the log could not write: the log dropped it and will never replay it (ChangeLog).
 * TODO(core, issue 17): the world still holds it until a restart (and a snapshot taken meanwhile would keep
 * it); the one write path must undo it with its before-image, newest first, as the log's waiters are called.
 */
function notLogged(err: Error): HttpError {
  return new HttpError(503, `the change could not be written to the log (${err.message}); it is not logged and will not be, retry`);
}

/** GET /stats: cells in use, cells per category, bytes written since the last backup. */
export async function stats(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const categories: Record<string, number> = {};
  ctx.cube.categories.forEach((count, category) => {
    if (count > 0) categories[category] = count;
  });
  const backup = ctx.backups.status();
  sendJson(res, 200, {
    status: 200,
    cells: ctx.cube.cells,
    cellsInUse: ctx.cube.cellsInUse,
    categories,
    bytesWrittenSinceBackup: backup.bytesWrittenSinceBackup,
    unsavedChanges: backup.unsavedChanges,
  });
}

/** GET /metrics: Prometheus text format. */
export async function metrics(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const b = ctx.backups.status();
  const time = (iso: string | null | undefined) => (iso ? Date.parse(iso) / 1000 : 0);
  const extra: Sample[] = [
    { name: 'cubecache_cells', help: 'Cells in the world.', type: 'gauge', value: ctx.cube.cells },
    { name: 'cubecache_cells_in_use', help: 'Cells with any non-zero byte.', type: 'gauge', value: ctx.cube.cellsInUse },
    { name: 'cubecache_unsaved_changes', help: '1 when the world holds writes no committed backup has.', type: 'gauge', value: b.unsavedChanges ? 1 : 0 },
    { name: 'cubecache_unsaved_bytes', help: 'Bytes written since the newest committed backup.', type: 'gauge', value: b.bytesWrittenSinceBackup },
    { name: 'cubecache_unsaved_since_timestamp_seconds', help: 'When the oldest unsaved write was made (0: none).', type: 'gauge', value: time(b.unsavedSince) },
    { name: 'cubecache_backups_total', help: 'Backups committed by this process.', type: 'counter', value: b.backupsTotal },
    { name: 'cubecache_backup_failures_total', help: 'Backups that failed.', type: 'counter', value: b.failuresTotal },
    { name: 'cubecache_backup_consecutive_failures', help: 'Failures since the last success.', type: 'gauge', value: b.consecutiveFailures },
    { name: 'cubecache_backup_last_success_timestamp_seconds', help: 'When the last backup was committed (0: none yet).', type: 'gauge', value: time(b.lastSuccessAt) },
    { name: 'cubecache_backup_last_duration_seconds', help: 'Duration of the last backup.', type: 'gauge', value: (b.lastBackup?.durationMs ?? 0) / 1000 },
    { name: 'cubecache_backup_last_bytes', help: 'Size of the last backup, compressed.', type: 'gauge', value: b.lastBackup?.compressedBytes ?? 0 },
    { name: 'cubecache_backup_fenced', help: '1 when another server took over the prefix and backups stopped.', type: 'gauge', value: b.fenced ? 1 : 0 },
    { name: 'cubecache_uptime_seconds', help: 'Seconds since start.', type: 'gauge', value: (ctx.now() - ctx.startedAt) / 1000 },
  ];
  const text = ctx.metrics.render(extra);
  res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
}

/** Resolves when `res` can take more data or has closed; after `stallMs` without either it drops the connection. Leaves no listener or timer behind. */
function drainOrClose(res: ServerResponse, stallMs: number): Promise<void> {
  return new Promise((resolve) => {
    const settle = () => {
      clearTimeout(timer);
      res.off('drain', settle);
      res.off('close', settle);
      resolve();
    };
    const timer = setTimeout(() => res.destroy(), stallMs); // 'close' follows and settles
    res.on('drain', settle);
    res.on('close', settle);
  });
}

/** A query parameter naming an instant (ISO 8601), in ms; undefined when absent, 400 when it names none. */
function queryInstant(query: URLSearchParams, name: string): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  const at = parseInstant(raw);
  if (at === undefined) throw new HttpError(400, `${name} must be an ISO 8601 instant, e.g. 2026-12-01T14:03:00Z`);
  return at;
}

/** A query parameter that must be a whole number in [min, max]; `fallback` when absent. */
function queryInteger(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name);
  if (raw === null) return fallback;
  if (!/^\d{1,15}$/.test(raw)) throw new HttpError(400, `${name} must be a whole number`);
  const value = Number(raw);
  if (value < min || value > max) throw new HttpError(400, `${name} must be between ${min} and ${max}`);
  return value;
}

/**
 * POST /s3dump: back up the world now; answers once the backup is committed. With `?async=1` it answers 202
 * at once, the backup started (or joined, if one is running), its outcome to be read from /healthcheck:
 * for callers with a few seconds to live (a PlayFab scheduled task) while a large backup can take longer.
 */
export async function s3dump(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  await readBody(req, SMALL_BODY_LIMIT); // the seed's clients send {}; its content does not matter
  const mode = new URL(req.url ?? '/', 'http://x').searchParams.get('async');
  if (mode === '1' || mode === 'true') {
    const before = ctx.backups.status();
    if (before.fenced) throw new FencedError('backups stopped: another server took over this prefix');
    const requestedAt = new Date(ctx.now()).toISOString();
    // The outcome is logged by the backups (backup_failed) and shown in /healthcheck; nobody awaits it here.
    ctx.backups.backup('request').catch(() => undefined);
    sendJson(res, 202, { status: 202, backup: before.inProgress ? 'joined' : 'started', requestedAt, outcome: '/healthcheck' });
    return;
  }
  const backup = await upstream(ctx.backups.backup('request'));
  sendJson(res, 200, { status: 200, backup });
}

/** GET /healthcheck: 200 while the server can serve; `?backup=1` also answers 503 when unsaved changes have waited over three intervals. */
export async function healthcheck(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  const backup = ctx.backups.status();
  const strict = new URL(req.url ?? '/', 'http://x').searchParams.get('backup');
  let status = 200;
  let problem: string | undefined;
  if (strict === '1' || strict === 'true') {
    problem = backupProblem(backup, ctx.backups.saveDeadlineMs, ctx.now());
    if (problem) status = 503;
  }
  sendJson(res, status, {
    status,
    ...(problem ? { error: problem } : {}),
    cells: ctx.cube.cells,
    bytes: ctx.cube.bytes.byteLength,
    uptimeSeconds: Math.round((ctx.now() - ctx.startedAt) / 1000),
    backup,
  });
}

/** GET /backups: the kept backups, newest first. */
export async function listBackups(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  sendJson(res, 200, { status: 200, backups: await upstream(ctx.backups.list()), history: ctx.backups.history() ?? null });
}

/**
 * POST /restore: `{"name"}` loads a kept backup into the running world and makes it the newest;
 * `{"at", "start"?, "count"?, "ranges"?}` puts the whole world, or only those cells, back as they were at
 * that instant, as one change by the operator (`by` in the query, else the authenticated user).
 */
export async function restore(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const body = await readJson(req, RESTORE_BODY_LIMIT);
  const fields = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  if (fields.at !== undefined) {
    const at = typeof fields.at === 'string' ? parseInstant(fields.at) : undefined;
    if (at === undefined) throw new HttpError(400, 'at must be an ISO 8601 instant, e.g. "2026-12-01T14:03:00Z"');
    const ranges = restoreRanges(fields, ctx.cube.cells);
    const cells = await upstream(ctx.backups.restoreAt(at, ranges, operator(req, new URL(req.url ?? '/', 'http://x').searchParams)));
    sendJson(res, 200, { status: 200, restored: { at: new Date(at).toISOString(), cells, ranges: ranges?.length ?? 1 } });
    return;
  }
  const name = fields.name;
  if (typeof name !== 'string' || name === '') throw new HttpError(400, 'body must be {"name": "<backup name>"} (see GET /backups) or {"at": "<instant>"} with "start" and "count" or "ranges" for part of the world');
  sendJson(res, 200, { status: 200, restored: await upstream(ctx.backups.restoreBackup(name, operator(req, new URL(req.url ?? '/', 'http://x').searchParams))) });
}

/** Who an operator's change is by: `?by=`, else the authenticated user. 400 for a `by` that is no author id. */
function operator(req: IncomingMessage, query: URLSearchParams): string {
  const by = query.get('by');
  if (by !== null) {
    if (!isAuthor(by)) throw new HttpError(400, `by must be up to ${MAX_AUTHOR} printable ASCII characters`);
    return by;
  }
  return parseBasic(req.headers.authorization)?.user ?? '';
}

/** The most entries one page of history holds; 100 unless `limit` says otherwise. */
const MAX_HISTORY_LIMIT = 1000;
/** A region a history query may name at most (its cells are tracked while the window is replayed). */
const MAX_HISTORY_CELLS = 1 << 20;

/**
 * GET /history?start=S&count=N (the changes to those cells) or ?by=P (that author's changes anywhere), with
 * `since`/`until` (ISO 8601; by default the last hour, or since history starts when it holds less), `by` also filtering a region, `limit` and `cursor`:
 * newest first, each {at, index, before, after, by}, and `next` (the cursor of the next page) when there is one.
 */
export async function history(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const query = new URL(req.url ?? '/', 'http://x').searchParams;
  const by = query.get('by') ?? undefined;
  if (by !== undefined && !isAuthor(by)) throw new HttpError(400, `by must be up to ${MAX_AUTHOR} printable ASCII characters`);
  const region = query.has('start') || query.has('count');
  if (!region && by === undefined) throw new HttpError(400, 'name the cells (start and count) or the author (by), or both');
  const start = queryInteger(query, 'start', 0, 0, ctx.cube.cells - 1);
  const count = queryInteger(query, 'count', 1, 1, Math.min(MAX_HISTORY_CELLS, ctx.cube.cells - start));
  const until = queryInstant(query, 'until') ?? ctx.now();
  // By default the last hour, or as much of it as history holds.
  const earliest = ctx.backups.history()?.earliest;
  const since = queryInstant(query, 'since') ?? Math.max(until - 3_600_000, earliest ? Date.parse(earliest) : -Infinity);
  if (since >= until) throw new HttpError(400, 'since must be before until');
  const limit = queryInteger(query, 'limit', 100, 1, MAX_HISTORY_LIMIT);
  const cursor = parseCursor(query.get('cursor'));
  const page = await upstream(ctx.backups.historyOf({ ranges: region ? [{ start, count }] : undefined, by, since, until, limit, cursor }));
  sendJson(res, 200, {
    status: 200,
    changes: page.changes.map(publicChange),
    ...(page.next ? { next: Buffer.from(JSON.stringify(page.next)).toString('base64url') } : {}),
  });
}

/** A cell's change as clients see it. */
function publicChange(change: CellChange) {
  return { at: new Date(change.at).toISOString(), index: change.index, before: cellOf(change.before), after: cellOf(change.after), by: change.by };
}

function cellOf(bytes: Uint8Array): Cell {
  return { category: bytes[0]!, rotation: bytes[1]!, sideA: bytes[2]!, sideB: bytes[3]! };
}

/** The cursor a page of history handed out, or undefined; 400 for one it did not. */
function parseCursor(raw: string | null): HistoryCursor | undefined {
  if (raw === null) return undefined;
  try {
    const value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as HistoryCursor;
    if ([value.at, value.lsn, value.seq].every(Number.isSafeInteger)) return { at: value.at, lsn: value.lsn, seq: value.seq };
  } catch { /* refused below */ }
  throw new HttpError(400, 'cursor must be the "next" of an earlier page');
}

/**
 * POST /rollback {"by", "since", "until"?, "start"/"count" or "ranges"?, "preview"?}: puts back, for every cell
 * that player changed in the window, the value it had before their first change in it; cells someone else
 * changed after them are left and listed. One change by the operator; `preview` changes nothing.
 */
export async function rollback(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const body = await readJson(req, RESTORE_BODY_LIMIT);
  const fields = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  if (typeof fields.by !== 'string' || !isAuthor(fields.by)) throw new HttpError(400, `by must be the player id whose changes to roll back (up to ${MAX_AUTHOR} printable ASCII characters)`);
  const instant = (name: string, fallback?: number) => {
    if (fields[name] === undefined && fallback !== undefined) return fallback;
    const at = typeof fields[name] === 'string' ? parseInstant(fields[name] as string) : undefined;
    if (at === undefined) throw new HttpError(400, `${name} must be an ISO 8601 instant, e.g. "2026-12-01T14:03:00Z"`);
    return at;
  };
  const since = instant('since');
  const until = instant('until', ctx.now());
  if (since >= until) throw new HttpError(400, 'since must be before until');
  if (fields.preview !== undefined && typeof fields.preview !== 'boolean') throw new HttpError(400, 'preview must be true or false');
  const ranges = restoreRanges(fields, ctx.cube.cells);
  const plan = await upstream(ctx.backups.rollback(fields.by, since, until, ranges, operator(req, new URL(req.url ?? '/', 'http://x').searchParams), fields.preview === true));
  sendJson(res, 200, {
    status: 200,
    preview: fields.preview === true,
    restored: plan.restore.length,
    skipped: plan.skipped.length,
    cells: plan.restore.map((c) => ({ index: c.index, from: cellOf(c.from), to: cellOf(c.to) })),
    skippedCells: plan.skipped.map((c) => ({ index: c.index, by: c.by, current: cellOf(c.value) })),
  });
}

/** Bodies of /restore: a name, or an instant with up to MAX_RESTORE_RANGES ranges. */
const RESTORE_BODY_LIMIT = 1024 * 1024;
/** The most ranges one restore takes (a box of 256 x 256 cells across is 65,536 short ranges). */
const MAX_RESTORE_RANGES = 65_536;

/** The ranges a restore to an instant names: `start`/`count`, or `ranges`; undefined for the whole world. 400 for any that does not fit. */
function restoreRanges(fields: Record<string, unknown>, cells: number): CellRange[] | undefined {
  const one = (value: unknown, where: string): CellRange => {
    const { start, count } = (typeof value === 'object' && value !== null ? value : {}) as { start?: unknown; count?: unknown };
    if (!Number.isSafeInteger(start) || (start as number) < 0 || (start as number) >= cells) throw new HttpError(400, `${where}start must be a whole number between 0 and ${cells - 1}`);
    if (!Number.isSafeInteger(count) || (count as number) < 1 || (start as number) + (count as number) > cells) throw new HttpError(400, `${where}count must be a whole number from 1 to ${cells - (start as number)} (the cells left from start)`);
    return { start: start as number, count: count as number };
  };
  if (fields.ranges !== undefined) {
    if (fields.start !== undefined || fields.count !== undefined) throw new HttpError(400, 'give either start and count, or ranges');
    if (!Array.isArray(fields.ranges) || fields.ranges.length === 0 || fields.ranges.length > MAX_RESTORE_RANGES) throw new HttpError(400, `ranges must be an array of 1 to ${MAX_RESTORE_RANGES} {"start", "count"}`);
    return fields.ranges.map((r, i) => one(r, `ranges[${i}].`));
  }
  if (fields.start !== undefined || fields.count !== undefined) return [one(fields, '')];
  return undefined;
}

/** Why the strict health check fails, or undefined: unsaved changes older than three cadences, the log failing, or fenced. */
function backupProblem(backup: ReturnType<Backups['status']>, limitMs: number, now: number): string | undefined {
  if (backup.fenced) return 'backups stopped: another server took over this prefix';
  if (backup.log.failure) return `the write-ahead log cannot be written: ${backup.log.failure}`;
  if (!backup.unsavedChanges || limitMs <= 0 || backup.unsavedSince === null) return undefined;
  const waitedMs = now - Date.parse(backup.unsavedSince);
  if (waitedMs <= limitMs) return undefined;
  return `unsaved changes for ${Math.round(waitedMs / 100) / 10} s (limit ${Math.round(limitMs / 100) / 10} s); last backup error: ${backup.lastShipError?.error ?? backup.lastError?.error ?? 'none'}`;
}
