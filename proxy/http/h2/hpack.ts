/**
 * HPACK header compression (RFC 7541) for meshlet's own HTTP/2 framing.
 *
 * Owns: the static table, the decoder's dynamic table and its size updates, integer and string
 * primitives, and the encoder.
 *
 * Decoder: strict, bounded. Header blocks decode into a flat [name, value, …] list of latin1
 * strings (one char per octet, so string length = octets for the RFC's size accounting). Any
 * malformation (index out of range, integer overflow, bad Huffman, table size update above our
 * limit or not at the start of a block) is a COMPRESSION_ERROR, which the caller turns into a
 * connection error (RFC 9113 §4.3). The decoded list is cut off past `maxListSize` (RFC 7541
 * §4.1 accounting: name + value + 32 per field) while the block is still fully decoded, so the
 * dynamic table stays in sync with the peer's.
 *
 * Encoder: stateless on purpose. It never inserts into the dynamic table (always allowed, and no
 * table means no state to keep in step and no eviction work per request): a field equal to a
 * static entry is one indexed octet, a field whose name is in the static table is a literal with
 * the name indexed, anything else is a literal with a literal name; no Huffman coding.
 */

import { huffmanDecode } from './hpack-huffman';

/** RFC 7541 Appendix A, index 1..61. */
const STATIC: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC.length;

/** name → lowest static index with that name; "name\0value" → static index of the full field. */
const STATIC_NAME = new Map<string, number>();
const STATIC_FIELD = new Map<string, number>();
for (let i = STATIC_COUNT - 1; i >= 0; i--) {
  const [name, value] = STATIC[i]!;
  STATIC_NAME.set(name, i + 1);
  if (value !== '') STATIC_FIELD.set(`${name}\0${value}`, i + 1);
}

/** Thrown (and only thrown) by the decoder; the caller maps it to COMPRESSION_ERROR. */
export class HpackError extends Error {}

/** Result of decoding one header block. */
export interface DecodedBlock {
  /** [name, value, …]; complete unless `oversize`. */
  readonly fields: string[];
  /** The block's fields exceeded maxListSize (fields holds what fit). */
  readonly oversize: boolean;
}

/** Decoder of one connection direction (it owns that direction's dynamic table). */
export class HpackDecoder {
  /** Dynamic table as a ring: newest entry at `head`, entries older towards head+count. */
  private names: string[] = new Array<string>(64);
  private values: string[] = new Array<string>(64);
  private head = 0;
  private count = 0;
  private size = 0;
  /** Current maximum size (changed by the peer's size updates, ≤ limit). */
  private maxSize: number;

  /** `limit` is the SETTINGS_HEADER_TABLE_SIZE we announced (4096 unless changed). */
  constructor(private readonly limit = 4096) {
    this.maxSize = limit;
  }

  /** Decode one complete header block. Throws HpackError on any malformation. */
  decode(buf: Uint8Array, start: number, end: number, maxListSize: number): DecodedBlock {
    const fields: string[] = [];
    let listSize = 0;
    let oversize = false;
    let pos = start;
    let sawField = false;
    while (pos < end) {
      const b = buf[pos]!;
      let name: string;
      let value: string;
      if (b & 0x80) {
        // Indexed header field (§6.1).
        const idx = this.readInt(buf, pos, end, 7);
        pos = this.next;
        if (idx === 0) throw new HpackError('indexed header field with index 0');
        name = this.nameAt(idx);
        value = this.valueAt(idx);
      } else if ((b & 0xe0) === 0x20) {
        // Dynamic table size update (§6.3): only before the first field of a block.
        if (sawField) throw new HpackError('dynamic table size update after a header field');
        const n = this.readInt(buf, pos, end, 5);
        pos = this.next;
        if (n > this.limit) throw new HpackError(`dynamic table size update ${n} above ${this.limit}`);
        this.maxSize = n;
        this.evict(0);
        continue;
      } else {
        // Literal with incremental indexing (01), without indexing (0000), never indexed (0001).
        const incremental = (b & 0xc0) === 0x40;
        const idx = this.readInt(buf, pos, end, incremental ? 6 : 4);
        pos = this.next;
        if (idx === 0) {
          name = this.readString(buf, pos, end);
          pos = this.next;
        } else {
          name = this.nameAt(idx);
        }
        value = this.readString(buf, pos, end);
        pos = this.next;
        if (incremental) this.insert(name, value);
      }
      sawField = true;
      if (oversize) continue;
      listSize += name.length + value.length + 32;
      if (listSize > maxListSize) {
        oversize = true;
        continue;
      }
      fields.push(name, value);
    }
    return { fields, oversize };
  }

  /** Position after the last primitive read (avoids a result object per integer/string). */
  private next = 0;

  private readInt(buf: Uint8Array, pos: number, end: number, prefix: number): number {
    const mask = (1 << prefix) - 1;
    let n = buf[pos++]! & mask;
    if (n < mask) {
      this.next = pos;
      return n;
    }
    let shift = 0;
    for (;;) {
      if (pos >= end) throw new HpackError('truncated integer');
      const b = buf[pos++]!;
      n += (b & 0x7f) * 2 ** shift;
      shift += 7;
      // Nothing meshlet accepts needs more than 2^24; anything larger is an attack or garbage.
      if (n > 0xffffff) throw new HpackError('integer too large');
      if ((b & 0x80) === 0) break;
    }
    this.next = pos;
    return n;
  }

  private readString(buf: Uint8Array, pos: number, end: number): string {
    if (pos >= end) throw new HpackError('truncated string');
    const huffman = (buf[pos]! & 0x80) !== 0;
    const len = this.readInt(buf, pos, end, 7);
    pos = this.next;
    if (pos + len > end) throw new HpackError('string longer than the header block');
    this.next = pos + len;
    if (!huffman) return latin1(buf, pos, pos + len);
    const s = huffmanDecode(buf, pos, pos + len);
    if (s === undefined) throw new HpackError('invalid Huffman-coded string');
    return s;
  }

  private nameAt(idx: number): string {
    if (idx <= STATIC_COUNT) return STATIC[idx - 1]![0];
    return this.dynamic(idx, this.names);
  }

  private valueAt(idx: number): string {
    if (idx <= STATIC_COUNT) return STATIC[idx - 1]![1];
    return this.dynamic(idx, this.values);
  }

  private dynamic(idx: number, arr: string[]): string {
    const d = idx - STATIC_COUNT - 1;
    if (d >= this.count) throw new HpackError(`header index ${idx} out of range`);
    return arr[(this.head + d) & (arr.length - 1)]!;
  }

  private insert(name: string, value: string): void {
    const entry = name.length + value.length + 32;
    if (entry > this.maxSize) {
      // §4.4: an entry larger than the table empties it and is not added.
      this.count = 0;
      this.size = 0;
      return;
    }
    this.evict(entry);
    if (this.count === this.names.length) this.grow();
    const cap = this.names.length;
    this.head = (this.head - 1 + cap) & (cap - 1);
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.count++;
    this.size += entry;
  }

  /** Evict oldest entries until `room` more octets fit under maxSize. */
  private evict(room: number): void {
    const cap = this.names.length;
    while (this.count > 0 && this.size + room > this.maxSize) {
      const last = (this.head + this.count - 1) & (cap - 1);
      this.size -= this.names[last]!.length + this.values[last]!.length + 32;
      this.count--;
    }
  }

  private grow(): void {
    const cap = this.names.length;
    const names = new Array<string>(cap * 2);
    const values = new Array<string>(cap * 2);
    for (let i = 0; i < this.count; i++) {
      names[i] = this.names[(this.head + i) & (cap - 1)]!;
      values[i] = this.values[(this.head + i) & (cap - 1)]!;
    }
    this.names = names;
    this.values = values;
    this.head = 0;
  }

  /** @internal Entries and octets in the dynamic table (tests). */
  get tableState(): { count: number; size: number; maxSize: number } {
    return { count: this.count, size: this.size, maxSize: this.maxSize };
  }
}

const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, s: number, e: number): string })
  .latin1Slice;

function latin1(buf: Uint8Array, start: number, end: number): string {
  return latin1Slice.call(buf, start, end);
}

// ───────────── encoder ─────────────

/**
 * Appends the HPACK encoding of fields to `out` starting at `pos`; returns the new position, or -1
 * when `out` is too small (the caller retries with a larger buffer). Names must be lower-case;
 * values must already be valid field values.
 */
export function encodeField(out: Buffer, pos: number, name: string, value: string): number {
  const full = STATIC_FIELD.get(`${name}\0${value}`);
  if (full !== undefined) {
    if (pos + 1 > out.length) return -1;
    out[pos] = 0x80 | full;
    return pos + 1;
  }
  const nameIdx = STATIC_NAME.get(name);
  // Worst case: 1 + 3 (name index) + 5 + name + 5 + value.
  if (pos + name.length + value.length + 16 > out.length) return -1;
  if (nameIdx !== undefined) {
    pos = writeInt(out, pos, 0x00, 4, nameIdx);
  } else {
    out[pos++] = 0x00;
    pos = writeInt(out, pos, 0x00, 7, name.length);
    pos += out.write(name, pos, 'latin1');
  }
  pos = writeInt(out, pos, 0x00, 7, value.length);
  pos += out.write(value, pos, 'latin1');
  return pos;
}

function writeInt(out: Buffer, pos: number, flags: number, prefix: number, n: number): number {
  const mask = (1 << prefix) - 1;
  if (n < mask) {
    out[pos++] = flags | n;
    return pos;
  }
  out[pos++] = flags | mask;
  n -= mask;
  while (n >= 0x80) {
    out[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[pos++] = n;
  return pos;
}
