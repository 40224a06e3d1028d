/**
 * Decoder for envoy.config.accesslog.v3.AccessLog entries: stdout, stderr and file loggers with
 * an optional SubstitutionFormatString (text or JSON). Unknown logger types are errors naming
 * the type; access-log filters are not supported and are reported.
 */
import type { Reader } from '../../../common/reader';
import type { AccessLogConfig } from '../types';
import { decodeDataSource } from './core';

const T_FILE = 'envoy.extensions.access_loggers.file.v3.FileAccessLog';
const T_STDOUT = 'envoy.extensions.access_loggers.stream.v3.StdoutAccessLog';
const T_STDERR = 'envoy.extensions.access_loggers.stream.v3.StderrAccessLog';

/** envoy.config.core.v3.SubstitutionFormatString. */
function decodeLogFormat(r: Reader): AccessLogConfig['format'] {
  const which = r.oneof(['text_format', 'text_format_source', 'json_format'] as const);
  let out: AccessLogConfig['format'];
  const omitEmptyValues = r.bool('omit_empty_values', false);
  r.warnNoEffect('content_type', 'access log lines carry no content type');
  if (r.list('formatters').length > 0) r.error('formatters', 'custom formatters are not supported by meshlet');
  if (which === 'text_format') {
    out = { kind: 'text', text: r.str(which, '') };
  } else if (which === 'text_format_source') {
    const d = r.obj(which);
    const ds = d ? decodeDataSource(d) : undefined;
    if (ds && ds.kind === 'inline_string') out = { kind: 'text', text: ds.value };
    else if (ds) r.error(which, 'only inline_string is supported by meshlet');
  } else if (which === 'json_format') {
    const j = r.map(which);
    if (j) out = { kind: 'json', json: structuredClone(j) };
  } else {
    r.issues.error(r.path, 'one of text_format, text_format_source, json_format must be set');
  }
  r.done();
  return out && omitEmptyValues ? { ...out, omitEmptyValues } : out;
}

/** One AccessLog entry; undefined after recording an error. */
export function decodeAccessLog(r: Reader): AccessLogConfig | undefined {
  const name = r.str('name', '');
  if (r.has('filter')) r.error('filter', 'access log filters are not supported by meshlet');
  r.raw('filter');
  const tc = r.any('typed_config');
  let out: AccessLogConfig | undefined;
  if (!r.has('typed_config')) {
    r.error('typed_config', 'is required');
  } else if (tc) {
    const t = tc.reader;
    let format: AccessLogConfig['format'];
    const fmt = t.obj('log_format');
    if (fmt) format = decodeLogFormat(fmt);
    if (tc.type === T_STDOUT || tc.type === T_STDERR) {
      out = { name, sink: { kind: tc.type === T_STDOUT ? 'stdout' : 'stderr' }, ...(format ? { format } : {}) };
    } else if (tc.type === T_FILE) {
      const path = t.requiredStr('path');
      // Legacy FileAccessLog.format / json_format / typed_json_format.
      if (t.has('format')) format = { kind: 'text', text: t.str('format', '') };
      const legacyJson = t.map('json_format') ?? t.map('typed_json_format');
      if (legacyJson) format = { kind: 'json', json: structuredClone(legacyJson) };
      const sink: AccessLogConfig['sink'] =
        path === '/dev/stdout'
          ? { kind: 'stdout' }
          : path === '/dev/stderr'
            ? { kind: 'stderr' }
            : { kind: 'file', path };
      if (path) out = { name, sink, ...(format ? { format } : {}) };
    } else {
      t.issues.error(t.sub('@type'), `unsupported access logger type ${tc.type}`);
    }
    if (out || tc.type === T_FILE) t.done();
  }
  r.done();
  return out;
}

export function decodeAccessLogs(r: Reader, key = 'access_log'): AccessLogConfig[] {
  const out: AccessLogConfig[] = [];
  for (const a of r.arr(key)) {
    const v = decodeAccessLog(a);
    if (v) out.push(v);
  }
  return out;
}
