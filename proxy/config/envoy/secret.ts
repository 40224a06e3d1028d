/**
 * Decoder for envoy.extensions.transport_sockets.tls.v3.Secret (static_resources.secrets and SDS):
 * a tls_certificate or a validation_context. session_ticket_keys and generic_secret are
 * reported as unsupported.
 */
import type { Reader } from '../../../common/reader';
import type { SecretConfig } from '../types';
import type { DecodeContext } from './context';
import { decodeTlsCertificate, decodeValidationContext } from './tls';

export function decodeSecretR(r: Reader, _ctx: DecodeContext): SecretConfig | undefined {
  const name = r.requiredStr('name');
  const which = r.oneof(['tls_certificate', 'validation_context', 'session_ticket_keys', 'generic_secret'] as const);
  let out: SecretConfig | undefined;
  if (which === undefined) {
    r.issues.error(r.path || '(root)', 'one of tls_certificate, validation_context must be set');
  } else if (which === 'tls_certificate') {
    const t = r.obj(which);
    const tlsCertificate = t ? decodeTlsCertificate(t) : undefined;
    if (tlsCertificate) out = { name, tlsCertificate };
  } else if (which === 'validation_context') {
    const v = r.obj(which);
    const validationContext = v ? decodeValidationContext(v) : undefined;
    if (validationContext) out = { name, validationContext };
  } else {
    r.error(which, 'is not supported by meshlet');
  }
  r.done();
  return name ? out : undefined;
}
