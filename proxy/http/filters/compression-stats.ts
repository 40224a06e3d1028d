/**
 * Counters of the compressor and decompressor filters, under Envoy's names:
 * `<hcm stat prefix>compressor.<library name>.<library stats prefix>.[response.|request.]*` and
 * `<hcm stat prefix>decompressor.<library name>.<library stats prefix>.{request,response}.*`.
 * One set per filter config and connection manager stat prefix, made when the first stream of
 * that pair starts (a map lookup per stream) and kept for the process.
 */

/** What one direction of a compressor or decompressor counts. */
export class DirectionStats {
  compressed = 0;
  notCompressed = 0;
  totalUncompressedBytes = 0;
  totalCompressedBytes = 0;
  contentLengthTooSmall = 0;
}

/** The response-only counters of the compressor (Accept-Encoding decisions, ETag). */
export class ResponseDecisionStats {
  noAcceptHeader = 0;
  headerIdentity = 0;
  headerCompressorUsed = 0;
  headerCompressorOvershadowed = 0;
  headerWildcard = 0;
  headerNotValid = 0;
  notCompressedEtag = 0;
}

export class CompressorStats {
  readonly request = new DirectionStats();
  readonly response = new DirectionStats();
  readonly decision = new ResponseDecisionStats();
  constructor(
    /** `<hcm prefix>compressor.<name>.<lib>.` */
    readonly prefix: string,
    /** '' when the deprecated top-level fields configure the response direction, else 'response.'. */
    readonly responseSub: string,
  ) {}
}

export class DecompressorStats {
  readonly request = new DirectionStats();
  readonly response = new DirectionStats();
  /** Input that failed to decompress (meshlet's name; Envoy counts per library). */
  decompressionErrors = 0;
  constructor(readonly prefix: string) {}
}

const compressors: CompressorStats[] = [];
const decompressors: DecompressorStats[] = [];

/** The stats of one config under one connection manager, made on first use. */
export function statsFor<S extends CompressorStats | DecompressorStats>(
  byPrefix: Map<string, S>,
  hcmStatPrefix: string,
  make: (hcmPrefix: string) => S,
): S {
  let s = byPrefix.get(hcmStatPrefix);
  if (s === undefined) {
    s = make(`http.${hcmStatPrefix}.`);
    byPrefix.set(hcmStatPrefix, s);
    if (s instanceof CompressorStats) compressors.push(s);
    else decompressors.push(s as DecompressorStats);
  }
  return s;
}

/** Every counter as (name, value), for /stats and Prometheus. */
export function compressionCounters(c: (name: string, value: number) => void): void {
  for (const s of compressors) {
    const p = s.prefix;
    const r = `${p}${s.responseSub}`;
    c(`${r}compressed`, s.response.compressed);
    c(`${r}not_compressed`, s.response.notCompressed);
    c(`${r}total_uncompressed_bytes`, s.response.totalUncompressedBytes);
    c(`${r}total_compressed_bytes`, s.response.totalCompressedBytes);
    c(`${r}content_length_too_small`, s.response.contentLengthTooSmall);
    const d = s.decision;
    c(`${p}no_accept_header`, d.noAcceptHeader);
    c(`${p}header_identity`, d.headerIdentity);
    c(`${p}header_compressor_used`, d.headerCompressorUsed);
    c(`${p}header_compressor_overshadowed`, d.headerCompressorOvershadowed);
    c(`${p}header_wildcard`, d.headerWildcard);
    c(`${p}header_not_valid`, d.headerNotValid);
    c(`${p}not_compressed_etag`, d.notCompressedEtag);
    const q = `${p}request.`;
    c(`${q}compressed`, s.request.compressed);
    c(`${q}not_compressed`, s.request.notCompressed);
    c(`${q}total_uncompressed_bytes`, s.request.totalUncompressedBytes);
    c(`${q}total_compressed_bytes`, s.request.totalCompressedBytes);
    c(`${q}content_length_too_small`, s.request.contentLengthTooSmall);
  }
  for (const s of decompressors) {
    for (const [dir, d] of [
      ['request.', s.request],
      ['response.', s.response],
    ] as const) {
      const p = `${s.prefix}${dir}`;
      c(`${p}decompressed`, d.compressed);
      c(`${p}not_decompressed`, d.notCompressed);
      c(`${p}total_uncompressed_bytes`, d.totalUncompressedBytes);
      c(`${p}total_compressed_bytes`, d.totalCompressedBytes);
    }
    c(`${s.prefix}decompression_errors`, s.decompressionErrors);
  }
}
