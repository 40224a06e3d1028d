/**
 * Istio metrics for gRPC through meshlet with a real grpc-js client and server: request_protocol
 * is "grpc" and grpc_response_status carries the status from the trailers (OK and an error), while
 * response_code stays the HTTP status (200), as Istio reports it.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bootstrap,
  httpListener,
  routes,
  type StartedMeshlet,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
} from '../support/meshlet';
import { scrape, select, sum } from './helpers';

const ser = (m: { text: string }): Buffer => Buffer.from(JSON.stringify(m));
const de = (b: Buffer): { text: string } => JSON.parse(b.toString()) as { text: string };
const Service = {
  say: {
    path: '/meshlet.telemetry.Echo/Say',
    requestStream: false,
    responseStream: false,
    requestSerialize: ser,
    requestDeserialize: de,
    responseSerialize: ser,
    responseDeserialize: de,
  },
} as unknown as grpc.ServiceDefinition;
type EchoClient = grpc.Client & {
  say(req: { text: string }, cb: (err: grpc.ServiceError | null, res?: { text: string }) => void): void;
};
const Client = grpc.makeGenericClientConstructor(Service, 'Echo') as unknown as new (
  a: string,
  c: grpc.ChannelCredentials,
) => EchoClient;

let server: grpc.Server;
let client: EchoClient;
let m: StartedMeshlet;

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(Service, {
    say: (call: grpc.ServerUnaryCall<{ text: string }, { text: string }>, cb: grpc.sendUnaryData<{ text: string }>) => {
      if (call.request.text === 'missing') cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
      else cb(null, { text: `echo ${call.request.text}` });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  m = await startMeshlet(
    bootstrap(
      [
        {
          ...httpListener(
            'outbound_grpc',
            routes([{ match: { prefix: '/' }, route: { cluster: 'outbound|7070||echo.default.svc.cluster.local' } }]),
          ),
          traffic_direction: 'OUTBOUND',
        },
      ],
      [
        staticCluster('outbound|7070||echo.default.svc.cluster.local', [port], {
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
        }),
      ],
    ),
  );
  client = new Client(`127.0.0.1:${m.listenerPort('outbound_grpc')}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await stopAllMeshlets();
  await new Promise<void>((r) => server.tryShutdown(() => r()));
});

function say(text: string): Promise<{ err: grpc.ServiceError | null; text?: string }> {
  return new Promise((resolve) =>
    client.say({ text }, (err: grpc.ServiceError | null, res?: { text: string }) => resolve({ err, text: res?.text })),
  );
}

describe('gRPC in Istio metrics', () => {
  it('reports request_protocol=grpc with the grpc-status of each call', async () => {
    for (let i = 0; i < 3; i++) expect((await say(`hi ${i}`)).text).toBe(`echo hi ${i}`);
    expect((await say('missing')).err?.code).toBe(grpc.status.NOT_FOUND);
    const s = await scrape(m.adminPort);
    const base = {
      reporter: 'source',
      request_protocol: 'grpc',
      response_code: '200',
      destination_service: 'echo.default.svc.cluster.local',
    };
    expect(sum(s, 'istio_requests_total', { ...base, grpc_response_status: '0' })).toBe(3);
    expect(sum(s, 'istio_requests_total', { ...base, grpc_response_status: '5' })).toBe(1);
    expect(select(s, 'istio_requests_total', { request_protocol: 'http' })).toHaveLength(0);
  });
});
