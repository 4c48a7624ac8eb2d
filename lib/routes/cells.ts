/** GET and PUT /cells: ranges of raw cells, streamed out in consistent chunks, written in one step once whole. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CELL_BYTES } from '../cube.js';
import { HttpError, readBody, sendJson, upstream } from '../http.js';
import { requireAuth, type Ctx } from './context.js';
import { operator, queryInstant, queryInteger } from './query.js';

/** Range reads are sent in copies of this size: consistent cells, bounded memory, and backpressure between them. */
const RANGE_CHUNK_BYTES = 256 * 1024;

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
    if (!past) await ctx.writes.settled(); // no cell shown that the log does not hold yet
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
    await ctx.writes.apply({ runs: [{ start, bytes: body }], by: operator(req, query) });
  }
  ctx.metrics.cellsWritten += cells;
  sendJson(res, 200, { status: 200, start, cells });
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
