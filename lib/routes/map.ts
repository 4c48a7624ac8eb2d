/** GET /map.png: the world, now or at an instant, as a picture seen from above or cut at one height. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError, upstream } from '../http.js';
import { renderMap } from '../map.js';
import { encodePng } from '../png.js';
import { boxSpan, wholeBox } from '../shape.js';
import { requireAuth, type Ctx } from './context.js';
import { queryInstant, queryInteger } from './query.js';
import { queryBox, requireShape } from './region.js';

/** A picture is at most this many pixels along a side once enlarged, so `scale` cannot ask for a huge one. */
export const MAX_MAP_SIDE = 2048;
/** The largest enlargement, for small boxes. */
const MAX_SCALE = 16;

/**
 * GET /map.png?view=top|slice&y=&box=&at=&scale=: one pixel per column (x across, z down; `scale` enlarges),
 * a fixed colour per category, transparent where a cell is all zero. `top` (the default) shows each
 * column's topmost non-empty cell, shaded by height; `slice` the cells at height `y`. `box` draws part of
 * the world; `at` the world as it was then.
 */
export async function map(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  requireAuth(req, ctx);
  const shape = requireShape(ctx, 'the map');
  const query = new URL(req.url ?? '/', 'http://x').searchParams;
  const view = query.get('view') ?? 'top';
  if (view !== 'top' && view !== 'slice') throw new HttpError(400, 'view must be top or slice');
  const box = queryBox(query, ctx) ?? wholeBox(shape);
  if (view === 'top' && query.has('y')) throw new HttpError(400, 'y is the height of a slice: use it with view=slice');
  if (view === 'slice' && !query.has('y')) throw new HttpError(400, `view=slice needs y, the height to cut at (${box.y} to ${box.y + box.h - 1})`);
  const y = queryInteger(query, 'y', 0, box.y, box.y + box.h - 1);
  const maxScale = Math.max(1, Math.min(MAX_SCALE, Math.floor(MAX_MAP_SIDE / Math.max(box.w, box.d))));
  const scale = queryInteger(query, 'scale', 1, 1, maxScale);
  const at = queryInstant(query, 'at');
  const started = performance.now();
  // Only the cells drawn are read: the box, or for a slice its one layer, as the range from first to last cell.
  const region = view === 'slice' ? { ...box, y, h: 1 } : box;
  const span = boxSpan(shape, region);
  // Kept: the next map is likely a moment away (a slider dragged through time) and starts from the same snapshot.
  const past = at === undefined ? undefined : (await upstream(ctx.backups.cellsAt(at, [span], { keep: true })))[0]!;
  const read = performance.now();
  const picture = await renderMap(shape, past ?? ctx.cube.bytes, past ? span.start : 0, { view, y, box: region });
  const drawn = performance.now();
  const png = await encodePng(picture, scale);
  const ms = (a: number, b: number) => (b - a).toFixed(1);
  res.writeHead(200, {
    'Content-Type': 'image/png',
    'Content-Length': png.length,
    'Cache-Control': 'no-store',
    // Where the time went, for the console and the benchmark (no secret in it).
    'Server-Timing': `read;dur=${ms(started, read)}, draw;dur=${ms(read, drawn)}, png;dur=${ms(drawn, performance.now())}`,
  });
  res.end(png);
}
