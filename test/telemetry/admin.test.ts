/**
 * The admin API paths this issue completes, against a running meshlet: run-time log levels per
 * component (POST /logging), /drain_listeners?inboundonly, readiness before the initial xDS
 * configuration (/ready and /healthz/ready), /config_dump?resource= and ?include_eds, /certs, and
 * the index listing telemetry's paths.
 */
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { logger, setLogLevel } from '../../common/logger';
import { adsBootstrap } from '../support/mesh';
import {
  bootstrap,
  httpListener,
  routes,
  type StartedMeshlet,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
} from '../support/meshlet';
import { closeAll, closedPort, startHttpEcho } from '../support/upstreams';
import { request } from './helpers';

let m: StartedMeshlet;

beforeAll(async () => {
  const app = await startHttpEcho('app');
  m = await startMeshlet(
    bootstrap(
      [
        {
          ...httpListener('inbound_l', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }])),
          traffic_direction: 'INBOUND',
        },
        {
          ...httpListener('outbound_l', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }])),
          traffic_direction: 'OUTBOUND',
        },
      ],
      [staticCluster('app', [app.port])],
    ),
  );
});

afterAll(async () => {
  setLogLevel(process.env.MESHLET_LOG_LEVEL ?? 'info');
  await stopAllMeshlets();
  await closeAll();
});

afterEach(() => {
  setLogLevel(process.env.MESHLET_LOG_LEVEL ?? 'info');
});

const post = (path: string) => request(m.adminPort, path, { method: 'POST' });

describe('POST /logging', () => {
  it('changes every component, or one, at run time', async () => {
    expect((await request(m.adminPort, '/logging?level=debug')).status).toBe(405);
    const all = await post('/logging?level=warn');
    expect(all.status).toBe(200);
    expect(all.body).toContain('hcm: warn');
    expect(logger('hcm').level).toBe('warn');
    expect(logger('router').level).toBe('warn');
    const one = await post('/logging?hcm=debug');
    expect(one.status).toBe(200);
    expect(logger('hcm').level).toBe('debug');
    expect(logger('hcm').isLevelEnabled('debug')).toBe(true);
    expect(logger('router').level).toBe('warn');
    const bad = await post('/logging?level=loud');
    expect(bad.status).toBe(400);
    expect(bad.body).toContain('invalid log level "loud"');
    expect(logger('router').level).toBe('warn');
  });
});

describe('admin paths', () => {
  it('lists the telemetry endpoints on the index page', async () => {
    const r = await request(m.adminPort, '/');
    for (const p of ['/stats', '/stats/prometheus', '/reset_counters', '/ready', '/quitquitquit', '/drain_listeners'])
      expect(r.body).toContain(p);
  });

  it('/config_dump?resource= returns the elements with their own @type, and ?include_eds adds endpoints', async () => {
    const r = JSON.parse((await request(m.adminPort, '/config_dump?resource=static_clusters')).body) as {
      configs: Record<string, unknown>[];
    };
    expect(r.configs).toHaveLength(1);
    expect(r.configs[0]!['@type']).toBe('type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster');
    expect((r.configs[0]!.cluster as { name: string }).name).toBe('app');
    const plain = JSON.parse((await request(m.adminPort, '/config_dump')).body) as { configs: { '@type': string }[] };
    const eds = JSON.parse((await request(m.adminPort, '/config_dump?include_eds')).body) as {
      configs: { '@type': string }[];
    };
    const type = 'type.googleapis.com/envoy.admin.v3.EndpointsConfigDump';
    expect(plain.configs.map((c) => c['@type'])).not.toContain(type);
    expect(eds.configs.map((c) => c['@type'])).toContain(type);
  });

  it("/certs answers Envoy's shape", async () => {
    const r = await request(m.adminPort, '/certs');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ certificates: [] });
  });

  it('/drain_listeners?inboundonly (not graceful) stops inbound at once and leaves outbound serving', async () => {
    const inPort = m.listenerPort('inbound_l');
    const outPort = m.listenerPort('outbound_l');
    expect((await request(inPort, '/')).status).toBe(200);
    expect((await post('/drain_listeners?inboundonly')).status).toBe(200);
    const err = await new Promise<string | undefined>((resolve) => {
      const s = net.connect(inPort, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(undefined);
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code));
    });
    expect(err).toBe('ECONNREFUSED');
    expect((await request(outPort, '/')).status).toBe(200);
  });
});

describe('readiness before the initial configuration', () => {
  it('answers 503 on /ready and /healthz/ready while xDS has not delivered', async () => {
    const cpPort = await closedPort();
    const d = await startMeshlet(adsBootstrap('waiting-v1', cpPort), {
      telemetry: { healthPort: 0, portsHost: '127.0.0.1' },
    });
    expect(d.server.state).toBe('INITIALIZING');
    const ready = await request(d.adminPort, '/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.trim()).toBe('INITIALIZING');
    expect((await request(d.server.telemetry.healthPort, '/healthz/ready')).status).toBe(503);
    const prom = await request(d.adminPort, '/stats/prometheus');
    expect(prom.body).toMatch(/^envoy_control_plane_connected_state 0$/m);
    expect(prom.body).toMatch(/^envoy_server_state 3$/m);
  });
});
