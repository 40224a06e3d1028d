/**
 * Decoder of the network ext_authz filter, `envoy.extensions.filters.network.ext_authz.v3.ExtAuthz`
 * (the runtime side is proxy/listeners/network-ext-authz.ts). Its fields are in docs/filters.md.
 */
import type { Reader } from '../../../common/reader';
import type { NetworkExtAuthzConfig } from '../types';
import { decodeMetadataMatcher } from '../envoy/metadata-matcher';
import { checkTransportApiVersion, decodeGrpcServiceField } from './grpc-service';

export const NETWORK_EXT_AUTHZ_TYPE_NAME = 'envoy.extensions.filters.network.ext_authz.v3.ExtAuthz';

/** Decode the network ExtAuthz typed_config (control plane). */
export function decodeNetworkExtAuthz(r: Reader): NetworkExtAuthzConfig | undefined {
  const statPrefix = r.requiredStr('stat_prefix');
  if (!r.has('grpc_service')) r.error('grpc_service', 'is required');
  const grpcService = decodeGrpcServiceField(r);
  checkTransportApiVersion(r);
  const failureModeAllow = r.bool('failure_mode_allow', false);
  const includePeerCertificate = r.bool('include_peer_certificate', false);
  const fm = r.obj('filter_enabled_metadata');
  const filterEnabledMetadata = fm ? decodeMetadataMatcher(fm) : undefined;
  r.done();
  if (!grpcService) return undefined;
  return { statPrefix, grpcService, failureModeAllow, includePeerCertificate, ...(filterEnabledMetadata ? { filterEnabledMetadata } : {}) };
}
