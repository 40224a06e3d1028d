/**
 * Access logs configured per listener with Envoy's `access_log` (file logger): the default is
 * Envoy's default text format (issue 15 bug 10: it used to be Istio's JSON); Istio's JSON
 * encoding, `json_format` and `text_format` use Envoy's command operators; TCP proxies log their
 * sessions. JSON records are parsed as JSON, text lines matched field by field.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileFormat } from '../../proxy/telemetry/access-log';
import {
  bootstrap,
  httpListener,
  routes,
  type StartedMeshlet,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
  tcpListener,
} from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho, startTcpEcho } from '../support/upstreams';
import { ISTIO_JSON_LOG_FORMAT, request } from './helpers';

const FILE_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog';

let dir: string;
let app: HttpEcho;
let m: StartedMeshlet;
let tcpPort: number;

function fileLog(path: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'envoy.access_loggers.file', typed_config: { '@type': FILE_LOG, path, ...extra } };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshlet-alog-'));
  app = await startHttpEcho('app', (req, res) => {
    if (req.url?.startsWith('/slow')) {
      setTimeout(() => res.writeHead(201, { 'content-type': 'text/plain' }).end('made'), 30);
      return true;
    }
  });
  const tcp = await startTcpEcho();
  tcpPort = tcp.port;
  const dead = await closedPort();
  m = await startMeshlet(
    bootstrap(
      [
        httpListener(
          'default_json',
          routes([
            { match: { prefix: '/dead' }, route: { cluster: 'dead' } },
            { match: { prefix: '/' }, route: { cluster: 'app' } },
          ]),
          {
            access_log: [fileLog(join(dir, 'istio.json'), { log_format: { json_format: ISTIO_JSON_LOG_FORMAT } })],
          },
        ),
        httpListener('default_text', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]), {
          access_log: [fileLog(join(dir, 'default.log'))],
        }),
        httpListener('custom', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]), {
          access_log: [
            fileLog(join(dir, 'custom.json'), {
              log_format: {
                json_format: {
                  code: '%RESPONSE_CODE%',
                  who: '%REQ(X-CALLER)%',
                  line: '%REQ(:METHOD)% %REQ(:PATH)%',
                  kind: 'edge',
                },
              },
            }),
            fileLog(join(dir, 'custom.txt'), {
              log_format: {
                text_format:
                  '[%START_TIME%] "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED%\n',
              },
            }),
          ],
        }),
        tcpListener('tcp', 'tcp-app', {
          access_log: [fileLog(join(dir, 'tcp.log'), { log_format: { json_format: ISTIO_JSON_LOG_FORMAT } })],
        }),
        tcpListener('tcp_text', 'tcp-app', { access_log: [fileLog(join(dir, 'tcp.txt'))] }),
      ],
      [staticCluster('app', [app.port]), staticCluster('dead', [dead]), staticCluster('tcp-app', [tcp.port])],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

/** The lines of a log file once it holds `n` of them (writes are asynchronous). */
async function lines(file: string, n: number): Promise<string[]> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const all = text.split('\n').filter((l) => l !== '');
    if (all.length >= n) return all;
    if (Date.now() > deadline) throw new Error(`${file}: expected ${n} lines, found ${all.length}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The JSON records of a log file once it holds `n` lines. */
async function records(file: string, n: number): Promise<Record<string, unknown>[]> {
  return (await lines(file, n)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** One line of Envoy's default text format, split into its fields (null if it is not one). */
const ENVOY_DEFAULT_LINE =
  /^\[(\S+)\] "(\S+) (\S+) (\S+)" (\d+) (\S+) (\d+) (\d+) (\d+) (\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)"$/;

describe('access logs', () => {
  it("writes Envoy's default text format when the access log has no log_format", async () => {
    const port = m.listenerPort('default_text');
    const r = await request(port, '/slow?q=1', {
      method: 'POST',
      body: 'hello',
      headers: { 'user-agent': 'alog-test', 'x-request-id': 'req-t', 'x-forwarded-for': '10.1.2.3', host: 'shop.example' },
    });
    expect(r.status).toBe(201);
    const [line] = await lines(join(dir, 'default.log'), 1);
    const f = ENVOY_DEFAULT_LINE.exec(line!);
    expect(f, line).not.toBeNull();
    const [, start, method, path, protocol, code, flags, rx, tx, duration, ust, xff, ua, rid, authority, host] = f!;
    expect(Number.isNaN(Date.parse(start!))).toBe(false);
    expect([method, path, protocol, code, flags, rx, tx]).toEqual(['POST', '/slow?q=1', 'HTTP/1.1', '201', '-', '5', '4']);
    expect(Number(duration)).toBeGreaterThanOrEqual(Number(ust));
    expect(xff).toContain('10.1.2.3');
    expect([ua, rid, authority, host]).toEqual(['alog-test', 'req-t', 'shop.example', `127.0.0.1:${app.port}`]);
  });

  it("writes Istio's JSON encoding when json_format asks for it", async () => {
    const port = m.listenerPort('default_json');
    const r = await request(port, '/slow?q=1', {
      method: 'POST',
      body: 'hello',
      headers: {
        'user-agent': 'alog-test',
        'x-request-id': 'req-1',
        'x-forwarded-for': '10.1.2.3',
        host: 'shop.example',
      },
    });
    expect(r.status).toBe(201);
    expect((await request(port, '/dead')).status).toBe(503);
    const [ok, failed] = await records(join(dir, 'istio.json'), 2);
    expect(ok).toMatchObject({
      method: 'POST',
      path: '/slow?q=1',
      protocol: 'HTTP/1.1',
      response_code: 201,
      response_flags: '-',
      bytes_received: 5,
      bytes_sent: 4,
      user_agent: 'alog-test',
      request_id: 'req-1',
      authority: 'shop.example',
      upstream_host: `127.0.0.1:${app.port}`,
      upstream_cluster: 'app',
      response_code_details: 'via_upstream',
    });
    expect(String(ok!.x_forwarded_for)).toContain('10.1.2.3');
    expect(Number.isNaN(Date.parse(String(ok!.start_time)))).toBe(false);
    expect(ok!.duration as number).toBeGreaterThanOrEqual(ok!.upstream_service_time as number);
    expect(typeof ok!.upstream_service_time).toBe('number');
    expect(ok!.downstream_peer_uri_san).toBeNull();
    expect(String(ok!.downstream_remote_address)).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(failed).toMatchObject({
      method: 'GET',
      path: '/dead',
      response_code: 503,
      response_flags: 'UF',
      upstream_cluster: 'dead',
    });
  });

  it('honours json_format and text_format with Envoy command operators', async () => {
    const port = m.listenerPort('custom');
    expect((await request(port, '/items/7', { headers: { 'x-caller': 'billing' } })).status).toBe(200);
    const [j] = await records(join(dir, 'custom.json'), 1);
    expect(j).toEqual({ code: 200, who: 'billing', line: 'GET /items/7', kind: 'edge' });
    const deadline = Date.now() + 5_000;
    let text = '';
    while (Date.now() < deadline && !text.includes('\n')) {
      text = existsSync(join(dir, 'custom.txt')) ? readFileSync(join(dir, 'custom.txt'), 'utf8') : '';
      await new Promise((r) => setTimeout(r, 20));
    }
    const m2 = /^\[(\S+)\] "GET \/items\/7 HTTP\/1\.1" 200 - 0\n$/.exec(text);
    expect(m2, text).not.toBeNull();
    expect(Number.isNaN(Date.parse(m2![1]!))).toBe(false);
  });

  it('logs TCP sessions with bytes and the upstream', async () => {
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(m.listenerPort('tcp'), '127.0.0.1');
      s.on('data', () => s.end());
      s.on('close', () => resolve());
      s.on('error', reject);
      s.write('abcdef');
    });
    const [rec] = await records(join(dir, 'tcp.log'), 1);
    expect(rec).toMatchObject({
      bytes_received: 6,
      bytes_sent: 6,
      upstream_cluster: 'tcp-app',
      response_flags: '-',
      method: null,
    });
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(m.listenerPort('tcp_text'), '127.0.0.1');
      s.on('data', () => s.end());
      s.on('close', () => resolve());
      s.on('error', reject);
      s.write('abc');
    });
    // Envoy's default format on a TCP proxy: no request, response code 0.
    const [line] = await lines(join(dir, 'tcp.txt'), 1);
    const f = ENVOY_DEFAULT_LINE.exec(line!);
    expect(f, line).not.toBeNull();
    expect(f!.slice(2, 9)).toEqual(['-', '-', '-', '0', '-', '3', '3']);
    expect(f![15]).toBe(`127.0.0.1:${tcpPort}`);
  });
});

describe('format compilation', () => {
  it('prints "-" for unknown operators and says so once', () => {
    const warnings: string[] = [];
    const f = compileFormat({ kind: 'text', text: '%NOT_A_THING% %RESPONSE_FLAGS%' }, (w) => warnings.push(w));
    expect(f({})).toBe('- -');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('NOT_A_THING');
  });

  it('omit_empty_values: empty operators print nothing in text and drop their keys in JSON', () => {
    const text = compileFormat({ kind: 'text', text: '[%ROUTE_NAME%] %RESPONSE_FLAGS%', omitEmptyValues: true });
    expect(text({})).toBe('[] -');
    const json = compileFormat({ kind: 'json', json: { route: '%ROUTE_NAME%', both: '%ROUTE_NAME%/%UPSTREAM_HOST%', k: 'v' }, omitEmptyValues: true });
    expect(JSON.parse(json({}))).toEqual({ both: '/', k: 'v' });
    const plain = compileFormat({ kind: 'json', json: { route: '%ROUTE_NAME%' } });
    expect(JSON.parse(plain({}))).toEqual({ route: null });
  });
});
