/** GET and PUT /cells: ranges of raw cells, streamed out in consistent chunks, written in one step once whole. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CellRange } from '../backup/history.js';
import { CELL_BYTES } from '../cube.js';
import { boxCells, boxRanges, boxSpan } from '../shape.js';
import { HttpError, readBody, sendJson, upstream } from '../http.js';
import { requireAuth, type Ctx } from './context.js';
import { operator, queryInstant, queryInteger, queryOf } from './query.js';
import { queryBox } from './region.js';

/** Range reads are sent in copies of this size: consistent cells, bounded memory, and backpressure between them. */
const RANGE_CHUNK_BYTES = 256 * 1024;

/** GET /cells?start=S&count=N or ?box=x,y,z,w,h,d: the raw bytes of those cells (4 a cell, a box's in index order), streamed in consistent chunks. */
export async function readCells(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const query = queryOf(req, ['start', 'count', 'box', 'at']);
  const box = queryBox(query, ctx, ['start', 'count']);
  const start = queryInteger(query, 'start', 0, 0, ctx.cube.cells);
  const count = queryInteger(query, 'count', ctx.cube.cells - start, 0, ctx.cube.cells - start);
  const ranges = box ? boxRanges(ctx.shape!, box) : [{ start, count }];
  const cells = box ? boxCells(box) : count;
  const at = queryInstant(query, 'at');
  // The past is rebuilt whole before the answer starts (an error is still a JSON 4xx); the present is read as it goes.
  // A box's past is read as the one range from its first cell to its last, and picked out of it.
  const span = box ? boxSpan(ctx.shape!, box) : { start, count };
  const past = at === undefined ? undefined : (await upstream(ctx.backups.cellsAt(at, [span])))[0]!;
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': cells * CELL_BYTES, 'Cache-Control': 'no-store' });
  const source = past ?? ctx.cube.bytes;
  const base = past ? span.start : 0;
  const chunks = gather(source, base, ranges);
  for (;;) {
    if (!past) await ctx.writes.settled(); // no cell shown that the log does not hold yet
    const next = chunks.next();
    if (next.done) break;
    const chunk = next.value;
    if (res.destroyed) return;
    if (!res.write(chunk)) await drainOrClose(res, ctx.stallMs);
  }
  res.end();
  ctx.metrics.cellsRead += cells;
}

/**
 * The cells of `ranges` (sorted) out of `source` (whose first cell is cell `base`), in copies of up to
 * RANGE_CHUNK_BYTES, each copied at once: bytes queued on a slow socket are the cells as they were when
 * read, not whatever is there later.
 */
function* gather(source: Uint8Array, base: number, ranges: CellRange[]): Generator<Uint8Array> {
  let chunk = new Uint8Array(0);
  let filled = 0;
  let left = ranges.reduce((n, r) => n + r.count, 0) * CELL_BYTES;
  for (const r of ranges) {
    let from = (r.start - base) * CELL_BYTES;
    const to = from + r.count * CELL_BYTES;
    while (from < to) {
      if (filled === chunk.length) {
        chunk = new Uint8Array(Math.min(left, RANGE_CHUNK_BYTES));
        filled = 0;
      }
      const n = Math.min(to - from, chunk.length - filled);
      chunk.set(source.subarray(from, from + n), filled);
      filled += n;
      from += n;
      left -= n;
      if (filled === chunk.length) yield chunk;
    }
  }
}

/** PUT /cells?start=S or ?box=x,y,z,w,h,d: writes the raw bytes of the body (whole cells inside the world; exactly the box's, in index order) as one step once the body is whole. */
export async function writeCells(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const query = queryOf(req, ['start', 'box', 'by']);
  const box = queryBox(query, ctx, ['start']);
  const start = queryInteger(query, 'start', 0, 0, ctx.cube.cells);
  const room = (box ? boxCells(box) : ctx.cube.cells - start) * CELL_BYTES;
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared % CELL_BYTES !== 0) throw new HttpError(400, `the body must be whole cells (a multiple of ${CELL_BYTES} bytes)`, { Connection: 'close' });
  // Nothing is written until the body is whole: a client that leaves mid-body changes nothing.
  const body = await readBody(req, room);
  if (body.length % CELL_BYTES !== 0) throw new HttpError(400, `the body must be whole cells (a multiple of ${CELL_BYTES} bytes), got ${body.length} bytes`);
  if (box && body.length !== room) throw new HttpError(400, `the body must be the box's ${boxCells(box)} cells (${room} bytes), got ${body.length} bytes`);
  const cells = body.length / CELL_BYTES;
  if (cells > 0) {
    const runs = box ? boxRuns(boxRanges(ctx.shape!, box), body) : [{ start, bytes: body }];
    await ctx.writes.apply({ runs, by: operator(req, query) });
  }
  ctx.metrics.cellsWritten += cells;
  sendJson(res, 200, { status: 200, ...(box ? { box: [box.x, box.y, box.z, box.w, box.h, box.d] } : { start }), cells });
}

/** The body of a box write cut into one run per range of the box (`body` holds the ranges' cells in order). */
function boxRuns(ranges: CellRange[], body: Uint8Array): Array<{ start: number; bytes: Uint8Array }> {
  let offset = 0;
  return ranges.map((r) => {
    const bytes = body.subarray(offset, offset + r.count * CELL_BYTES);
    offset += r.count * CELL_BYTES;
    return { start: r.start, bytes };
  });
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
