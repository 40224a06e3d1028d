/**
 * RBAC `filter_state` principals as istiod writes them for an AuthorizationPolicy
 * (io.istio.peer_principal / io.istio.local_principal with a string_match), decoded by the real
 * decoder and evaluated by the real engine against mTLS and plaintext connections.
 */
import { describe, expect, it } from 'vitest';
import { Issues, Reader } from '../../common/reader';
import { decodePrincipal } from '../../proxy/config/envoy';
import { principalMatches } from '../../proxy/authz/engine';
import type { Socket } from 'node:net';
import type { DownstreamConnectionInfo } from '../../proxy/http/codec';
import { IstioAuthnFilter } from '../../proxy/listeners/istio-network-filters';

function principal(raw: unknown) {
  const issues = new Issues();
  const p = decodePrincipal(Reader.of(raw, '', issues)!);
  return { p, errors: issues.errors };
}

/** A connection after the istio_authn network filter ran on it (the real filter). */
const conn = (tls?: DownstreamConnectionInfo['tls']): DownstreamConnectionInfo => {
  const info = { id: 1, remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2, ...(tls ? { tls } : {}) } as DownstreamConnectionInfo;
  new IstioAuthnFilter().onNewConnection(undefined as unknown as Socket, info);
  return info;
};

const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';
const PEER_CERT = { peerCertificateHash: 'ab' };
const mtls = conn({ ...PEER_CERT, peerPrincipal: SLEEP, peerUriSans: [SLEEP], localPrincipal: 'spiffe://cluster.local/ns/default/sa/productpage' } as DownstreamConnectionInfo['tls']);

describe('RBAC filter_state principals (Istio AuthorizationPolicy)', () => {
  it('matches the mTLS peer and local SPIFFE IDs; a plaintext connection matches nothing', () => {
    const { p, errors } = principal({ filter_state: { key: 'io.istio.peer_principal', string_match: { exact: SLEEP } } });
    expect(errors).toEqual([]);
    expect(principalMatches(p!, { connection: mtls, head: undefined })).toBe(true);
    expect(principalMatches(p!, { connection: conn(), head: undefined })).toBe(false);
    // The same mTLS connection on a chain without istio_authn has no filter state: no match (Envoy).
    const withoutAuthn = { ...mtls, filterState: undefined };
    expect(principalMatches(p!, { connection: withoutAuthn, head: undefined })).toBe(false);
    // A peer that presented no certificate gets no principals even over TLS (Istio).
    expect(conn({ localPrincipal: 'spiffe://cluster.local/ns/default/sa/productpage' } as DownstreamConnectionInfo['tls']).filterState).toBeUndefined();
    const other = conn({ ...PEER_CERT, peerUriSans: ['spiffe://cluster.local/ns/test/sa/x'] } as DownstreamConnectionInfo['tls']);
    expect(principalMatches(p!, { connection: other, head: undefined })).toBe(false);
    const ns = principal({ filter_state: { key: 'io.istio.peer_principal', string_match: { safe_regex: { regex: '.*/ns/test/.*' } } } }).p!;
    expect(principalMatches(ns, { connection: other, head: undefined })).toBe(true);
    expect(principalMatches(ns, { connection: mtls, head: undefined })).toBe(false);
    const local = principal({ filter_state: { key: 'io.istio.local_principal', string_match: { suffix: '/sa/productpage' } } }).p!;
    expect(principalMatches(local, { connection: mtls, head: undefined })).toBe(true);
  });

  it('rejects other keys and present_match with their paths', () => {
    expect(principal({ filter_state: { key: 'io.istio.other', string_match: { exact: 'x' } } }).errors).toEqual([
      { path: 'filter_state.key', message: 'filter state key "io.istio.other" is not supported (meshlet provides io.istio.peer_principal and io.istio.local_principal)' },
    ]);
    expect(principal({ filter_state: { key: 'io.istio.peer_principal', present_match: true } }).errors.map((e) => e.path)).toEqual([
      'filter_state.string_match',
      'filter_state.present_match',
    ]);
  });
});
