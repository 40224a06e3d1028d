/**
 * frame-reader.ts: frames split across socket reads at every possible point come out whole and
 * in order, frames inside one read come out as ranges of that read (not copied), and an
 * oversized frame is refused whether its header arrives whole or split.
 */
import { describe, expect, it } from 'vitest';
import { FrameReader, type FrameSink } from '../../proxy/http/h2/frame-reader';
import { frameHeader, T_DATA, T_HEADERS, T_PING } from '../../proxy/http/h2/frames';

interface Got {
  type: number;
  flags: number;
  id: number;
  payload: string;
  buf: Buffer;
}

function sink(): FrameSink & { got: Got[]; oversize: number[]; stop: boolean } {
  const s = {
    got: [] as Got[],
    oversize: [] as number[],
    stop: false,
    onFrame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number) {
      s.got.push({ type, flags, id, payload: buf.subarray(start, end).toString('hex'), buf });
    },
    onOversizeFrame(len: number) {
      s.oversize.push(len);
      s.stop = true;
    },
    readStopped: () => s.stop,
  };
  return s;
}

function frame(type: number, flags: number, id: number, payload: Buffer): Buffer {
  return Buffer.concat([frameHeader(payload.length, type, flags, id), payload]);
}

const frames = [
  frame(T_HEADERS, 4, 1, Buffer.from('82868441', 'hex')),
  frame(T_DATA, 0, 1, Buffer.alloc(300, 7)),
  frame(T_DATA, 1, 1, Buffer.alloc(0)),
  frame(T_PING, 0, 0, Buffer.from('0102030405060708', 'hex')),
  frame(T_DATA, 1, 3, Buffer.alloc(16384, 9)),
];
const wire = Buffer.concat(frames);
const expected = frames.map((f) => ({
  type: f[3],
  flags: f[4],
  id: f.readUInt32BE(5) & 0x7fffffff,
  payload: f.subarray(9).toString('hex'),
}));

describe('FrameReader', () => {
  it('one read: every frame, each a range of the read itself', () => {
    const s = sink();
    new FrameReader(s).push(wire);
    expect(s.got.map(({ buf: _b, ...g }) => g)).toEqual(expected);
    for (const g of s.got) expect(g.buf).toBe(wire);
  });

  it('split into two reads at every offset: the same frames in order', () => {
    for (let cut = 1; cut < wire.length; cut += cut < 400 ? 1 : 97) {
      const s = sink();
      const r = new FrameReader(s);
      r.push(wire.subarray(0, cut));
      r.push(wire.subarray(cut));
      expect(s.got.map(({ buf: _b, ...g }) => g)).toEqual(expected);
    }
  });

  it('byte by byte and in uneven pieces', () => {
    const s = sink();
    const r = new FrameReader(s);
    for (let i = 0; i < wire.length; i++) r.push(wire.subarray(i, i + 1));
    expect(s.got.map(({ buf: _b, ...g }) => g)).toEqual(expected);
    const s2 = sink();
    const r2 = new FrameReader(s2);
    for (let i = 0, n = 1; i < wire.length; i += n, n = (n * 7) % 1500 + 1) r2.push(wire.subarray(i, i + n));
    expect(s2.got.map(({ buf: _b, ...g }) => g)).toEqual(expected);
  });

  it('a frame assembled across reads does not change when the next read is reused', () => {
    const s = sink();
    const r = new FrameReader(s);
    const data = frame(T_DATA, 0, 1, Buffer.alloc(100, 5));
    const a = Buffer.from(data.subarray(0, 50));
    const b = Buffer.from(data.subarray(50));
    r.push(a);
    r.push(b);
    a.fill(0);
    b.fill(0);
    expect(s.got[0]!.buf.subarray(0, 100).equals(Buffer.alloc(100, 5))).toBe(true);
  });

  it('an oversized frame is refused with its header whole or split, and reading stops', () => {
    const big = frameHeader(16385, T_DATA, 0, 1);
    const s = sink();
    new FrameReader(s).push(Buffer.concat([frames[0]!, big, Buffer.alloc(20)]));
    expect(s.oversize).toEqual([16385]);
    expect(s.got).toHaveLength(1);
    const s2 = sink();
    const r2 = new FrameReader(s2);
    r2.push(big.subarray(0, 4));
    r2.push(Buffer.concat([big.subarray(4), Buffer.alloc(100)]));
    expect(s2.oversize).toEqual([16385]);
    expect(s2.got).toHaveLength(0);
  });
});
