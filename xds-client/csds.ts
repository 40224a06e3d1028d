/**
 * Envoy's Client Status Discovery Service (envoy.service.status.v3.ClientStatusDiscoveryService):
 * the service definition, loaded from the csds.proto that @grpc/grpc-js-xds ships (nothing is
 * copied), the message shapes meshlet reads and writes, and the per-type status rule shared by
 * every CSDS answer meshlet gives.
 *
 * Loaded on first use only (a control plane or proxy that serves CSDS, or `meshlet proxy-status`).
 */
import type * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { MeshletError } from '../common/errors';
import { PROTO_LOADER_OPTIONS } from './protos';

export const CSDS_SERVICE = 'envoy.service.status.v3.ClientStatusDiscoveryService';

/** envoy.service.status.v3.ConfigStatus (enum names; PROTO_LOADER_OPTIONS keeps enums as names). */
export type ConfigStatus = 'UNKNOWN' | 'SYNCED' | 'NOT_SENT' | 'STALE' | 'ERROR';

export interface GenericXdsConfigProto {
  type_url: string;
  name?: string;
  version_info?: string;
  last_updated?: { seconds: string; nanos: number };
  config_status?: ConfigStatus;
  client_status?: 'UNKNOWN' | 'REQUESTED' | 'DOES_NOT_EXIST' | 'ACKED' | 'NACKED' | 'RECEIVED_ERROR' | 'TIMEOUT';
  error_state?: { details?: string; version_info?: string; last_update_attempt?: { seconds: string; nanos: number } };
  is_static_resource?: boolean;
}

export interface ClientConfigProto {
  node?: { id?: string; cluster?: string };
  generic_xds_configs?: GenericXdsConfigProto[];
  client_scope?: string;
}

export interface ClientStatusRequestProto {
  node_matchers?: unknown[];
  node?: { id?: string };
  exclude_resource_contents?: boolean;
}

export interface ClientStatusResponseProto {
  config?: ClientConfigProto[];
}

let definition: protoLoader.PackageDefinition | undefined;

function csdsPackage(): protoLoader.PackageDefinition {
  definition ??= (require('@grpc/proto-loader') as typeof protoLoader).loadSync(['envoy/service/status/v3/csds.proto'], PROTO_LOADER_OPTIONS);
  return definition;
}

export function csdsServiceDefinition(): grpc.ServiceDefinition {
  const def = csdsPackage()[CSDS_SERVICE];
  if (!def || 'format' in def) throw new MeshletError('MESHLET_ERR_INTERNAL', `protos: ${CSDS_SERVICE} is not a service`);
  return def as unknown as grpc.ServiceDefinition;
}

/**
 * The status of one type on one stream, istiod's rule: NOT_SENT before any response, ERROR when
 * the last answer to a response was a NACK, SYNCED when the last sent version was ACKed, STALE
 * when a response is still unanswered.
 */
export function configStatus(t: { sentVersion?: string; ackedVersion?: string; nackedVersion?: string; lastError?: string }): ConfigStatus {
  if (t.sentVersion === undefined) return 'NOT_SENT';
  if (t.lastError !== undefined && t.nackedVersion === t.sentVersion) return 'ERROR';
  if (t.ackedVersion === t.sentVersion) return 'SYNCED';
  return 'STALE';
}

export function timestamp(ms: number): { seconds: string; nanos: number } {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

/** Handlers answering FetchClientStatus and StreamClientStatus from one snapshot function. */
export function csdsHandlers(snapshot: (req: ClientStatusRequestProto) => ClientConfigProto[]): grpc.UntypedServiceImplementation {
  return {
    FetchClientStatus: (call: grpc.ServerUnaryCall<ClientStatusRequestProto, ClientStatusResponseProto>, cb: grpc.sendUnaryData<ClientStatusResponseProto>) => {
      try {
        cb(null, { config: snapshot(call.request) });
      } catch (err) {
        cb({ code: 13, details: (err as Error).message } as grpc.ServiceError);
      }
    },
    StreamClientStatus: (call: grpc.ServerDuplexStream<ClientStatusRequestProto, ClientStatusResponseProto>) => {
      call.on('data', (req: ClientStatusRequestProto) => call.write({ config: snapshot(req) }));
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
  };
}

/** Whether a request's node (by id) selects this client; no node = every client. */
export function selects(req: ClientStatusRequestProto, nodeId: string | undefined): boolean {
  const want = req.node?.id;
  return !want || want === nodeId;
}
