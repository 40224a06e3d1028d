/**
 * Istio's `istio.stats` HTTP filter (`stats.PluginConfig`, decoded by
 * proxy/config/filters/istio-stats.ts). It does its work when a stream completes: the connection
 * manager's telemetry finds this filter's config among the http_filters and builds the Istio
 * metrics reporter from it (reporter kind, Host fallback, metric and dimension overrides —
 * proxy/telemetry/istio.ts). Per stream it adds nothing: every stream shares one empty filter.
 */
import type { HttpFilter, HttpFilterFactory } from '../filter';
import { decodeIstioStats, ISTIO_STATS_TYPE_NAME, type IstioStatsConfig } from '../../config/filters/istio-stats';

const NOTHING_PER_STREAM: HttpFilter = Object.freeze({});

export const istioStatsFilterFactory: HttpFilterFactory<IstioStatsConfig> = {
  typeName: ISTIO_STATS_TYPE_NAME,
  decode: decodeIstioStats,
  create: () => NOTHING_PER_STREAM,
};
