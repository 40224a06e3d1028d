/**
 * Probe rewriting as Istio's injector does it: an app container's `httpGet`, `tcpSocket` and
 * `grpc` probes would reach the inbound mTLS listener once traffic is captured, where the
 * kubelet's plain request fails. Each is moved to the agent port as an HTTP GET of
 * `/app-health/<container>/<livez|readyz|startupz>` and the original is handed to the sidecar in
 * `ISTIO_KUBE_APP_PROBERS`; the sidecar runs it from inside the pod (proxy/agent/app-probers.ts).
 * Timing fields (period, thresholds, initial delay) stay as they were.
 */

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

const SUFFIX = { livenessProbe: 'livez', readinessProbe: 'readyz', startupProbe: 'startupz' } as const;

/** The annotation that turns rewriting off for a pod (Istio's). */
export const REWRITE_PROBES_ANNOTATION = 'sidecar.istio.io/rewriteAppHTTPProbers';

/** A named port resolved against the container's ports; numbers pass through. */
function resolvePort(c: Obj, port: unknown): number | undefined {
  if (typeof port === 'number') return port;
  if (typeof port === 'string' && /^\d+$/.test(port)) return Number(port);
  const ports = Array.isArray(c.ports) ? (c.ports as unknown[]) : [];
  for (const p of ports) if (isObj(p) && p.name === port && typeof p.containerPort === 'number') return p.containerPort;
  return undefined;
}

/**
 * Rewrites the probes of the app containers in place; returns ISTIO_KUBE_APP_PROBERS (path →
 * original probe) and a warning per probe that could not be moved (a named port not found).
 */
export function rewriteAppProbes(containers: readonly Obj[], statusPort: number): { probers: Record<string, Obj>; warnings: string[] } {
  const probers: Record<string, Obj> = {};
  const warnings: string[] = [];
  for (const c of containers) {
    const name = typeof c.name === 'string' ? c.name : '';
    for (const key of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) {
      const probe = c[key];
      if (!isObj(probe)) continue;
      const path = `/app-health/${name}/${SUFFIX[key]}`;
      const timeout = typeof probe.timeoutSeconds === 'number' ? { timeoutSeconds: probe.timeoutSeconds } : {};
      let original: Obj | undefined;
      if (isObj(probe.httpGet)) {
        const g = probe.httpGet;
        const port = resolvePort(c, g.port);
        if (port === undefined) {
          warnings.push(`container ${name} ${key}: port ${JSON.stringify(g.port)} is not one of its ports; probe left as it was`);
          continue;
        }
        original = { httpGet: { ...g, port }, ...timeout };
      } else if (isObj(probe.tcpSocket)) {
        const port = resolvePort(c, probe.tcpSocket.port);
        if (port === undefined) {
          warnings.push(`container ${name} ${key}: port ${JSON.stringify(probe.tcpSocket.port)} is not one of its ports; probe left as it was`);
          continue;
        }
        original = { tcpSocket: { ...probe.tcpSocket, port }, ...timeout };
      } else if (isObj(probe.grpc)) {
        original = { grpc: probe.grpc, ...timeout };
      }
      if (!original) continue; // exec probes run in the container: nothing to move
      probers[path] = original;
      const rest: Obj = { ...probe };
      delete rest.httpGet;
      delete rest.tcpSocket;
      delete rest.grpc;
      c[key] = { ...rest, httpGet: { path, port: statusPort, scheme: 'HTTP' } };
    }
  }
  return { probers, warnings };
}
