/** PNG encoding of an RGBA picture: 8-bit RGBA, no interlace, deflated by node:zlib off the event loop. */
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';

const deflate = promisify(zlib.deflate);

/** A picture: `width` × `height` pixels, 4 bytes each (R, G, B, A), row by row from the top. */
export interface Picture { width: number; height: number; rgba: Uint8Array }

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

/** The PNG of `picture`, each pixel drawn as a `scale` × `scale` square. */
export async function encodePng(picture: Picture, scale = 1): Promise<Buffer> {
  const width = picture.width * scale;
  const height = picture.height * scale;
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bits per channel
  header[9] = 6; // colour type: RGBA
  // compression, filter and interlace methods: 0 (deflate, adaptive filters, none)
  // Level 1: maps are flat colours that compress about as well at the fastest level, and a map is drawn often.
  const idat = await deflate(scanlines(picture, scale), { level: 1 });
  return Buffer.concat([SIGNATURE, chunk('IHDR', header), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

/** The raw image data: each row of the enlarged picture preceded by its filter byte (0: none). */
function scanlines(picture: Picture, scale: number): Uint8Array {
  const rowBytes = picture.width * scale * 4;
  const raw = new Uint8Array((rowBytes + 1) * picture.height * scale);
  const source = new Uint32Array(picture.rgba.buffer, picture.rgba.byteOffset, picture.width * picture.height);
  const row = new Uint32Array(picture.width * scale); // one enlarged row; words copy the 4 bytes in memory order
  const rowAsBytes = new Uint8Array(row.buffer);
  let at = 0;
  for (let y = 0; y < picture.height; y++) {
    if (scale === 1) row.set(source.subarray(y * picture.width, (y + 1) * picture.width));
    else for (let x = 0; x < picture.width; x++) row.fill(source[y * picture.width + x]!, x * scale, (x + 1) * scale);
    for (let copy = 0; copy < scale; copy++) {
      raw[at] = 0;
      raw.set(rowAsBytes, at + 1);
      at += rowBytes + 1;
    }
  }
  return raw;
}

/** One PNG chunk: length, type, data, CRC-32 of type and data. */
function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(zlib.crc32(out.subarray(4, 8 + data.length)), 8 + data.length); // unsigned already
  return out;
}
