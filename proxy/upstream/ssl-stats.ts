/**
 * Envoy's per-context TLS counters (`ssl.*`), kept per listener (`listener.<address>.ssl.*`) and
 * per cluster (`cluster.<name>.ssl.*`): the TLS code counts into the object its listener or
 * cluster owns; stats sources read them at scrape time.
 *
 * - handshake: handshakes that completed and passed every check;
 * - connection_error: every handshake that failed, whatever the reason (timeouts included);
 * - fail_verify_error: the peer's chain did not verify (unknown CA, expired, not yet valid…);
 * - fail_verify_san: the chain verified but no SAN matched match_typed_subject_alt_names;
 * - fail_verify_no_cert: a client certificate was required and none was presented.
 */
export class SslStats {
  handshake = 0;
  connectionError = 0;
  failVerifyError = 0;
  failVerifySan = 0;
  failVerifyNoCert = 0;
}

/** Envoy stat name (after `ssl.`) → SslStats field, in exposition order. */
export const SSL_COUNTERS = [
  ['ssl.connection_error', 'connectionError'],
  ['ssl.handshake', 'handshake'],
  ['ssl.fail_verify_error', 'failVerifyError'],
  ['ssl.fail_verify_san', 'failVerifySan'],
  ['ssl.fail_verify_no_cert', 'failVerifyNoCert'],
] as const;
