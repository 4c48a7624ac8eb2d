/** TEMPORARY stand-in for branch logfollow's codec (same exports); replaced at merge. */
import { crc32 } from 'node:zlib';
import { ByteWriter, decodeFramePayload, FormatError, writeFramePayload, type Change } from './change.js';

export type Message = { kind: 'change'; change: Change } | { kind: 'handover' };

export function encodeChangeFrame(change: Change): Buffer {
  const out = new ByteWriter(64);
  writeFramePayload(out, change);
  const payload = out.view();
  const head = Buffer.alloc(8);
  head.writeUInt32LE(payload.byteLength, 0);
  head.writeUInt32LE(crc32(payload), 4);
  return Buffer.concat([head, payload]);
}

export const HANDOVER = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

export class FrameReader {
  private buffered: Buffer = Buffer.alloc(0);
  constructor(private readonly cells: number) {}
  push(chunk: Buffer): Message[] {
    this.buffered = (this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk])) as Buffer<ArrayBuffer>;
    const out: Message[] = [];
    let pos = 0;
    while (this.buffered.length - pos >= 8) {
      const length = this.buffered.readUInt32LE(pos);
      if (length === 0xffffffff) { out.push({ kind: 'handover' }); pos += 8; continue; }
      if (this.buffered.length - pos < 8 + length) break;
      const payload = this.buffered.subarray(pos + 8, pos + 8 + length);
      if (crc32(payload) !== this.buffered.readUInt32LE(pos + 4)) throw new FormatError('bad crc');
      out.push({ kind: 'change', change: decodeFramePayload(Buffer.from(payload), this.cells) });
      pos += 8 + length;
    }
    this.buffered = this.buffered.subarray(pos);
    return out;
  }
}

export function encodeAck(lsn: number): Buffer {
  return Buffer.from(`${lsn}\n`, 'latin1');
}

export class AckReader {
  private rest = '';
  push(chunk: Buffer): number[] {
    const text = this.rest + chunk.toString('latin1');
    const lines = text.split('\n');
    this.rest = lines.pop()!;
    return lines.map((line) => {
      if (!/^\d{1,16}$/.test(line)) throw new FormatError(`bad ack ${JSON.stringify(line.slice(0, 32))}`);
      return Number(line);
    });
  }
}
