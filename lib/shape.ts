/**
 * The world's shape: its dimensions along x, y (up) and z, and the order in which a flat cell index walks
 * them. Pure: index ↔ x, y, z, and a box → the sorted, disjoint ranges of its cells.
 */
import type { CellRange } from './backup/history.js';

/** One of the three axes; y is up. */
export type Axis = 'x' | 'y' | 'z';

/** Dimensions along x, y, z and the index order: `order[0]` varies fastest (e.g. "xzy": x, then z, then y). */
export interface Shape { x: number; y: number; z: number; order: string }

/** A box: its lowest corner and its extent along x (w), y (h) and z (d). */
export interface Box { x: number; y: number; z: number; w: number; h: number; d: number }

/** The default order: x fastest, then z, then y, so one horizontal slice (all x, z at one height) is one range. */
export const DEFAULT_ORDER = 'xzy';

/** The most ranges a box may become (a 256³ world's worst box, 1 cell wide along the fastest axis, is 65,536). */
export const MAX_BOX_RANGES = 1 << 18;

/** A box that does not fit the world or cannot be spelled; the message says why (answered 400). */
export class BoxError extends Error {
  override name = 'BoxError';
}

/** True when `order` names each of x, y, z once. */
export function isOrder(order: string): boolean {
  return order.length === 3 && [...order].sort().join('') === 'xyz';
}

/** Cells in a world of `shape`. */
export function cellsOf(shape: Pick<Shape, 'x' | 'y' | 'z'>): number {
  return shape.x * shape.y * shape.z;
}

/** How far one step along each axis moves the index. */
export function strides(shape: Shape): Record<Axis, number> {
  const [fast, mid] = shape.order as unknown as [Axis, Axis, Axis];
  const out = { x: 0, y: 0, z: 0 };
  out[fast] = 1;
  out[mid] = shape[fast];
  out[shape.order[2] as Axis] = shape[fast] * shape[mid];
  return out;
}

/** The index of the cell at x, y, z (inside the world, checked by the caller). */
export function indexOf(shape: Shape, x: number, y: number, z: number): number {
  const s = strides(shape);
  return x * s.x + y * s.y + z * s.z;
}

/** The x, y, z of the cell at `index` (0 <= index < cells, checked by the caller). */
export function coordsOf(shape: Shape, index: number): { x: number; y: number; z: number } {
  const [fast, mid, slow] = shape.order as unknown as [Axis, Axis, Axis];
  const out = { x: 0, y: 0, z: 0 };
  out[fast] = index % shape[fast];
  const rest = Math.floor(index / shape[fast]);
  out[mid] = rest % shape[mid];
  out[slow] = Math.floor(rest / shape[mid]);
  return out;
}

/** The box spelled `x,y,z,w,h,d` (a query parameter); BoxError if it is not six whole numbers or does not fit. */
export function parseBoxQuery(raw: string, shape: Shape): Box {
  const parts = raw.split(',');
  if (parts.length !== 6 || !parts.every((p) => /^\d{1,9}$/.test(p))) throw new BoxError('box must be x,y,z,w,h,d: six whole numbers (a corner, then the extent along x, y and z)');
  return checkBox(parts.map(Number), shape);
}

/** The box given as `[x, y, z, w, h, d]` in JSON; BoxError if it is not six whole numbers or does not fit. */
export function parseBoxJson(value: unknown, shape: Shape): Box {
  if (!Array.isArray(value) || value.length !== 6 || !value.every((v) => Number.isSafeInteger(v) && (v as number) >= 0)) {
    throw new BoxError('box must be [x, y, z, w, h, d]: six whole numbers (a corner, then the extent along x, y and z)');
  }
  return checkBox(value as number[], shape);
}

/** `values` as a box inside the world of `shape`; BoxError naming the axis that does not fit. */
function checkBox(values: number[], shape: Shape): Box {
  const [x, y, z, w, h, d] = values as [number, number, number, number, number, number];
  const box = { x, y, z, w, h, d };
  for (const [axis, extent] of [['x', 'w'], ['y', 'h'], ['z', 'd']] as const) {
    if (box[extent] < 1) throw new BoxError(`box ${extent} must be at least 1`);
    if (box[axis] + box[extent] > shape[axis]) throw new BoxError(`box runs outside the world along ${axis}: ${box[axis]} + ${box[extent]} > ${shape[axis]} (the world is ${shape.x}x${shape.y}x${shape.z})`);
  }
  if (boxRangeCount(shape, box) > MAX_BOX_RANGES) throw new BoxError(`box is ${boxRangeCount(shape, box)} separate runs of cells; at most ${MAX_BOX_RANGES}: make it wider along ${shape.order[0]}`);
  return box;
}

/** Cells in `box`. */
export function boxCells(box: Box): number {
  return box.w * box.h * box.d;
}

/** Extents of a box along the index's fastest, middle and slowest axes, with those axes. */
function alongOrder(shape: Shape, box: Box) {
  const [fast, mid, slow] = shape.order as unknown as [Axis, Axis, Axis];
  const extent = { x: box.w, y: box.h, z: box.d };
  return { fast, mid, slow, ef: extent[fast], em: extent[mid], es: extent[slow] };
}

/** How many ranges boxRanges returns for `box`, without building them. */
export function boxRangeCount(shape: Shape, box: Box): number {
  const { fast, mid, ef, em, es } = alongOrder(shape, box);
  if (ef < shape[fast]) return em * es; // each row along the fastest axis is a range of its own
  if (em < shape[mid]) return es; // whole rows: each layer along the slowest axis is one range
  return 1; // whole layers: one range
}

/** The cells of `box` as sorted, disjoint, non-touching ranges (ascending index order). */
export function boxRanges(shape: Shape, box: Box): CellRange[] {
  const { fast, mid, slow, ef, em, es } = alongOrder(shape, box);
  const s = strides(shape);
  const out: CellRange[] = [];
  for (let k = 0; k < es; k++) {
    for (let j = 0; j < em; j++) {
      const start = box[fast] * s[fast] + (box[mid] + j) * s[mid] + (box[slow] + k) * s[slow];
      const last = out[out.length - 1];
      if (last && last.start + last.count === start) last.count += ef;
      else out.push({ start, count: ef });
    }
  }
  return out;
}

/** The one range from a box's first cell to its last (what a read of the past fetches, to pick the box out of). */
export function boxSpan(shape: Shape, box: Box): CellRange {
  const first = indexOf(shape, box.x, box.y, box.z);
  const last = indexOf(shape, box.x + box.w - 1, box.y + box.h - 1, box.z + box.d - 1);
  return { start: first, count: last - first + 1 };
}

/** The whole world as a box. */
export function wholeBox(shape: Shape): Box {
  return { x: 0, y: 0, z: 0, w: shape.x, h: shape.y, d: shape.z };
}

/** The shape spelled `XxYxZ` (e.g. "256x256x256"), or undefined if it is not three positive whole numbers. */
export function parseShape(raw: string, order: string): Shape | undefined {
  const match = /^(\d{1,9})x(\d{1,9})x(\d{1,9})$/i.exec(raw.trim());
  if (!match) return undefined;
  const [x, y, z] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (x < 1 || y < 1 || z < 1) return undefined;
  return { x, y, z, order };
}
