/**
 * The decompressor HTTP filter, `envoy.extensions.filters.http.decompressor.v3.Decompressor`
 * (Envoy's envoy.filters.http.decompressor): decompresses request and response bodies whose
 * Content-Encoding starts with the library's encoding (gzip or br; zstd where node:zlib has it),
 * streaming through node:zlib with flow control both ways (zlib-pump.ts).
 *
 * Envoy's behaviour, kept: each direction is enabled by common_config.enabled (default true);
 * `Cache-Control: no-transform` leaves a body alone; the first coding of Content-Encoding must
 * be the library's, and is removed (the header with it when it was the only one); Content-Length
 * is removed. When response decompression is enabled and request_direction_config's
 * advertise_accept_encoding (default true) is, the library's encoding is appended to the
 * request's Accept-Encoding so the upstream may compress. Stats:
 * `<hcm prefix>decompressor.<library name>.<library stats prefix>.{request,response}.*`.
 *
 * A body that does not decompress (corrupt, truncated, or inflating past the gzip library's
 * max_inflate_ratio) ends the stream: a 400 for a request not yet answered, a reset otherwise.
 * `enabled` (a RuntimeFeatureFlag) reads the layered runtime's boolean under its runtime_key per
 * request, default_value when the key is unset.
 */
import type { Reader } from '../../../common/reader';
import type { HeaderList, RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeaderJoined, removeHeader, setHeader } from '../headers';
import { type CompressionLibrary, decodeFeatureFlag, decodeLibrary, type FeatureFlag, FLAG_ON, flagEnabled } from './compression-library';
import { DecompressorStats, type DirectionStats, statsFor } from './compression-stats';
import { ZlibTransformFilter } from './zlib-filter';

export const DECOMPRESSOR_TYPE_NAME = 'envoy.extensions.filters.http.decompressor.v3.Decompressor';

export interface DecompressorConfig {
  readonly kind: 'decompressor';
  readonly libraryName: string;
  readonly library: CompressionLibrary;
  readonly request: Direction;
  readonly response: Direction;
  readonly advertiseAcceptEncoding: boolean;
  readonly stats: Map<string, DecompressorStats>;
}

interface Direction {
  readonly enabled: FeatureFlag;
  /** ignore_no_transform_header: decompress even with `Cache-Control: no-transform`. */
  readonly ignoreNoTransform: boolean;
}

function direction(common: Reader | undefined): Direction {
  if (!common) return { enabled: FLAG_ON, ignoreNoTransform: false };
  const ignoreNoTransform = common.bool('ignore_no_transform_header', false);
  const enabled = decodeFeatureFlag(common, 'enabled');
  common.done();
  return { enabled, ignoreNoTransform };
}

export function decodeDecompressor(r: Reader): DecompressorConfig | undefined {
  const lib = decodeLibrary(r, 'decompressor_library', 'decompressor');
  const req = r.obj('request_direction_config');
  const res = r.obj('response_direction_config');
  const request = direction(req?.obj('common_config'));
  const advertiseAcceptEncoding = req ? req.bool('advertise_accept_encoding', true) : true;
  req?.done();
  const response = direction(res?.obj('common_config'));
  res?.done();
  r.done();
  if (!lib) return undefined;
  return {
    kind: 'decompressor',
    libraryName: lib.name,
    library: lib.library,
    request,
    response,
    advertiseAcceptEncoding,
    stats: new Map(),
  };
}

function noTransform(h: HeaderList): boolean {
  const cc = getHeaderJoined(h, 'cache-control');
  if (cc === undefined) return false;
  for (const t of cc.split(',')) if (t.trim().toLowerCase() === 'no-transform') return true;
  return false;
}

/** The first coding of Content-Encoding is the library's: remove it (and the header when it was the only one). */
function takeEncoding(h: HeaderList, encoding: string): boolean {
  const ce = getHeaderJoined(h, 'content-encoding');
  if (ce === undefined) return false;
  const comma = ce.indexOf(',');
  if ((comma >= 0 ? ce.slice(0, comma) : ce).trim().toLowerCase() !== encoding) return false;
  if (comma < 0) removeHeader(h, 'content-encoding');
  else setHeader(h, 'content-encoding', ce.slice(comma + 1).trim());
  return true;
}


class DecompressorFilter extends ZlibTransformFilter {
  private readonly stats: DecompressorStats;
  /** The response direction's flag as read at the request headers (undefined: headers-only request). */
  private responseOn: boolean | undefined;

  constructor(
    private readonly config: DecompressorConfig,
    cb: HttpFilterCallbacks,
  ) {
    super(cb);
    this.stats = statsFor(config.stats, cb.hcm.statPrefix, (p) => new DecompressorStats(`${p}decompressor.${config.libraryName}.${config.library.statsPrefix}.`));
  }

  decodeHeaders(head: RequestHead, endStream: boolean): FilterStatus {
    if (endStream) return FilterStatus.Continue;
    const c = this.config;
    const h = head.headers;
    const responseOn = flagEnabled(c.response.enabled, this.cb.runtime);
    this.responseOn = responseOn;
    if (responseOn && c.advertiseAcceptEncoding) {
      const ae = getHeaderJoined(h, 'accept-encoding');
      setHeader(h, 'accept-encoding', ae === undefined || ae === '' ? c.library.encoding : `${ae},${c.library.encoding}`);
    }
    if (flagEnabled(c.request.enabled, this.cb.runtime) && (c.request.ignoreNoTransform || !noTransform(h)) && takeEncoding(h, c.library.encoding)) {
      this.stats.request.compressed++;
      removeHeader(h, 'content-length');
      head.contentLength = -1;
      this.pump(this.stats.request, false);
    } else this.stats.request.notCompressed++;
    return FilterStatus.Continue;
  }

  encodeHeaders(head: ResponseHead, endStream: boolean): FilterStatus {
    if (endStream) return FilterStatus.Continue;
    const c = this.config;
    const h = head.headers;
    if ((this.responseOn ?? flagEnabled(c.response.enabled, this.cb.runtime)) && (c.response.ignoreNoTransform || !noTransform(h)) && takeEncoding(h, c.library.encoding)) {
      this.stats.response.compressed++;
      removeHeader(h, 'content-length');
      head.contentLength = -1;
      this.pump(this.stats.response, true);
    } else this.stats.response.notCompressed++;
    return FilterStatus.Continue;
  }

  private pump(st: DirectionStats, response: boolean): void {
    const lib = this.config.library;
    this.startPump(
      response,
      lib.create(),
      {
        out: (n) => (st.totalUncompressedBytes += n),
        done: (bytesIn) => (st.totalCompressedBytes += bytesIn),
        error: (bytesIn) => {
          st.totalCompressedBytes += bytesIn;
          this.stats.decompressionErrors++;
          if (response) this.cb.sendLocalReply(502, 'Bad Gateway', undefined, undefined, 'decompressor_error');
          else this.cb.sendLocalReply(400, 'Bad Request', undefined, undefined, 'decompressor_error');
        },
      },
      lib.maxInflateRatio ?? 0,
    );
  }
}

export const decompressorFilterFactory: HttpFilterFactory<DecompressorConfig | undefined> = {
  typeName: DECOMPRESSOR_TYPE_NAME,
  decode: decodeDecompressor,
  create(config: DecompressorConfig | undefined, callbacks: HttpFilterCallbacks): HttpFilter {
    return config === undefined ? {} : new DecompressorFilter(config, callbacks);
  },
};
