/**
 * RouteAction.request_mirror_policies (envoy.config.route.v3.RouteAction.RequestMirrorPolicy):
 * the shadow cluster (`cluster`, or the cluster named by the request's `cluster_header`), the
 * share of requests mirrored (`runtime_fraction`, read from the runtime under its key; all
 * requests when unset), `trace_sampled` and `disable_shadow_host_suffix_append`. Istio's
 * VirtualService `mirror` / `mirrorPercentage` generate it.
 */
import type { Reader } from '../../../common/reader';
import type { RequestMirrorPolicy } from '../types';
import { checkClusterRef, type DecodeContext } from './context';
import { headerName } from './matchers';
import { decodeRuntimeFraction } from './runtime';

const ALL = { numerator: 100, denominator: 'HUNDRED' } as const;

export function decodeMirrorPolicies(r: Reader, ctx: DecodeContext): RequestMirrorPolicy[] | undefined {
  const list = r.arr('request_mirror_policies');
  if (list.length === 0) return undefined;
  const out: RequestMirrorPolicy[] = [];
  for (const m of list) {
    const which = m.oneof(['cluster', 'cluster_header'] as const);
    let cluster: string | undefined;
    let clusterHeader: string | undefined;
    if (which === undefined) m.issues.error(m.path, 'one of cluster, cluster_header must be set');
    else if (which === 'cluster') {
      cluster = m.requiredStr('cluster');
      if (ctx.validateRouteClusters) checkClusterRef(ctx, (msg) => m.error('cluster', msg), cluster);
    } else clusterHeader = headerName(m, 'cluster_header');
    const runtimeFraction = m.has('runtime_fraction') ? decodeRuntimeFraction(m, 'runtime_fraction', ALL) : undefined;
    const traceSampled = m.has('trace_sampled') ? m.bool('trace_sampled', true) : undefined;
    const disableShadowHostSuffixAppend = m.bool('disable_shadow_host_suffix_append', false);
    m.done();
    if (cluster === undefined && clusterHeader === undefined) continue;
    out.push({
      ...(cluster !== undefined ? { cluster } : {}),
      ...(clusterHeader !== undefined ? { clusterHeader } : {}),
      ...(runtimeFraction !== undefined ? { runtimeFraction } : {}),
      ...(traceSampled !== undefined ? { traceSampled } : {}),
      disableShadowHostSuffixAppend,
    });
  }
  return out.length > 0 ? out : undefined;
}
