/**
 * Byte classification tables and small string helpers shared by the HTTP/1.1 parser and writers.
 *
 * Leans towards speed and strictness: lookup tables indexed by byte (latin1 char code), no regular
 * expressions on the hot path. RFC 9110 §5.6.2 token characters, RFC 9112 line syntax.
 */

/** 1 for RFC 9110 tchar: "!#$%&'*+-.^_`|~" DIGIT ALPHA. */
export const TOKEN = new Uint8Array(256);
/** Hex digit value, or -1. */
export const HEX = new Int8Array(256).fill(-1);

for (let c = 0; c < 256; c++) {
  if (
    (c >= 0x30 && c <= 0x39) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c))
  ) {
    TOKEN[c] = 1;
  }
  if (c >= 0x30 && c <= 0x39) HEX[c] = c - 0x30;
  else if (c >= 0x41 && c <= 0x46) HEX[c] = c - 0x41 + 10;
  else if (c >= 0x61 && c <= 0x66) HEX[c] = c - 0x61 + 10;
}

export const CR = 13;
export const LF = 10;
export const SP = 32;
export const HTAB = 9;

/** The end-of-head marker. */
export const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

/** Shared zero-length buffer for end-of-stream signals (never written to). */
export const EMPTY = Buffer.alloc(0);

/** ASCII case-insensitive equality against a lower-case literal, without allocating. */
export function equalsLower(s: string, lower: string): boolean {
  const n = lower.length;
  if (s.length !== n) return false;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** True when `s` is a non-empty run of tchar. */
export function isToken(s: string): boolean {
  const n = s.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 255 || TOKEN[c] !== 1) return false;
  }
  return true;
}

/** True when `s` is a valid field value: HTAB, SP, VCHAR, obs-text; no CTLs (CR, LF, NUL, DEL…). */
export function isFieldValue(s: string): boolean {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== HTAB) || c === 0x7f || c > 0xff) return false;
  }
  return true;
}

/** Lower-cased, trimmed comma-separated list elements (used only for uncommon header shapes). */
export function splitList(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t !== '') out.push(t);
  }
  return out;
}

/** Node's Buffer has fast, undocumented-in-types latin1 slice/write bindings (stable since v0.x). */
interface Latin1Buffer {
  latin1Slice(start: number, end: number): string;
  latin1Write(s: string, offset: number, length?: number): number;
}

/** buf.toString('latin1', start, end) without the encoding switch. */
export function latin1Slice(buf: Buffer, start: number, end: number): string {
  return (buf as unknown as Latin1Buffer).latin1Slice(start, end);
}

/** Write a latin1 string into `buf` at `offset`; returns bytes written (= s.length). */
export function latin1Write(buf: Buffer, s: string, offset: number): number {
  return (buf as unknown as Latin1Buffer).latin1Write(s, offset, s.length);
}
