/**
 * HPACK Huffman decoding (RFC 7541 §5.2, Appendix B), used by meshlet's own HTTP/2 framing.
 *
 * The code of Appendix B is canonical (codes of one length are consecutive, in symbol order, and
 * shorter codes come first), so the table below holds only each symbol's code length; the codes
 * themselves are rebuilt at load time. Decoding walks bits against the first code of each length
 * (canonical decoding): no tree, no per-call allocation but the result string.
 *
 * Leans towards strictness, as RFC 7541 §5.2 requires: an EOS symbol in the data, padding longer
 * than 7 bits, or padding that is not the most significant bits of EOS (all ones) is an error.
 * Meshlet never Huffman-encodes what it sends (loopback and sidecar hops favour CPU over bytes).
 */

/** Code length in bits of symbols 0..256 (256 = EOS), RFC 7541 Appendix B. */
const LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0-15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16-31
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 32-47
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 48-63
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 64-79
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 80-95
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 96-111
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 112-127
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128-143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144-159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160-175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176-191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192-207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208-223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224-239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240-255
  30, // 256-256
];

const MAX_LEN = 30;
/** First code of each length, how many codes have it, where its symbols start in SYMBOLS. */
const FIRST = new Int32Array(MAX_LEN + 1);
const COUNT = new Int32Array(MAX_LEN + 1);
const START = new Int32Array(MAX_LEN + 1);
/** Symbols ordered by (length, symbol): the canonical order. */
const SYMBOLS = new Uint16Array(257);

(function build(): void {
  for (const len of LENGTHS) COUNT[len]!++;
  let code = 0;
  let at = 0;
  for (let len = 1; len <= MAX_LEN; len++) {
    FIRST[len] = code;
    START[len] = at;
    at += COUNT[len]!;
    code = (code + COUNT[len]!) << 1;
  }
  const fill = START.slice();
  for (let len = 1; len <= MAX_LEN; len++) {
    for (let sym = 0; sym < LENGTHS.length; sym++) if (LENGTHS[sym] === len) SYMBOLS[fill[len]!++] = sym;
  }
})();

const EOS = 256;
let scratch = Buffer.allocUnsafe(256);

/**
 * Decodes `src[start, end)` as Huffman-coded octets into a latin1 string (one char per octet), or
 * returns undefined when the data is not a valid Huffman string.
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number): string | undefined {
  // Every code is at least 5 bits: the output is at most 8/5 of the input.
  const need = (((end - start) * 8) / 5) | 0;
  if (scratch.length < need) scratch = Buffer.allocUnsafe(Math.max(need, scratch.length * 2));
  const out = scratch;
  let n = 0;
  let code = 0;
  let len = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      len++;
      const off = code - FIRST[len]!;
      if (off >= 0 && off < COUNT[len]!) {
        const sym = SYMBOLS[START[len]! + off]!;
        if (sym === EOS) return undefined;
        out[n++] = sym;
        code = 0;
        len = 0;
      } else if (len >= MAX_LEN) {
        return undefined;
      }
    }
  }
  // Padding: at most 7 bits, all ones (a prefix of EOS).
  if (len > 7 || code !== (1 << len) - 1) return undefined;
  return out.toString('latin1', 0, n);
}

/** Huffman-encodes a latin1 string (tests and tools; meshlet sends literals unencoded). */
export function huffmanEncode(s: string): Buffer {
  const bytes: number[] = [];
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    const len = LENGTHS[sym]!;
    let code = FIRST[len]!;
    for (let k = START[len]!; SYMBOLS[k] !== sym; k++) code++;
    for (let b = len - 1; b >= 0; b--) {
      acc = (acc << 1) | ((code >>> b) & 1);
      if (++bits === 8) {
        bytes.push(acc);
        acc = 0;
        bits = 0;
      }
    }
  }
  if (bits > 0) bytes.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xff);
  return Buffer.from(bytes);
}
