/**
 * Decoder for envoy.config.core.v3.HealthCheck (http, tcp and grpc active checks). Intervals,
 * timeouts and thresholds are required, as in Envoy. Defaults: no_traffic_interval 60 s,
 * expected_statuses [200, 201), unhealthy_interval = interval.
 */
import type { Reader } from '../../../common/reader';
import type { HealthCheckConfig } from '../types';
import { dur, enumOf } from './core';

function decodePayload(r: Reader): Buffer | undefined {
  const which = r.oneof(['text', 'binary'] as const);
  let out: Buffer | undefined;
  if (which === 'text') {
    const t = r.str('text', '');
    if (!/^([0-9a-fA-F]{2})+$/.test(t)) r.error('text', 'expected a hex-encoded payload');
    else out = Buffer.from(t, 'hex');
  } else if (which === 'binary') {
    out = Buffer.from(r.str('binary', ''), 'base64');
  } else r.issues.error(r.path, 'one of text, binary must be set');
  r.done();
  return out;
}

function requiredPositiveMs(r: Reader, key: string): number {
  if (!r.has(key)) {
    r.error(key, 'is required');
    return 0;
  }
  const v = dur(r, key, 0);
  if (v <= 0) r.error(key, 'must be greater than 0');
  return v;
}

function optionalPositiveMs(r: Reader, key: string): number | undefined {
  const v = dur(r, key);
  if (v === 0) {
    r.error(key, 'must be greater than 0');
    return undefined;
  }
  return v;
}

export function decodeHealthCheck(r: Reader): HealthCheckConfig | undefined {
  const timeoutMs = requiredPositiveMs(r, 'timeout');
  const intervalMs = requiredPositiveMs(r, 'interval');
  const intervalJitterMs = dur(r, 'interval_jitter', 0);
  const intervalJitterPercent = r.int('interval_jitter_percent', 0, 0, 100);
  for (const k of ['unhealthy_threshold', 'healthy_threshold']) if (!r.has(k)) r.error(k, 'is required');
  const unhealthyThreshold = r.int('unhealthy_threshold', 1, 0, 0xffffffff);
  const healthyThreshold = r.int('healthy_threshold', 1, 0, 0xffffffff);
  const noTrafficIntervalMs = optionalPositiveMs(r, 'no_traffic_interval') ?? 60_000;
  const unhealthyIntervalMs = optionalPositiveMs(r, 'unhealthy_interval');
  const which = r.oneof(['http_health_check', 'tcp_health_check', 'grpc_health_check', 'custom_health_check'] as const);
  let check: HealthCheckConfig['check'] | undefined;
  const c = which ? r.obj(which) : undefined;
  if (which === undefined)
    r.issues.error(r.path, 'one of http_health_check, tcp_health_check, grpc_health_check must be set');
  else if (which === 'custom_health_check') r.error(which, 'custom health checkers are not supported by meshlet');
  else if (c && which === 'http_health_check') {
    const host = c.str('host', '');
    const path = c.requiredStr('path');
    const expectedStatuses: { start: number; end: number }[] = [];
    for (const s of c.arr('expected_statuses')) {
      const start = s.int('start', 0, 100, 599);
      const end = s.int('end', 0, 101, 600);
      if (start >= end) s.error('end', `must be greater than start (${start})`);
      s.done();
      expectedStatuses.push({ start, end });
    }
    if (expectedStatuses.length === 0) expectedStatuses.push({ start: 200, end: 201 });
    const codec = enumOf(c, 'codec_client_type', ['HTTP1', 'HTTP2', 'HTTP3'] as const, 'HTTP1');
    if (codec === 'HTTP3') c.error('codec_client_type', 'HTTP3 is not supported by meshlet');
    if (c.list('request_headers_to_add').length > 0) c.error('request_headers_to_add', 'is not supported by meshlet');
    if (path) check = { kind: 'http', host, path, expectedStatuses, useHttp2: codec === 'HTTP2' };
  } else if (c && which === 'tcp_health_check') {
    const sr = c.obj('send');
    const send = sr ? decodePayload(sr) : undefined;
    const receive: Buffer[] = [];
    for (const p of c.arr('receive')) {
      const b = decodePayload(p);
      if (b) receive.push(b);
    }
    check = { kind: 'tcp', ...(send ? { send } : {}), receive };
  } else if (c && which === 'grpc_health_check') {
    const serviceName = c.str('service_name', '');
    const authority = c.str('authority');
    if (c.list('initial_metadata').length > 0) c.error('initial_metadata', 'is not supported by meshlet');
    check = { kind: 'grpc', serviceName, ...(authority ? { authority } : {}) };
  }
  c?.done();
  r.done();
  if (!check) return undefined;
  return {
    timeoutMs,
    intervalMs,
    intervalJitterMs,
    intervalJitterPercent,
    unhealthyThreshold,
    healthyThreshold,
    noTrafficIntervalMs,
    ...(unhealthyIntervalMs !== undefined ? { unhealthyIntervalMs } : {}),
    check,
  };
}
