/** A small PNG decoder for tests: checks the signature and every chunk's CRC, inflates the image data, undoes the row filters. */
import assert from 'node:assert/strict';
import { crc32, inflateSync } from 'node:zlib';

/** A decoded picture: RGBA bytes, row by row from the top. */
export interface Decoded { width: number; height: number; rgba: Uint8Array }

/** Decodes an 8-bit RGBA, non-interlaced PNG; fails the test on anything else or on a bad CRC. */
export function decodePng(png: Uint8Array): Decoded {
  const bytes = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  let at = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  const types: string[] = [];
  while (at < bytes.length) {
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString('latin1', at + 4, at + 8);
    const data = bytes.subarray(at + 8, at + 8 + length);
    assert.equal(bytes.readUInt32BE(at + 8 + length), crc32(bytes.subarray(at + 4, at + 8 + length)), `CRC of ${type}`);
    types.push(type);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.deepEqual([...data.subarray(8)], [8, 6, 0, 0, 0], '8-bit RGBA, deflate, no interlace');
    } else if (type === 'IDAT') idat.push(data);
    at += 12 + length;
  }
  assert.equal(types[0], 'IHDR');
  assert.equal(types.at(-1), 'IEND');
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 4;
  assert.equal(raw.length, (stride + 1) * height, 'image data size');
  const rgba = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = rgba.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? rgba.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= 4 ? out[i - 4]! : 0;
      const b = up[i]!;
      const c = i >= 4 ? up[i - 4]! : 0;
      const predictor = filter === 0 ? 0 : filter === 1 ? a : filter === 2 ? b : filter === 3 ? (a + b) >> 1 : paeth(a, b, c);
      assert.ok(filter <= 4, `filter type ${filter}`);
      out[i] = (row[i]! + predictor) & 0xff;
    }
  }
  return { width, height, rgba };
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** The RGBA of the pixel at x, y. */
export function pixel(picture: Decoded, x: number, y: number): [number, number, number, number] {
  const at = (y * picture.width + x) * 4;
  return [...picture.rgba.subarray(at, at + 4)] as [number, number, number, number];
}
