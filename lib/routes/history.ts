/** GET /history and POST /rollback: who changed which cells, and undoing one player's changes. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CellChange, HistoryCursor } from '../backup/backups.js';
import { CELL_BYTES, type Cell } from '../cube.js';
import { HttpError, readJson, sendJson, upstream } from '../http.js';
import { isAuthor, MAX_AUTHOR, parseInstant } from '../values.js';
import { boxCells, boxRanges } from '../shape.js';
import { requireAuth, type Ctx } from './context.js';
import { operator, queryInstant, queryInteger, queryOf } from './query.js';
import { bodyRanges, queryBox, RESTORE_BODY_LIMIT } from './region.js';

/** The most entries one page of history holds; 100 unless `limit` says otherwise. */
const MAX_HISTORY_LIMIT = 1000;
/** A region a history query may name at most (its cells are tracked while the window is replayed). */
const MAX_HISTORY_CELLS = 1 << 20;
/**
 * The most runs a rollback's answer lists of each kind. A run is at most 20 bytes of JSON, a listed cell
 * (1,000 of each kind) at most about 250: 2 x 10,000 x 20 + 2 x 1,000 x 250 keeps the answer under 1 MB
 * however many cells the rollback covers. The counts are always exact.
 */
const MAX_ANSWER_RUNS = 10_000;

/**
 * GET /history?start=S&count=N or ?box=x,y,z,w,h,d (the changes to those cells) or ?by=P (that author's changes anywhere), with
 * `since`/`until` (ISO 8601; by default the last hour, or since history starts when it holds less), `by` also filtering a region, `limit` and `cursor`:
 * newest first, each {at, index, before, after, by}, and `next` (the cursor of the next page) when there is one.
 */
export async function history(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const query = queryOf(req, ['start', 'count', 'box', 'by', 'since', 'until', 'limit', 'cursor']);
  const by = query.get('by') ?? undefined;
  if (by !== undefined && !isAuthor(by)) throw new HttpError(400, `by must be up to ${MAX_AUTHOR} printable ASCII characters`);
  const box = queryBox(query, ctx, ['start', 'count']);
  if (box && boxCells(box) > MAX_HISTORY_CELLS) throw new HttpError(400, `box must hold at most ${MAX_HISTORY_CELLS} cells, got ${boxCells(box)}`);
  const region = box !== undefined || query.has('start') || query.has('count');
  if (!region && by === undefined) throw new HttpError(400, 'name the cells (start and count, or box) or the author (by), or both');
  const start = queryInteger(query, 'start', 0, 0, ctx.cube.cells - 1);
  const count = queryInteger(query, 'count', 1, 1, Math.min(MAX_HISTORY_CELLS, ctx.cube.cells - start));
  const ranges = box ? boxRanges(ctx.shape!, box) : [{ start, count }];
  const until = queryInstant(query, 'until') ?? ctx.now();
  // By default the last hour, or as much of it as history holds.
  const earliest = ctx.backups.history()?.earliest;
  const since = queryInstant(query, 'since') ?? Math.max(until - 3_600_000, earliest ? Date.parse(earliest) : -Infinity);
  if (since >= until) throw new HttpError(400, 'since must be before until');
  const limit = queryInteger(query, 'limit', 100, 1, MAX_HISTORY_LIMIT);
  const cursor = parseCursor(query.get('cursor'));
  const page = await upstream(ctx.backups.historyOf({ ranges: region ? ranges : undefined, by, since, until, limit, cursor }));
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
 * POST /rollback {"by", "since", "until"?, "start"/"count", "ranges" or "box"?, "preview"?}: puts back, for every cell
 * that player changed in the window, the value it had before their first change in it; cells someone else
 * changed after them are left. One change by the operator; `preview` changes nothing. The answer, under 1 MB
 * whatever the size: exact counts (`restored`, `skipped`), the runs of each as [start, count] (`restore`,
 * `skippedRuns`, up to MAX_ANSWER_RUNS each), the first 1,000 cells of each in detail (`cells`: from, to;
 * `skippedCells`: by, current), and `truncated` when any list was cut.
 */
export async function rollback(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const query = queryOf(req, ['by']);
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
  const ranges = bodyRanges(fields, ctx);
  const plan = await upstream(ctx.backups.rollback(fields.by, since, until, ranges, operator(req, query), fields.preview === true));
  const truncated = plan.restore.length > MAX_ANSWER_RUNS || plan.skippedRuns.length > MAX_ANSWER_RUNS || plan.restoredCells.length < plan.restored || plan.skippedCells.length < plan.skipped;
  sendJson(res, 200, {
    status: 200,
    preview: fields.preview === true,
    restored: plan.restored,
    skipped: plan.skipped,
    restore: plan.restore.slice(0, MAX_ANSWER_RUNS).map((run) => [run.start, run.bytes.byteLength / CELL_BYTES]),
    skippedRuns: plan.skippedRuns.slice(0, MAX_ANSWER_RUNS).map((r) => [r.start, r.count]),
    cells: plan.restoredCells.map((c) => ({ index: c.index, from: cellOf(c.from), to: cellOf(c.to) })),
    skippedCells: plan.skippedCells.map((c) => ({ index: c.index, by: c.by, current: cellOf(c.value) })),
    truncated,
  });
}
