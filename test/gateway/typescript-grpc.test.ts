/**
 * A TypeScript filter on gRPC traffic: request and response messages held with "stop" — the
 * response body is only complete when the trailers (grpc-status) arrive, so the held data must
 * go on before them. A real @grpc/grpc-js client and server on either side of a real meshlet.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorizationService } from '../../proxy/http/filters/service-client';
import { closeTypeScriptFilters, typeScriptFilterStats } from '../../proxy/http/filters/typescript';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll } from '../support/upstreams';
import { filterListener, startGrpcServer, stopGrpcServer } from './helpers';

const PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

let m: StartedMeshlet;
let server: grpc.Server | undefined;
let client: grpc.Client | undefined;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'meshlet-tsgrpc-'));
  writeFileSync(
    path.join(dir, 'hold.js'),
    `module.exports = {
      onRequestBody(chunk, end) { return end ? 'continue' : 'stop'; },
      onResponseBody(chunk, end, ctx) { ctx.state.set('bytes', chunk.length); return end ? 'continue' : 'stop'; },
    };`,
  );
  const g = await startGrpcServer(authorizationService().service, {
    Check: (call: grpc.ServerUnaryCall<{ attributes: { context_extensions: Record<string, string> } }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      cb(null, {
        status: { code: 0 },
        ok_response: { headers: [{ header: { key: 'echo', value: call.request.attributes.context_extensions.word ?? '' } }] },
      });
    },
  });
  server = g.server;
  m = await startMeshlet(
    bootstrap(
      [
        filterListener(
          'grpc_ts',
          [{ name: 'hold', typed_config: { '@type': 'type.googleapis.com/meshlet.filters.TypeScript', path: path.join(dir, 'hold.js') } }],
          [{ match: { prefix: '/' }, route: { cluster: 'grpc_backend' } }],
        ),
      ],
      [
        staticCluster('grpc_backend', [g.port], {
          typed_extension_protocol_options: {
            [PROTOCOL_OPTIONS]: { '@type': `type.googleapis.com/${PROTOCOL_OPTIONS}`, explicit_http_config: { http2_protocol_options: {} } },
          },
        }),
      ],
    ),
  );
  const Ctor = authorizationService();
  client = new Ctor(`127.0.0.1:${m.listenerPort('grpc_ts')}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await stopAllMeshlets();
  closeTypeScriptFilters();
  await stopGrpcServer(server);
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('TypeScript filter holding gRPC messages', () => {
  it('a unary call completes with the held response message delivered before the trailers', async () => {
    const check = (word: string) =>
      new Promise<{ status: { code: number }; ok_response: { headers: { header: { key: string; value: string } }[] } }>((resolve, reject) => {
        (client as unknown as Record<string, (req: unknown, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: never) => void) => void>)
          .Check!.call(client, { attributes: { context_extensions: { word } } }, { deadline: Date.now() + 10_000 }, (err, res) =>
            err ? reject(err) : resolve(res),
          );
      });
    const errors = typeScriptFilterStats('hold').errors;
    for (const word of ['first', 'second']) {
      const res = await check(word);
      expect(res.status.code).toBe(0);
      expect(res.ok_response.headers[0]!.header.value).toBe(word);
    }
    expect(typeScriptFilterStats('hold').errors).toBe(errors);
  });
});
