/**
 * CSDS on the proxy (`meshlet proxy --csds-port N`): any CSDS client — `meshlet proxy-status
 * --xds 127.0.0.1:N`, or a control plane's own tooling — can ask the sidecar what it runs. One
 * ClientConfig for this node, one GenericXdsConfig per cached xDS resource: its version, when it
 * was applied, ACKED/NACKED, and for a NACKED one the error_state with the rejected version and
 * the reason meshlet sent back as error_detail. Resource contents are not included (the admin
 * /config_dump has them).
 */
import * as grpc from '@grpc/grpc-js';
import type { NodeInfo } from '../config/types';
import { type ClientConfigProto, csdsHandlers, csdsServiceDefinition, type GenericXdsConfigProto, selects, timestamp } from '../../xds-client/csds';
import type { XdsSnapshot } from '../../xds-client/snapshot';

function ts(iso: string | undefined): { seconds: string; nanos: number } | undefined {
  if (!iso) return undefined;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? timestamp(ms) : undefined;
}

/** This proxy's client status, from the xDS client's snapshot (undefined: static bootstrap). */
export function proxyClientConfig(node: NodeInfo, snap: XdsSnapshot | undefined): ClientConfigProto {
  const generic: GenericXdsConfigProto[] = [];
  for (const t of snap?.types ?? []) {
    for (const r of t.resources) {
      const err = r.error_state as { details?: string; version_info?: string; last_update_attempt?: string } | undefined;
      const nacked = r.client_status === 'NACKED' || err !== undefined;
      const last = ts(r.last_updated);
      const attempt = ts(err?.last_update_attempt);
      generic.push({
        type_url: t.type_url,
        name: r.name,
        ...(r.version_info ? { version_info: r.version_info } : {}),
        ...(last ? { last_updated: last } : {}),
        config_status: nacked ? 'ERROR' : r.client_status === 'ACKED' ? 'SYNCED' : 'STALE',
        client_status: r.client_status,
        ...(err ? { error_state: { details: err.details, version_info: err.version_info, ...(attempt ? { last_update_attempt: attempt } : {}) } } : {}),
      });
    }
  }
  return { node: { id: node.id, cluster: node.cluster }, generic_xds_configs: generic, client_scope: snap ? (snap.connected ? 'connected' : 'disconnected') : 'static' };
}

export interface CsdsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serve CSDS (plaintext gRPC; bind it to loopback unless the network is trusted). */
export async function serveCsds(host: string, port: number, status: () => ClientConfigProto): Promise<CsdsServer> {
  const server = new grpc.Server();
  server.addService(
    csdsServiceDefinition(),
    csdsHandlers((req) => {
      const c = status();
      return selects(req, c.node?.id) ? [c] : [];
    }),
  );
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000).unref();
      }),
  };
}
