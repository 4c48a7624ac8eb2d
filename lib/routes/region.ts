/** Boxes in requests: `box=x,y,z,w,h,d` in a query, `"box":[x,y,z,w,h,d]` in JSON, as the ranges routes already take. */
import type { CellRange } from '../backup/history.js';
import { HttpError } from '../http.js';
import { BoxError, boxRanges, parseBoxJson, parseBoxQuery, type Box, type Shape } from '../shape.js';
import { restoreRanges } from './backups.js';
import type { Ctx } from './context.js';

/** The world's shape; 400 for a flat world, which has no x, y, z. */
export function requireShape(ctx: Ctx, what: string): Shape {
  if (!ctx.shape) throw new HttpError(400, `${what} needs a world with a shape: this world is flat (${ctx.cube.cells} cells); set WORLD_SHAPE, e.g. 256x256x256`);
  return ctx.shape;
}

/** The query's box, or undefined; 400 for a bad box, a flat world, or a box beside any of `exclusive` (e.g. start, count). */
export function queryBox(query: URLSearchParams, ctx: Ctx, exclusive: string[] = []): Box | undefined {
  const raw = query.get('box');
  if (raw === null) return undefined;
  const clash = exclusive.find((name) => query.has(name));
  if (clash !== undefined) throw new HttpError(400, `give either box or ${exclusive.join('/')}, not both (got box and ${clash})`);
  return asBadRequest(() => parseBoxQuery(raw, requireShape(ctx, 'box')));
}

/** The JSON body's box, or undefined; 400 for a bad box, a flat world, or a box beside start, count or ranges. */
export function bodyBox(fields: Record<string, unknown>, ctx: Ctx): Box | undefined {
  if (fields.box === undefined) return undefined;
  const clash = ['start', 'count', 'ranges'].find((name) => fields[name] !== undefined);
  if (clash !== undefined) throw new HttpError(400, `give either box, or start and count, or ranges, not two of them (got box and ${clash})`);
  return asBadRequest(() => parseBoxJson(fields.box, requireShape(ctx, 'box')));
}

/** The cells a JSON body names (box, start/count or ranges) as sorted ranges; undefined for the whole world. */
export function bodyRanges(fields: Record<string, unknown>, ctx: Ctx): CellRange[] | undefined {
  const box = bodyBox(fields, ctx);
  return box ? boxRanges(ctx.shape!, box) : restoreRanges(fields, ctx.cube.cells);
}

/** `parse()`, a BoxError becoming a 400 with its message. */
function asBadRequest<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof BoxError) throw new HttpError(400, err.message);
    throw err;
  }
}
