/**
 * DecodeContext: what the pure Envoy v3 decoders may consult besides their input. It owns no
 * state of its own; the bootstrap loader and the xDS client each build one.
 *
 * Leans towards purity: the only side effects a decoder may have are reading small files the
 * config names at decode time (direct_response bodies), through `readFile` so tests can see it.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { Reader } from '../../../common/reader';

/**
 * What the decoders need of an HTTP filter factory: its config decoders. The factories themselves
 * (proxy/http/filter.ts, registered in proxy/registry.ts) satisfy this; declaring it here keeps the
 * decoders below the data plane.
 */
export interface HttpFilterDecoder {
  decode(r: Reader): unknown;
  /** typed_per_filter_config decoder; absent = the filter has no per-route config. */
  decodePerRoute?(r: Reader): unknown;
  /** Terminal filters (the router) must be last in http_filters, and only they may be. */
  readonly terminal?: boolean;
}

export interface HttpFilterDecoders {
  get(typeName: string): HttpFilterDecoder | undefined;
}

export interface DecodeContext {
  /** HTTP filter decoders by typed_config type name; http_filters are decoded through it. */
  readonly httpFilters: HttpFilterDecoders;
  /** Directory relative `filename` data sources are resolved against (the bootstrap's directory). */
  readonly baseDir?: string;
  /** Reads a file named by the config (control-plane side only). Default: fs.readFileSync. */
  readonly readFile?: (path: string) => Buffer;
  /**
   * Set by the bootstrap loader only: what static references may point at, so a dangling name
   * is reported at the exact field that names it. The xDS client leaves it unset (resources
   * arrive in any order there).
   */
  readonly refs?: StaticRefs;
  /** Internal: set while decoding a RouteConfiguration whose validate_clusters is on. */
  readonly validateRouteClusters?: boolean;
}

export interface StaticRefs {
  /** static_resources.clusters by name → type (xDS gRPC services must be static non-EDS clusters). */
  readonly staticClusters: ReadonlyMap<string, string>;
  /** No CDS: route, tcp_proxy and tracing clusters must be static clusters. */
  readonly checkClusters: boolean;
  /** static_resources.secrets names: an SDS config without sds_config must name one. */
  readonly staticSecrets: ReadonlySet<string>;
  /** dynamic_resources.ads_config is set: an `ads` config source is usable. */
  readonly adsConfigured: boolean;
}

/** Records an error at r.sub(key) when `name` is not a known cluster (only with refs.checkClusters). */
export function checkClusterRef(
  ctx: DecodeContext,
  report: (message: string) => void,
  name: string,
  force = false,
): void {
  const refs = ctx.refs;
  if (!refs || !name || !(refs.checkClusters || force)) return;
  if (!refs.staticClusters.has(name)) report(`unknown cluster ${JSON.stringify(name)}`);
}

/** Reads a file named by config, resolving relative paths against ctx.baseDir. Throws on failure. */
export function readConfigFile(ctx: DecodeContext, path: string): Buffer {
  const full = isAbsolute(path) || !ctx.baseDir ? path : resolve(ctx.baseDir, path);
  return ctx.readFile ? ctx.readFile(full) : readFileSync(full);
}
