/**
 * Envoy's grpc-bridge example sandbox (envoyproxy/examples grpc-bridge): its client-side proxy (the
 * grpc_http1_bridge filter, HTTP/1.1 upstream) and server-side proxy (route `grpc: {}`, HTTP/2
 * upstream) in the shape of the example's two envoy-proxy.yaml files, addresses on loopback, in front
 * of a gRPC service with the example's kv.proto semantics; the client posts as the example's client.py.
 */
import { describe, expect, it } from 'vitest';
import { cluster, freePort, listener, rawPost, run } from './examples-support';

/** kv.proto's messages: every field is a string (field 1, 2) or a bool (SetResponse.ok, field 1). */
function pbStrings(fields: readonly (string | undefined)[]): Buffer {
  const parts: Buffer[] = [];
  fields.forEach((v, i) => {
    if (v === undefined) return;
    const b = Buffer.from(v);
    parts.push(Buffer.from([((i + 1) << 3) | 2, b.length]), b);
  });
  return Buffer.concat(parts);
}
function pbParse(b: Buffer): Map<number, Buffer | number> {
  const out = new Map<number, Buffer | number>();
  for (let i = 0; i < b.length; ) {
    const tag = b[i++]!;
    if ((tag & 7) === 0) out.set(tag >> 3, b[i++]!);
    else {
      const n = b[i++]!;
      out.set(tag >> 3, b.subarray(i, i + n));
      i += n;
    }
  }
  return out;
}

describe('grpc-bridge (client proxy, server proxy, gRPC service)', () => {
  it('set foo bar, then get foo: the HTTP/1.1 client reads bar', async () => {
    const grpc = await import('@grpc/grpc-js');
    const store = new Map<string, string>();
    const id = (b: Buffer): Buffer => b;
    const def = (name: string) => ({ path: `/kv.KV/${name}`, requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id });
    const server = new grpc.Server();
    server.addService({ get: def('Get'), set: def('Set') } as unknown as import('@grpc/grpc-js').ServiceDefinition, {
      // As the example's Go service: an unknown key is an empty value, not an error.
      get: (call: import('@grpc/grpc-js').ServerUnaryCall<Buffer, Buffer>, cb: import('@grpc/grpc-js').sendUnaryData<Buffer>) => {
        const key = (pbParse(call.request).get(1) as Buffer | undefined)?.toString() ?? '';
        cb(null, pbStrings([store.get(key)]));
      },
      set: (call: import('@grpc/grpc-js').ServerUnaryCall<Buffer, Buffer>, cb: import('@grpc/grpc-js').sendUnaryData<Buffer>) => {
        const f = pbParse(call.request);
        store.set((f.get(1) as Buffer).toString(), (f.get(2) as Buffer | undefined)?.toString() ?? '');
        cb(null, Buffer.from([0x08, 0x01]));
      },
    });
    const gport = await new Promise<number>((ok, ko) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? ko(e) : ok(p))));
    try {
      const [clientProxy, serverProxy] = [await freePort(), await freePort()];
      await run(`static_resources:
  listeners:${listener(
    serverProxy,
    `
            - name: backend
              domains:
              - "*"
              routes:
              - match:
                  prefix: "/"
                  grpc: {}
                route:
                  cluster: backend_grpc_service`,
    '',
  )}
  clusters:${cluster(
    'backend_grpc_service',
    gport,
    `
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}`,
  )}
`);
      await run(`static_resources:
  listeners:${listener(
    clientProxy,
    `
            - name: backend
              domains:
              - grpc
              routes:
              - match:
                  prefix: "/"
                route:
                  cluster: backend-proxy`,
    `
          - name: envoy.filters.http.grpc_http1_bridge
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_http1_bridge.v3.Config`,
    `
          add_user_agent: true
          common_http_protocol_options:
            idle_timeout: 0.840s
          use_remote_address: true`,
  ).replace('stat_prefix: ingress_http', 'stat_prefix: egress_http')}
  clusters:
  - name: backend-proxy
    type: LOGICAL_DNS
    dns_lookup_family: V4_ONLY
    lb_policy: ROUND_ROBIN
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http_protocol_options: {}
    load_assignment:
      cluster_name: backend-proxy
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: localhost
                port_value: ${serverProxy}
`);
      // client.py: requests.post(HOST + "/kv.KV/<Method>", data=<gRPC frame>, headers={content-type: application/grpc, Host: grpc}).
      const frame = (msg: Buffer): Buffer => {
        const f = Buffer.alloc(5 + msg.length);
        f.writeUInt32BE(msg.length, 1);
        msg.copy(f, 5);
        return f;
      };
      const call = (method: string, msg: Buffer) =>
        rawPost(clientProxy, `/kv.KV/${method}`, { 'content-type': 'application/grpc', host: 'grpc' }, frame(msg));
      const set = await call('Set', pbStrings(['foo', 'bar']));
      expect(set.status).toBe(200);
      expect(pbParse(set.body.subarray(5)).get(1)).toBe(1);
      const get = await call('Get', pbStrings(['foo']));
      expect(get.status).toBe(200);
      expect((pbParse(get.body.subarray(5)).get(1) as Buffer).toString()).toBe('bar');
      const none = await call('Get', pbStrings(['nope']));
      expect([none.status, none.body.subarray(5).length]).toEqual([200, 0]);
      // Another Host than "grpc": no virtual host matches. The local reply to a gRPC request is
      // gRPC UNIMPLEMENTED, which the bridge turns into HTTP 503 with the status in headers.
      const other = await rawPost(clientProxy, '/kv.KV/Get', { 'content-type': 'application/grpc', host: 'other' }, frame(pbStrings(['foo'])));
      expect([other.status, other.headers['grpc-status']]).toEqual([503, '12']);
    } finally {
      server.forceShutdown();
    }
  });
});
