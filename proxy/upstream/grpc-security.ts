/**
 * How a grpc-js channel to a cluster's host is secured, from the cluster's transport: gRPC side
 * calls (ext_authz, rate limit service) and gRPC health checks make their own connections, and
 * must speak the cluster's TLS like every other upstream connection.
 */
import type * as grpcNs from '@grpc/grpc-js';
import type { TransportSocketFactory } from './types';

let grpcMod: typeof grpcNs | undefined;
function grpcLib(): typeof grpcNs {
  return (grpcMod ??= require('@grpc/grpc-js') as typeof grpcNs);
}

/** A stable number per TLS context object: channels are keyed by it, so a rotation makes new ones. */
const contextIds = new WeakMap<object, number>();
let nextContextId = 1;
function contextId(o: object): number {
  let id = contextIds.get(o);
  if (id === undefined) contextIds.set(o, (id = nextContextId++));
  return id;
}

/**
 * grpc-js credentials for a cluster's transport: insecure for plain TCP; for a TLS transport
 * socket its own client context (certificate, trust bundle), SNI and SAN check, as every other
 * upstream connection of the cluster gets. Returns the channel-cache tag and channel options.
 */
export function grpcChannelSecurity(transport: TransportSocketFactory): {
  readonly credentials: grpcNs.ChannelCredentials;
  readonly tag: string;
  readonly options: grpcNs.ChannelOptions;
} {
  if (transport.clientTls === undefined) return { credentials: grpcLib().credentials.createInsecure(), tag: 'plain', options: {} };
  const t = transport.clientTls();
  const credentials = grpcLib().credentials.createFromSecureContext(t.secureContext, {
    checkServerIdentity: (_host, cert) => {
      const why = t.checkServer(cert);
      return why === undefined ? undefined : new Error(why);
    },
  });
  return {
    credentials,
    tag: `tls${contextId(t.secureContext)}`,
    options: t.servername !== undefined ? { 'grpc.ssl_target_name_override': t.servername } : {},
  };
}
