/**
 * Mesh → per-node Envoy v3 resources, in proto3 JSON form with "@type" (exactly what an Envoy user
 * would write in YAML), ready for xds-client/proto-json's `jsonToAny`.
 *
 * Owns the translation only; it is pure (same mesh and workload → same JSON, in a stable key
 * order, so the server can version resources by content hash). Names follow Istio:
 *  - outbound listeners `<outbound_ip>_<port>` (HCM with RDS route `<port>`, or tcp_proxy);
 *  - route configurations `<port>`, one virtual host per service `<host>:<port>`;
 *  - clusters `outbound|<port>|<subset>|<host>` (EDS, subset per version) and
 *    `inbound|<target port>||` (STATIC, the local app);
 *  - ClusterLoadAssignments named like their EDS clusters, endpoints = peers' sidecar inbound ports;
 *  - the inbound listener `inbound_<ip>_<inbound port>` (mTLS required, RBAC, then the local app;
 *    with `mtls: PERMISSIVE`, tls_inspector plus a `raw_buffer` chain per port for plaintext);
 *  - secrets `default` (workload identity) and `ROOTCA` (trust bundle), built by `secretResources`;
 *  - with `capture: iptables` (pods captured by `meshlet iptables`): outbound listeners become
 *    virtual `0.0.0.0_<port>` (bind_to_port: false) behind `virtualOutbound` on 0.0.0.0:15001
 *    (use_original_dst; PassthroughCluster or BlackHoleCluster per outbound_traffic_policy), the
 *    inbound listener is `virtualInbound` on 0.0.0.0:15006 with chains by original destination
 *    port and delivery from 127.0.0.6, and peers dial the workload at its app ports;
 *  - with `explicit_proxy_port` (no capture): `explicit_proxy_<ip>_<port>`, the app's HTTP proxy
 *    (absolute-form and CONNECT to every service by name, PassthroughCluster for the rest).
 * Leans Istio-compatible: default retry policy, LEAST_REQUEST, 10 s connect timeout, SNI
 * `outbound_.<port>_.<subset>_.<host>`, SAN verification against the destination's service accounts.
 *
 * This file assembles a node's resources and its secrets; the outbound side is
 * generate-outbound.ts, the inbound side generate-inbound.ts, and the names, type URLs and small
 * builders they share are generate-shared.ts.
 */
import type { Mesh, MeshService, MeshWorkload, ServicePort } from './mesh';
import { inboundResources } from './generate-inbound';
import {
  explicitProxyResources,
  loadAssignment,
  outboundCluster,
  outboundListener,
  routeConfiguration,
  versionsOf,
  virtualOutboundResources,
} from './generate-outbound';
import { captured, IDENTITY_SECRET, isHttp, type NodeResources, type ResourceJson, ROOT_SECRET, T } from './generate-shared';

/** Every xDS resource (except secrets) for workload `w`: LDS, RDS, CDS and EDS. */
export function generateForWorkload(mesh: Mesh, w: MeshWorkload): NodeResources {
  const out: NodeResources = new Map([
    [T.listener, new Map()],
    [T.route, new Map()],
    [T.cluster, new Map()],
    [T.endpoint, new Map()],
  ]);
  const byPort = new Map<number, [MeshService, ServicePort][]>();
  for (const s of mesh.services) {
    for (const p of s.ports) {
      byPort.set(p.port, [...(byPort.get(p.port) ?? []), [s, p]]);
      for (const subset of ['', ...versionsOf(mesh, s)]) {
        const c = outboundCluster(mesh, s, p, subset);
        out.get(T.cluster)!.set(c.name!, c);
        out.get(T.endpoint)!.set(c.name!, loadAssignment(mesh, s, p, subset));
      }
    }
  }
  for (const [port, services] of [...byPort].sort((a, b) => a[0] - b[0])) {
    const l = outboundListener(mesh, w, port, services);
    out.get(T.listener)!.set(l.name!, l);
    if (isHttp(services[0]![1])) out.get(T.route)!.set(String(port), routeConfiguration(mesh, port, services));
  }
  inboundResources(mesh, w, out);
  if (captured(w)) virtualOutboundResources(mesh, w, out);
  else if (w.explicitProxyPort !== undefined) explicitProxyResources(mesh, w, out);
  return out;
}

/**
 * The `ROOTCA` (trust bundle) Secret and, only when the control plane hands out keys (local
 * development), the `default` identity Secret with its private key.
 */
export function secretResources(
  identity: { certChainPem: string; privateKeyPem: string } | undefined,
  trustBundlePem: string,
): Map<string, ResourceJson> {
  const out = new Map<string, ResourceJson>();
  if (identity) {
    out.set(IDENTITY_SECRET, {
      '@type': T.secret,
      name: IDENTITY_SECRET,
      tls_certificate: {
        certificate_chain: { inline_string: identity.certChainPem },
        private_key: { inline_string: identity.privateKeyPem },
      },
    });
  }
  out.set(ROOT_SECRET, { '@type': T.secret, name: ROOT_SECRET, validation_context: { trusted_ca: { inline_string: trustBundlePem } } });
  return out;
}
