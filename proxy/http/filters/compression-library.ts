/**
 * The compression libraries of the compressor and decompressor filters (Envoy's
 * `envoy.compression.{gzip,brotli,zstd}.{compressor,decompressor}` extensions), decoded into
 * factories of node:zlib streams. Each library has Envoy's content encoding (`gzip`, `br`,
 * `zstd`) and stats prefix (`gzip`, `brotli`, `zstd`).
 *
 * Compressor streams flush at every write (Z_SYNC_FLUSH / BROTLI_OPERATION_FLUSH), as Envoy's
 * compressors flush every data frame, so a streamed response (server-sent events, long polls)
 * reaches the client chunk by chunk instead of waiting for the end of the body.
 *
 * zstd exists only where node:zlib has it (Node ≥ 22.15). On an older Node a zstd compressor
 * filter is left out of the chain with a start-up warning (istiod's bootstrap lists brotli, zstd
 * and gzip; the others still serve), and a zstd decompressor is rejected with that reason.
 */
import * as zlib from 'node:zlib';
import type { Transform } from 'node:stream';
import type { Reader } from '../../../common/reader';
import { enumNamed } from '../../config/envoy/core';

export interface CompressionLibrary {
  /** Content-Encoding token. */
  readonly encoding: string;
  /** Envoy's stats prefix of the library. */
  readonly statsPrefix: string;
  create(): Transform;
  /** Decompressors only: output may not exceed this many times the input (gzip max_inflate_ratio). */
  readonly maxInflateRatio?: number;
}

const T = 'envoy.extensions.compression.';
export const GZIP_COMPRESSOR = `${T}gzip.compressor.v3.Gzip`;
export const BROTLI_COMPRESSOR = `${T}brotli.compressor.v3.Brotli`;
export const ZSTD_COMPRESSOR = `${T}zstd.compressor.v3.Zstd`;
export const GZIP_DECOMPRESSOR = `${T}gzip.decompressor.v3.Gzip`;
export const BROTLI_DECOMPRESSOR = `${T}brotli.decompressor.v3.Brotli`;
export const ZSTD_DECOMPRESSOR = `${T}zstd.decompressor.v3.Zstd`;

type ZlibWithZstd = typeof zlib & {
  createZstdCompress?: (o?: object) => Transform;
  createZstdDecompress?: (o?: object) => Transform;
};
const zstdZlib = zlib as ZlibWithZstd;
const ZSTD_MISSING_BASE = `zstd needs node:zlib zstd support (Node 22.15 or later); this Node ${process.version} has none`;
const ZSTD_MISSING = `${ZSTD_MISSING_BASE}. Use gzip or brotli`;

/** Envoy's gzip CompressionLevel names → zlib levels (DEFAULT_COMPRESSION is zlib's -1, level 6). */
const GZIP_LEVELS: Record<string, number> = {
  DEFAULT_COMPRESSION: -1,
  BEST_SPEED: 1,
  COMPRESSION_LEVEL_1: 1,
  COMPRESSION_LEVEL_2: 2,
  COMPRESSION_LEVEL_3: 3,
  COMPRESSION_LEVEL_4: 4,
  COMPRESSION_LEVEL_5: 5,
  COMPRESSION_LEVEL_6: 6,
  COMPRESSION_LEVEL_7: 7,
  COMPRESSION_LEVEL_8: 8,
  COMPRESSION_LEVEL_9: 9,
  BEST_COMPRESSION: 9,
};
const GZIP_LEVEL_NUMBERS = { DEFAULT_COMPRESSION: 0, BEST_SPEED: 1, COMPRESSION_LEVEL_2: 2, COMPRESSION_LEVEL_3: 3, COMPRESSION_LEVEL_4: 4, COMPRESSION_LEVEL_5: 5, COMPRESSION_LEVEL_6: 6, COMPRESSION_LEVEL_7: 7, COMPRESSION_LEVEL_8: 8, BEST_COMPRESSION: 9, COMPRESSION_LEVEL_1: 1, COMPRESSION_LEVEL_9: 9 } as const;
const GZIP_STRATEGIES = { DEFAULT_STRATEGY: 0, FILTERED: 1, HUFFMAN_ONLY: 2, RLE: 3, FIXED: 4 } as const;
const BROTLI_MODES = { DEFAULT: 0, GENERIC: 1, TEXT: 2, FONT: 3 } as const;

function chunkSize(r: Reader): number {
  return r.int('chunk_size', 4096, 4096, 65536);
}

function decodeGzipCompressor(r: Reader): CompressionLibrary {
  const memLevel = r.int('memory_level', 5, 1, 9);
  const level = GZIP_LEVELS[enumNamed(r, 'compression_level', GZIP_LEVEL_NUMBERS, 'DEFAULT_COMPRESSION')]!;
  const strategy = GZIP_STRATEGIES[enumNamed(r, 'compression_strategy', GZIP_STRATEGIES, 'DEFAULT_STRATEGY')];
  const windowBits = r.int('window_bits', 12, 9, 15);
  const size = chunkSize(r);
  r.done();
  const opts = { level, memLevel, strategy, windowBits, chunkSize: size, flush: zlib.constants.Z_SYNC_FLUSH };
  return { encoding: 'gzip', statsPrefix: 'gzip', create: () => zlib.createGzip(opts) };
}

function decodeBrotliCompressor(r: Reader): CompressionLibrary {
  const quality = r.int('quality', 3, 0, 11);
  const mode = enumNamed(r, 'encoder_mode', BROTLI_MODES, 'DEFAULT');
  const lgwin = r.int('window_bits', 18, 10, 24);
  const lgblock = r.int('input_block_bits', 24, 16, 24);
  const size = chunkSize(r);
  const noLiteralModeling = r.bool('disable_literal_context_modeling', false);
  r.done();
  const c = zlib.constants;
  const params: Record<number, number> = {
    [c.BROTLI_PARAM_QUALITY]: quality,
    [c.BROTLI_PARAM_LGWIN]: lgwin,
    [c.BROTLI_PARAM_LGBLOCK]: lgblock,
    [c.BROTLI_PARAM_DISABLE_LITERAL_CONTEXT_MODELING]: noLiteralModeling ? 1 : 0,
  };
  if (mode === 'TEXT') params[c.BROTLI_PARAM_MODE] = c.BROTLI_MODE_TEXT;
  else if (mode === 'FONT') params[c.BROTLI_PARAM_MODE] = c.BROTLI_MODE_FONT;
  else params[c.BROTLI_PARAM_MODE] = c.BROTLI_MODE_GENERIC;
  const opts = { params, chunkSize: size, flush: c.BROTLI_OPERATION_FLUSH };
  return { encoding: 'br', statsPrefix: 'brotli', create: () => zlib.createBrotliCompress(opts) };
}

function decodeZstd(r: Reader, compress: boolean): CompressionLibrary | undefined {
  const make = compress ? zstdZlib.createZstdCompress : zstdZlib.createZstdDecompress;
  if (make === undefined) {
    if (compress) {
      // istiod's bootstrap puts brotli, zstd and gzip compressors on its stats listener: without
      // zstd this one filter is left out of the chain (a warning), and clients asking for zstd get
      // one of the other encodings or the response uncompressed — valid HTTP either way. A zstd
      // decompressor stays an error: it would pass zstd bodies on still encoded.
      r.ignore('compression_level', 'enable_checksum', 'strategy', 'dictionary', 'chunk_size');
      r.issues.warn(r.sub('@type'), `${ZSTD_MISSING_BASE}: this compressor filter is left out (responses use the chain's other encodings or none)`);
      return undefined;
    }
    r.issues.error(r.sub('@type'), ZSTD_MISSING);
    return undefined;
  }
  const size = chunkSize(r);
  r.done();
  return { encoding: 'zstd', statsPrefix: 'zstd', create: () => make.call(zlib, { chunkSize: size }) };
}

function decodeGzipDecompressor(r: Reader): CompressionLibrary {
  // window_bits 9..15 as Envoy; node's gunzip needs at least the stream's own window, so a
  // smaller value only narrows what is accepted (a stream needing more fails as in Envoy).
  const windowBits = r.int('window_bits', 15, 9, 15);
  const size = chunkSize(r);
  const maxInflateRatio = r.int('max_inflate_ratio', 100, 1, 1032);
  r.done();
  return { encoding: 'gzip', statsPrefix: 'gzip', maxInflateRatio, create: () => zlib.createGunzip({ windowBits, chunkSize: size }) };
}

function decodeBrotliDecompressor(r: Reader): CompressionLibrary {
  const noRealloc = r.bool('disable_ring_buffer_reallocation', false);
  const size = chunkSize(r);
  r.done();
  const c = zlib.constants;
  const opts = { chunkSize: size, params: { [c.BROTLI_DECODER_PARAM_DISABLE_RING_BUFFER_REALLOCATION]: noRealloc ? 1 : 0 } };
  return { encoding: 'br', statsPrefix: 'brotli', create: () => zlib.createBrotliDecompress(opts) };
}

/** compressor_library / decompressor_library (an envoy.config.core.v3.TypedExtensionConfig). */
export function decodeLibrary(
  r: Reader,
  key: string,
  kind: 'compressor' | 'decompressor',
): { name: string; library: CompressionLibrary } | undefined {
  const ext = r.obj(key);
  if (!ext) {
    r.error(key, 'is required');
    return undefined;
  }
  const name = ext.requiredStr('name');
  const tc = ext.any('typed_config');
  if (!ext.has('typed_config')) ext.error('typed_config', 'is required');
  ext.done();
  if (!tc) return undefined;
  let library: CompressionLibrary | undefined;
  const c = kind === 'compressor';
  if (tc.type === (c ? GZIP_COMPRESSOR : GZIP_DECOMPRESSOR)) library = c ? decodeGzipCompressor(tc.reader) : decodeGzipDecompressor(tc.reader);
  else if (tc.type === (c ? BROTLI_COMPRESSOR : BROTLI_DECOMPRESSOR)) library = c ? decodeBrotliCompressor(tc.reader) : decodeBrotliDecompressor(tc.reader);
  else if (tc.type === (c ? ZSTD_COMPRESSOR : ZSTD_DECOMPRESSOR)) library = decodeZstd(tc.reader, c);
  else {
    const known = c ? [GZIP_COMPRESSOR, BROTLI_COMPRESSOR, ZSTD_COMPRESSOR] : [GZIP_DECOMPRESSOR, BROTLI_DECOMPRESSOR, ZSTD_DECOMPRESSOR];
    tc.reader.issues.error(tc.reader.sub('@type'), `${kind} library ${tc.type} is not supported by meshlet (expected one of ${known.join(', ')})`);
    return undefined;
  }
  return library ? { name, library } : undefined;
}

/** envoy.config.core.v3.RuntimeFeatureFlag: `default_value` (required), read under `runtime_key` when set. */
export interface FeatureFlag {
  readonly enabled: boolean;
  readonly runtimeKey?: string;
}
export const FLAG_ON: FeatureFlag = Object.freeze({ enabled: true });

export function decodeFeatureFlag(r: Reader, key: string): FeatureFlag {
  const f = r.obj(key);
  if (!f) return FLAG_ON;
  if (!f.has('default_value')) f.error('default_value', 'is required');
  const enabled = f.bool('default_value', true);
  const runtimeKey = f.str('runtime_key', '');
  f.done();
  return runtimeKey === '' ? { enabled } : { enabled, runtimeKey };
}

/** Envoy's FeatureFlag::enabled(): the runtime's boolean under the key, else the default. */
export function flagEnabled(f: FeatureFlag, runtime: { getBoolean(key: string, def: boolean): boolean }): boolean {
  return f.runtimeKey === undefined ? f.enabled : runtime.getBoolean(f.runtimeKey, f.enabled);
}
