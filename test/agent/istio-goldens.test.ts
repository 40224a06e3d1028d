/**
 * Every bootstrap golden of istio/istio (pkg/bootstrap/testdata/*_golden.json, the list the search
 * tool finds), rebuilt from its shape (istio-bootstrap-shape.ts), starts a real meshlet: the
 * bootstrap decodes without errors, its warnings are listed, the ADS stream reaches istio-agent's
 * XDS socket (a real gRPC server on a Unix socket here) through the `xds-grpc` pipe cluster, and
 * the 15090 stats listener serves /stats/prometheus through the `prometheus_stats` cluster,
 * compressed by the compressors Istio puts there (gzip or brotli; Istio's current template has
 * brotli, zstd and gzip, and on a Node without zstd in node:zlib that one filter is left out with a
 * warning; a lone zstd compressor is left out the same way). The Datadog, Lightstep and
 * OpenCensus tracers are warnings.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { TYPE_URLS } from '../../xds-client/protos';
import { createRegistries } from '../../proxy/registry';
import { type StartedMeshlet, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { ScriptedAdsServer } from '../support/scripted-ads-server';
import { compressionOf, ISTIO_GOLDENS, istioBootstrap, type IstioBootstrapShape, type ShapePorts } from './istio-bootstrap-shape';
import { getText } from '../support/upstreams';

const tmp = mkdtempSync(join(tmpdir(), 'meshlet-goldens-'));
let ads: ScriptedAdsServer;
let answering = true;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * The bootstrap on fresh ports, started. The admin port is picked free and then bound by meshlet
 * (the prometheus_stats cluster must name it, so it cannot be 0): under the parallel suite another
 * test can take it in between, so on EADDRINUSE the shape is started again on new ports.
 */
async function startOnFreePorts(shape: IstioBootstrapShape): Promise<{ m: StartedMeshlet; streams: number }> {
  for (let attempt = 1; ; attempt++) {
    const raw = istioBootstrap(shape, await shapePorts(shape));
    const streams = ads.streamCount;
    try {
      return { m: await startMeshlet(raw), streams };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      if (attempt >= 5 || !/EADDRINUSE/.test(code)) throw err;
      console.log(`${shape.golden}: admin port taken meanwhile (${code}), starting again on new ports`);
    }
  }
}

async function shapePorts(shape: IstioBootstrapShape): Promise<ShapePorts> {
  return {
    admin: await freePort(),
    stats: 0,
    ready: 0,
    agent: await freePort(),
    xdsPath: join(tmp, 'XDS'),
    sdsPath: join(tmp, 'sds.sock'),
    adminPath: join(tmp, `admin-${shape.golden}.sock`),
  };
}

/** Answer every first CDS/LDS request (SotW or delta) with an empty set, as istiod does for a bare node. */
async function answerLoop(): Promise<void> {
  let n = 0;
  while (answering) {
    let r;
    try {
      r = await ads.next(60_000);
    } catch {
      continue;
    }
    const req = r.req as { type_url?: string; response_nonce?: string; resource_names_subscribe?: string[] };
    if (req.response_nonce || (req.type_url !== TYPE_URLS.cluster && req.type_url !== TYPE_URLS.listener)) continue;
    n++;
    try {
      if ('resource_names_subscribe' in req)
        ads.sendDelta({ type_url: req.type_url, system_version_info: '1', nonce: `d${n}`, resources: [] });
      else ads.send({ type_url: req.type_url, version_info: '1', nonce: `s${n}`, resources: [] });
    } catch {
      // the stream went away with its meshlet
    }
  }
}

beforeAll(async () => {
  ads = await ScriptedAdsServer.start(`unix:${join(tmp, 'XDS')}`);
  void answerLoop();
});

afterAll(async () => {
  answering = false;
  await stopAllMeshlets();
  ads.stop();
  rmSync(tmp, { recursive: true, force: true });
});


const NODE_HAS_ZSTD = typeof (zlib as unknown as Record<string, unknown>).createZstdCompress === 'function';
const tracerWarning = (t: string) => `tracer envoy.config.trace.v3.${t} is not implemented by meshlet; requests are not traced`;

describe("Istio's bootstrap goldens", () => {
  it('lists all the goldens the search tool finds in pkg/bootstrap/testdata', () => {
    expect(ISTIO_GOLDENS).toHaveLength(49);
    expect(new Set(ISTIO_GOLDENS.map((g) => g.golden)).size).toBe(49);
  });

  it.each(ISTIO_GOLDENS.map((g) => [g.golden, g] as const))('%s_golden.json starts meshlet', async (_name, shape) => {
    const raw = istioBootstrap(shape, await shapePorts(shape));
    const { warnings } = decodeBootstrap(raw, { httpFilters: createRegistries().httpFilters });
    const lines = warnings.map((w) => `${w.path}: ${w.message}`);
    console.log(`${shape.golden}_golden.json: ${lines.length} warnings\n  ${lines.join('\n  ')}`);
    const compression = compressionOf(shape);
    // Istio's current three compressors: on a Node without zstd its filter alone is left out, warned.
    const zstdLeftOut = warnings.filter((w) => /zstd needs node:zlib zstd support .*this compressor filter is left out/.test(w.message));
    expect(zstdLeftOut).toHaveLength((compression === 'istio' || compression === 'zstd') && !NODE_HAS_ZSTD ? 1 : 0);
    const messages = warnings.filter((w) => !zstdLeftOut.includes(w)).map((w) => w.message);
    expect(messages.join('\n')).not.toMatch(/compress/i);
    if (shape.tracer === 'datadog') expect(messages).toContain(tracerWarning('DatadogConfig'));
    if (shape.tracer === 'lightstep') expect(messages).toContain(tracerWarning('LightstepConfig'));
    if (shape.tracer === 'opencensusagent' || shape.tracer === 'stackdriver') expect(messages).toContain(tracerWarning('OpenCensusConfig'));

    const { m, streams } = await startOnFreePorts(shape);
    // The ADS stream went to istio-agent's socket through the xds-grpc pipe cluster.
    await ads.waitForStream(streams + 1);
    expect(ads.metadata[streams]).toBeDefined();
    if (!shape.adminPipe) {
      const stats = await getText(m.listenerPort('0.0.0.0_15090'), '/stats/prometheus');
      expect(stats.status).toBe(200);
      expect(stats.body).toContain('# TYPE envoy_server_uptime');
      if (compression === 'istio') {
        // fetch() decodes br and gzip itself; zstd where node:zlib has it, else uncompressed.
        for (const enc of ['br', 'gzip']) {
          const r = await fetch(`http://127.0.0.1:${m.listenerPort('0.0.0.0_15090')}/stats/prometheus`, { headers: { 'accept-encoding': enc } });
          expect(r.headers.get('content-encoding')).toBe(enc);
          expect(await r.text()).toContain('# TYPE envoy_server_uptime');
        }
        const z = await fetch(`http://127.0.0.1:${m.listenerPort('0.0.0.0_15090')}/stats/prometheus`, { headers: { 'accept-encoding': 'zstd' } });
        expect(z.headers.get('content-encoding')).toBe(NODE_HAS_ZSTD ? 'zstd' : null);
        await z.arrayBuffer();
      }
      if (shape.compression === 'gzip' || shape.compression === 'brotli') {
        // fetch() decodes gzip and br itself.
        const enc = shape.compression === 'gzip' ? 'gzip' : 'br';
        const r = await fetch(`http://127.0.0.1:${m.listenerPort('0.0.0.0_15090')}/stats/prometheus`, { headers: { 'accept-encoding': enc } });
        expect(r.headers.get('content-encoding')).toBe(enc);
        expect(await r.text()).toContain('# TYPE envoy_server_uptime');
      }
    }
    await m.server.close();
  });
});
