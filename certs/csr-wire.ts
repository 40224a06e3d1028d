/**
 * The wire definition of Istio's certificate service
 * (`istio.v1.auth.IstioCertificateService/CreateCertificate`), shared by the client
 * (certs/csr-provider.ts) and the server (control-plane/csr-service.ts).
 *
 * No .proto is vendored and no npm package ships Istio's: the two messages are declared with
 * protobufjs reflection, wire-compatible with Istio's field numbers (csr = 1,
 * validity_duration = 3, cert_chain = 1); request metadata (field 4) is skipped.
 */
import type * as grpc from '@grpc/grpc-js';
import type * as protobuf from 'protobufjs';

/** CreateCertificate request as this service sees it. */
export interface CsrRequest {
  csr: string;
  /** Requested lifetime in seconds; 0 = the CA's default. */
  validity_duration?: number | string;
}

export interface CsrResponse {
  cert_chain: string[];
}

const SERVICE = 'istio.v1.auth.IstioCertificateService';

let types: { req: protobuf.Type; res: protobuf.Type } | undefined;
function messageTypes(): { req: protobuf.Type; res: protobuf.Type } {
  if (types) return types;
  // Loaded on first use: the sidecar imports this module for the type of its CSR client, and only
  // a bootstrap with a CSR certificate provider ever calls it.
  const protobuf = require('protobufjs') as typeof import('protobufjs');
  const req = new protobuf.Type('IstioCertificateRequest')
    .add(new protobuf.Field('csr', 1, 'string'))
    .add(new protobuf.Field('validity_duration', 3, 'int64'));
  const res = new protobuf.Type('IstioCertificateResponse').add(
    new protobuf.Field('cert_chain', 1, 'string', 'repeated'),
  );
  new protobuf.Root().define('istio.v1.auth').add(req).add(res);
  types = { req, res };
  return types;
}

function codec<T>(t: protobuf.Type) {
  return {
    serialize: (v: T) => Buffer.from(t.encode(t.fromObject(v as Record<string, unknown>)).finish()),
    deserialize: (b: Buffer) => t.toObject(t.decode(b), { longs: Number, defaults: true }) as T,
  };
}

/** gRPC service definition of CreateCertificate (for servers and clients alike). */
export function csrServiceDefinition(): grpc.ServiceDefinition {
  const { req, res } = messageTypes();
  const rq = codec<CsrRequest>(req);
  const rs = codec<CsrResponse>(res);
  return {
    CreateCertificate: {
      path: `/${SERVICE}/CreateCertificate`,
      requestStream: false,
      responseStream: false,
      requestSerialize: rq.serialize,
      requestDeserialize: rq.deserialize,
      responseSerialize: rs.serialize,
      responseDeserialize: rs.deserialize,
      originalName: 'createCertificate',
    },
  } as grpc.ServiceDefinition;
}
