/**
 * Decoder for envoy.config.cluster.v3.OutlierDetection with Envoy's defaults: consecutive_5xx 5,
 * consecutive_gateway_failure 5, interval 10 s, base_ejection_time 30 s, max_ejection_time
 * 300 s, max_ejection_percent 10, enforcing_consecutive_5xx 100, enforcing_consecutive_gateway_failure 0,
 * enforcing_success_rate 100, success_rate_minimum_hosts 5, request_volume 100, stdev_factor 1900.
 */
import type { Reader } from '../../../common/reader';
import type { OutlierDetectionConfig } from '../types';
import { dur } from './core';

export function decodeOutlierDetection(r: Reader): OutlierDetectionConfig {
  const pos = (key: string, def: number) => {
    const v = dur(r, key, def);
    if (v <= 0) {
      r.error(key, 'must be greater than 0');
      return def;
    }
    return v;
  };
  const intervalMs = pos('interval', 10_000);
  const baseEjectionTimeMs = pos('base_ejection_time', 30_000);
  const maxEjectionTimeMs = pos('max_ejection_time', Math.max(300_000, baseEjectionTimeMs));
  if (r.has('max_ejection_time') && maxEjectionTimeMs < baseEjectionTimeMs) {
    r.error('max_ejection_time', 'cannot be smaller than base_ejection_time');
  }
  const out: OutlierDetectionConfig = {
    consecutive5xx: r.int('consecutive_5xx', 5, 0, 0xffffffff),
    consecutiveGatewayFailure: r.int('consecutive_gateway_failure', 5, 0, 0xffffffff),
    intervalMs,
    baseEjectionTimeMs,
    maxEjectionTimeMs,
    maxEjectionPercent: r.int('max_ejection_percent', 10, 0, 100),
    enforcingConsecutive5xx: r.int('enforcing_consecutive_5xx', 100, 0, 100),
    enforcingConsecutiveGatewayFailure: r.int('enforcing_consecutive_gateway_failure', 0, 0, 100),
    enforcingSuccessRate: r.int('enforcing_success_rate', 100, 0, 100),
    successRateMinimumHosts: r.int('success_rate_minimum_hosts', 5, 0, 0xffffffff),
    successRateRequestVolume: r.int('success_rate_request_volume', 100, 0, 0xffffffff),
    successRateStdevFactor: r.int('success_rate_stdev_factor', 1900, 0, 0xffffffff),
    splitExternalLocalOriginErrors: r.bool('split_external_local_origin_errors', false),
  };
  r.done();
  return out;
}
