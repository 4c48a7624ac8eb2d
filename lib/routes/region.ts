/** Regions in requests: `start`/`count`, `ranges` and boxes (`box=x,y,z,w,h,d` in a query, `"box":[x,y,z,w,h,d]` in JSON), as sorted cell ranges. */
import type { CellRange } from '../backup/history.js';
import { HttpError } from '../http.js';
import { BoxError, boxRanges, parseBoxJson, parseBoxQuery, type Box, type Shape } from '../shape.js';
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

/** The most ranges one restore or rollback takes (a box of 256 x 256 cells across is 65,536 short ranges). */
export const MAX_RESTORE_RANGES = 65_536;
/**
 * Bodies of /restore and /rollback: a name, or an instant with up to MAX_RESTORE_RANGES ranges. At the widest
 * numbers (a world of 2^28 cells) a range is `{"start":268435455,"count":268435455},`, 38 bytes: 65,536 of them
 * are 2.5 MB, and 3 MiB leaves room for the rest of the body and some whitespace. More ranges than the limit
 * in a body under it get the 400 that names the limit.
 */
export const RESTORE_BODY_LIMIT = 3 * 1024 * 1024;

/** The ranges a restore to an instant names: `start`/`count`, or `ranges`; undefined for the whole world. 400 for any that does not fit. */
export function restoreRanges(fields: Record<string, unknown>, cells: number): CellRange[] | undefined {
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
