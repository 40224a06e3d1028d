/**
 * One-line reasons for extension types meshlet rejects, so a NACK says what the feature is, not
 * only its type name: the ambient/HBONE pieces istiod sends next to a sidecar's resources
 * (meshlet is a sidecar data plane), and the inner type of a TypedStruct (what istiod wraps its
 * own filters in, e.g. io.istio.network.authn.Config).
 */
import type { Reader } from '../../../common/reader';

const SIDECAR_ONLY = 'meshlet implements the sidecar data plane, not ambient';

/** Ambient/HBONE extension types by name → the feature they are. */
const AMBIENT_TYPES: Readonly<Record<string, string>> = {
  'envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport': 'internal_upstream (ambient/HBONE)',
  'envoy.extensions.filters.http.set_filter_state.v3.Config': 'set_filter_state (ambient/HBONE)',
  'envoy.extensions.filters.network.set_filter_state.v3.Config': 'set_filter_state (ambient/HBONE)',
  'envoy.extensions.filters.listener.set_filter_state.v3.Config': 'set_filter_state (ambient/HBONE)',
  'io.istio.http.connect_authority.Config': 'HBONE connect authority (ambient)',
  'io.istio.http.connect_baggage.Config': 'HBONE connect baggage (ambient)',
  'envoy.extensions.filters.network.connect_authority.v3.Config': 'HBONE connect authority (ambient)',
  'istio.set_internal_dst_address.v1.Config': 'set_internal_dst_address (ambient/HBONE internal listeners)',
};

/** The ambient feature a type belongs to, or undefined. */
export function ambientFeature(type: string): string | undefined {
  return AMBIENT_TYPES[type];
}

export const AMBIENT_REASON = SIDECAR_ONLY;

/** A TypedStruct's inner type (after the last `/` of its type_url). */
export function innerTypeName(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

/** "<feature> is not supported: meshlet implements the sidecar data plane, not ambient" for an ambient type, else undefined. */
export function ambientMessage(type: string, detail: string): string | undefined {
  const amb = AMBIENT_TYPES[type];
  return amb ? `${amb} is not supported: ${SIDECAR_ONLY} (${detail})` : undefined;
}

const TYPED_STRUCTS = new Set(['udpa.type.v1.TypedStruct', 'xds.type.v3.TypedStruct']);

/**
 * The error for an extension of `type` no decoder takes, at `@type` of its typed_config:
 * `unsupported <what> type <type>`, with the ambient feature or a TypedStruct's inner type URL.
 */
export function reportUnsupportedType(tc: { type: string; reader: Reader }, what: string): void {
  const r = tc.reader;
  const ambient = AMBIENT_TYPES[tc.type];
  if (ambient) {
    r.issues.error(r.sub('@type'), `${ambient} is not supported: ${SIDECAR_ONLY} (${what} type ${tc.type})`);
    return;
  }
  if (TYPED_STRUCTS.has(tc.type)) {
    const inner = r.str('type_url', '');
    r.ignore('value');
    const slash = inner.lastIndexOf('/');
    const innerType = slash >= 0 ? inner.slice(slash + 1) : inner;
    const amb = AMBIENT_TYPES[innerType];
    r.issues.error(
      r.sub('@type'),
      amb
        ? `${amb} is not supported: ${SIDECAR_ONLY} (${what} type ${tc.type} with type_url ${inner})`
        : `unsupported ${what} type ${tc.type} with type_url ${inner || '(none)'}`,
    );
    return;
  }
  r.issues.error(r.sub('@type'), `unsupported ${what} type ${tc.type}`);
}
