/**
 * CSDS on the embedded control plane: `FetchClientStatus` / `StreamClientStatus` answer, per
 * connected sidecar (one ADS stream each), one GenericXdsConfig per resource type it subscribed
 * to: `version_info` is the version the sidecar ACKed (what it runs), `config_status` compares it
 * with what was last sent (SYNCED / STALE / NOT_SENT, ERROR after a NACK, whose `error_state`
 * carries the rejected version and the sidecar's error_detail). `meshlet proxy-status` and any
 * CSDS client read it.
 */
import type { ClientConfigProto, ClientStatusRequestProto, GenericXdsConfigProto } from '../xds-client/csds';
import { configStatus, selects } from '../xds-client/csds';
import type { TypeStatus } from './ads-stream';

export interface StreamStatusLike {
  readonly nodeId?: string;
  readonly workload?: string;
  readonly protocol: string;
  readonly types: Readonly<Record<string, TypeStatus>>;
}

/** One ClientConfig per stream whose node the request selects (all when it names none). */
export function clientConfigs(streams: readonly StreamStatusLike[], req: ClientStatusRequestProto): ClientConfigProto[] {
  const out: ClientConfigProto[] = [];
  for (const s of streams) {
    if (s.nodeId === undefined || !selects(req, s.nodeId)) continue;
    const generic: GenericXdsConfigProto[] = [];
    for (const [typeUrl, t] of Object.entries(s.types)) {
      const status = configStatus(t);
      generic.push({
        type_url: typeUrl,
        ...(t.ackedVersion !== undefined ? { version_info: t.ackedVersion } : {}),
        config_status: status,
        client_status: status === 'ERROR' ? 'NACKED' : status === 'SYNCED' ? 'ACKED' : 'REQUESTED',
        ...(status === 'ERROR' ? { error_state: { details: t.lastError, version_info: t.nackedVersion } } : {}),
      });
    }
    out.push({ node: { id: s.nodeId, ...(s.workload ? { cluster: s.workload } : {}) }, generic_xds_configs: generic, client_scope: s.protocol });
  }
  return out;
}
