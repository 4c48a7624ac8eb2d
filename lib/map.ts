/**
 * The world as a picture: one pixel per column (x across, z down), a fixed colour per category, transparent
 * where a cell's four bytes are all zero. The top view shows each column's topmost non-empty cell, darker
 * the lower it lies; a slice shows the cells at one height. Drawn in steps that yield to the event loop.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Picture } from './png.js';
import { boxRangeCount, strides, type Box, type Shape } from './shape.js';

/** What to draw: the view, the height of a slice, and the box of the world to draw. */
export interface MapView { view: 'top' | 'slice'; y: number; box: Box }

// The category is a cell's first byte: the low byte of its 32-bit word on little-endian machines.
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** A render gives the event loop a turn after this long (ms), so requests keep flowing during a long draw. */
const TURN_MS = 8;

/**
 * The colour of each category, R, G, B, A (fixed: the console and any saved picture agree): a few familiar
 * ones first, then hues a golden angle apart, alternating in brightness so neighbours differ.
 */
export const PALETTE: Uint8Array = (() => {
  const named: Array<[number, number, number]> = [
    [128, 128, 128], // 0: a cell with category 0 but other bytes set
    [125, 125, 125], [106, 170, 64], [134, 96, 67], [64, 96, 220], [219, 207, 163], [100, 72, 40], [40, 120, 40],
    [200, 60, 40], [230, 230, 240], [40, 40, 48], [240, 200, 60], [150, 60, 170], [60, 190, 190], [220, 120, 40], [170, 200, 230],
  ];
  const out = new Uint8Array(256 * 4);
  for (let c = 0; c < 256; c++) {
    const [r, g, b] = named[c] ?? hsv((c * 137.508) % 360, c % 2 ? 0.55 : 0.8, c % 3 ? 0.9 : 0.65);
    out.set([r, g, b, 255], c * 4);
  }
  return out;
})();

/** The category colours as 32-bit words in memory order (so a word copies R, G, B, A into a picture). */
const PALETTE_WORDS = new Int32Array(PALETTE.buffer);

/** The colours shaded for height `y` of `height` levels: from 45% at the bottom to full at the top. */
function shaded(y: number, height: number): Int32Array {
  const factor = height <= 1 ? 1 : 0.45 + (0.55 * y) / (height - 1);
  const bytes = new Uint8Array(PALETTE.length);
  for (let i = 0; i < PALETTE.length; i++) bytes[i] = i % 4 === 3 ? 255 : Math.round(PALETTE[i]! * factor);
  return new Int32Array(bytes.buffer);
}

/**
 * Draws `view` of the cells in `source` (4 bytes a cell; its first cell is cell `base`, and it holds every
 * cell of the box) of a world of `shape`. The picture is box.w × box.d pixels.
 */
export async function renderMap(shape: Shape, source: Uint8Array, base: number, view: MapView): Promise<Picture> {
  const { box } = view;
  const words = wordsOf(source);
  const bytes = Buffer.from(words.buffer, words.byteOffset, words.byteLength);
  const width = box.w;
  // Int32, not Uint32: an opaque colour's word is above 2^31, which a Uint32Array hands out as a slower double.
  const pixels = new Int32Array(box.w * box.d); // 0: transparent
  const s = strides(shape);
  // Empty rows and layers are skipped by a native comparison with zeros, when they are contiguous.
  const rowsContiguous = s.x === 1;
  const layerContiguous = boxRangeCount(shape, { ...box, h: 1 }) === 1;
  const layerCells = box.w * box.d;
  let turnStarted = performance.now();
  const levels = view.view === 'top' ? box.h : 1;
  let left = pixels.length; // columns still without a colour (top view)
  for (let level = 0; level < levels && left > 0; level++) {
    const y = view.view === 'top' ? box.y + box.h - 1 - level : view.y;
    const first = box.x * s.x + y * s.y + box.z * s.z - base;
    if (!(layerContiguous && isZero(bytes, first, layerCells))) {
      const colours = view.view === 'top' ? shaded(y, shape.y) : PALETTE_WORDS;
      for (let dz = 0; dz < box.d; dz++) {
        const row = first + dz * s.z;
        if (rowsContiguous && isZero(bytes, row, width)) continue;
        const out = dz * width;
        for (let dx = 0; dx < width; dx++) {
          if (pixels[out + dx] !== 0) continue;
          const word = words[row + dx * s.x]!;
          if (word !== 0) {
            pixels[out + dx] = colours[LITTLE_ENDIAN ? word & 0xff : word >>> 24]!;
            left--;
          }
        }
      }
    }
    if (performance.now() - turnStarted > TURN_MS) {
      await nextTurn();
      turnStarted = performance.now();
    }
  }
  return { width: box.w, height: box.d, rgba: new Uint8Array(pixels.buffer) };
}

/** Zeros to compare cells with, natively. */
const ZEROS = Buffer.alloc(64 * 1024);

/** True when the `cells` cells from cell `from` of `bytes` are all zero. */
function isZero(bytes: Buffer, from: number, cells: number): boolean {
  for (let at = from * 4, end = (from + cells) * 4; at < end; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, end - at);
    if (ZEROS.compare(bytes, at, at + n, 0, n) !== 0) return false;
  }
  return true;
}

/** `source` as 32-bit words (one a cell); copied only if it does not start on a word boundary. */
function wordsOf(source: Uint8Array): Int32Array {
  const aligned = source.byteOffset % 4 === 0 ? source : source.slice();
  return new Int32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 2);
}

/** A colour from hue (degrees), saturation and value (0..1), as R, G, B bytes. */
function hsv(h: number, s: number, v: number): [number, number, number] {
  const f = (n: number) => {
    const k = (n + h / 60) % 6;
    return Math.round(255 * (v - v * s * Math.max(0, Math.min(k, 4 - k, 1))));
  };
  return [f(5), f(3), f(1)];
}
