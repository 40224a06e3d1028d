/**
 * Secret redaction for admin output, as Envoy does for /config_dump: every field Envoy's API marks
 * `(udpa.annotations.sensitive)` has its contents replaced — strings by "[redacted]", bytes by the
 * bytes of "[redacted]" (base64 in proto3 JSON), other scalars dropped — wherever it appears:
 * static and dynamic resources, Any payloads, SDS secrets, rejected (error_state) resources.
 *
 * Works on proto3 JSON as users write it (snake_case or lowerCamelCase field names). Runs only
 * when an admin page is asked for, never on the data path.
 */

export const REDACTED = '[redacted]';
const REDACTED_BYTES = Buffer.from(REDACTED).toString('base64');

/** Sensitive wherever they appear (names distinctive enough not to collide with other fields). */
const SENSITIVE = new Set([
  // envoy.extensions.transport_sockets.tls.v3.TlsCertificate
  'private_key',
  'privateKey',
  'pkcs12',
  // core.v3.GrpcService.GoogleGrpc call credentials
  'access_token',
  'accessToken',
  'google_refresh_token',
  'googleRefreshToken',
  'json_key',
  'jsonKey',
  'authorization_token',
  'authorizationToken',
  'authority_selector',
  'authoritySelector',
]);

/** Sensitive only inside a given parent field (the names are too common to match alone). */
const SENSITIVE_IN: Record<string, ReadonlySet<string>> = {
  tls_certificate: new Set(['password']),
  tlsCertificate: new Set(['password']),
  tls_certificates: new Set(['password']),
  tlsCertificates: new Set(['password']),
  session_ticket_keys: new Set(['keys']),
  sessionTicketKeys: new Set(['keys']),
  generic_secret: new Set(['secret', 'secrets']),
  genericSecret: new Set(['secret', 'secrets']),
};

/** Sensitive fields of extensions, keyed by the type URL of the Any that carries them. */
const SENSITIVE_BY_TYPE: Record<string, ReadonlySet<string>> = {
  'type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuth': new Set(['users']),
  'type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuthPerRoute': new Set(['users']),
};

const BYTES_FIELDS = new Set(['inline_bytes', 'inlineBytes']);

/** A deep copy of `value` with every secret-bearing field redacted. */
export function redactSecrets<T>(value: T): T {
  return walk(value, undefined, false) as T;
}

function walk(value: unknown, parentKey: string | undefined, sensitive: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => walk(v, parentKey, sensitive));
  if (value === null || typeof value !== 'object') return sensitive ? redactScalar(value, parentKey) : value;
  const obj = value as Record<string, unknown>;
  const byType = typeof obj['@type'] === 'string' ? SENSITIVE_BY_TYPE[obj['@type']] : undefined;
  const inParent = parentKey ? SENSITIVE_IN[parentKey] : undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k === '@type') {
      out[k] = v; // the type URL of an Any stays, as Envoy keeps it when it redacts the payload
      continue;
    }
    const s = sensitive || SENSITIVE.has(k) || inParent?.has(k) === true || byType?.has(k) === true;
    const r = walk(v, k, s);
    if (r !== undefined) out[k] = r;
  }
  return out;
}

function redactScalar(v: unknown, key: string | undefined): unknown {
  if (typeof v === 'string') return key && BYTES_FIELDS.has(key) ? REDACTED_BYTES : REDACTED;
  return undefined; // numbers, booleans, null: cleared, as Envoy clears non-string scalars
}
