/**
 * A real OTLP/gRPC trace receiver for tests: a grpc-js server implementing
 * `opentelemetry.proto.collector.trace.v1.TraceService/Export`. The request is decoded with
 * protobufjs's wire Reader using the field numbers of the OTLP specification (only the fields the
 * tests read: resource attributes, span ids, parent, name, kind, attributes, status).
 */
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly traceState: string;
  readonly name: string;
  /** OTLP SpanKind: 2 SERVER, 3 CLIENT. */
  readonly kind: number;
  readonly attributes: Record<string, string | number | boolean>;
  readonly resource: Record<string, string | number | boolean>;
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
}

type Attr = Record<string, string | number | boolean>;

function decodeAnyValue(r: protobuf.Reader, end: number): string | number | boolean {
  let v: string | number | boolean = '';
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        v = r.string();
        break;
      case 2:
        v = r.bool();
        break;
      case 3:
        v = Number(r.int64().toString());
        break;
      case 4:
        v = r.double();
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  return v;
}

function decodeKeyValue(r: protobuf.Reader, end: number, into: Attr): void {
  let key = '';
  let value: string | number | boolean = '';
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) key = r.string();
    else if (tag >>> 3 === 2) {
      const len = r.uint32();
      value = decodeAnyValue(r, r.pos + len);
    } else r.skipType(tag & 7);
  }
  into[key] = value;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

function decodeSpan(r: protobuf.Reader, end: number, resource: Attr): ReceivedSpan {
  const s = {
    traceId: '',
    spanId: '',
    parentSpanId: '',
    traceState: '',
    name: '',
    kind: 0,
    attributes: {} as Attr,
    resource,
    statusCode: 0,
  };
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1:
        s.traceId = hex(r.bytes());
        break;
      case 2:
        s.spanId = hex(r.bytes());
        break;
      case 3:
        s.traceState = r.string();
        break;
      case 4:
        s.parentSpanId = hex(r.bytes());
        break;
      case 5:
        s.name = r.string();
        break;
      case 6:
        s.kind = r.int32();
        break;
      case 9: {
        const len = r.uint32();
        decodeKeyValue(r, r.pos + len, s.attributes);
        break;
      }
      case 15: {
        const len = r.uint32();
        const e = r.pos + len;
        while (r.pos < e) {
          const t = r.uint32();
          if (t >>> 3 === 3) s.statusCode = r.int32();
          else r.skipType(t & 7);
        }
        break;
      }
      default:
        r.skipType(tag & 7);
    }
  }
  return s;
}

/** ExportTraceServiceRequest → spans (resource attributes copied onto each). */
export function decodeExportTraceRequest(buf: Buffer): ReceivedSpan[] {
  const r = protobuf.Reader.create(buf);
  const out: ReceivedSpan[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 !== 1) {
      r.skipType(tag & 7);
      continue;
    }
    const rsEnd = r.pos + r.uint32();
    const resource: Attr = {};
    const scopeSpans: [number, number][] = [];
    while (r.pos < rsEnd) {
      const t = r.uint32();
      if (t >>> 3 === 1) {
        const resEnd = r.pos + r.uint32();
        while (r.pos < resEnd) {
          const rt = r.uint32();
          if (rt >>> 3 === 1) {
            const len = r.uint32();
            decodeKeyValue(r, r.pos + len, resource);
          } else r.skipType(rt & 7);
        }
      } else if (t >>> 3 === 2) {
        const len = r.uint32();
        scopeSpans.push([r.pos, r.pos + len]);
        r.skip(len);
      } else r.skipType(t & 7);
    }
    for (const [start, end] of scopeSpans) {
      const sr = protobuf.Reader.create(buf.subarray(start, end));
      while (sr.pos < sr.len) {
        const st = sr.uint32();
        if (st >>> 3 === 2) {
          const len = sr.uint32();
          out.push(decodeSpan(sr, sr.pos + len, resource));
        } else sr.skipType(st & 7);
      }
    }
  }
  return out;
}

export interface OtlpReceiver {
  readonly port: number;
  readonly spans: ReceivedSpan[];
  /** Export calls received. */
  readonly exports: number;
  /** Resolve once `n` spans matching `pred` arrived, or reject after `timeoutMs`. */
  waitFor(pred: (s: ReceivedSpan) => boolean, n: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const server = new grpc.Server();
  const spans: ReceivedSpan[] = [];
  const state = { exports: 0 };
  const service: grpc.ServiceDefinition = {
    Export: {
      path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: Buffer) => v,
      requestDeserialize: (b: Buffer) => b,
      // ExportTraceServiceResponse with no partial_success: the empty message.
      responseSerialize: () => Buffer.alloc(0),
      responseDeserialize: (b: Buffer) => b,
    },
  };
  server.addService(service, {
    Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      state.exports++;
      spans.push(...decodeExportTraceRequest(call.request));
      cb(null, Buffer.alloc(0));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    port,
    spans,
    get exports() {
      return state.exports;
    },
    async waitFor(pred, n, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const got = spans.filter(pred);
        if (got.length >= n) return got;
        if (Date.now() > deadline)
          throw new Error(
            `OTLP receiver: expected ${n} spans, got ${got.length} (of ${spans.length}) in ${timeoutMs} ms`,
          );
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1_000).unref();
      }),
  };
}

/** The same receiver over OTLP/HTTP with protobuf bodies (POST /v1/traces). */
export async function startOtlpHttpReceiver(): Promise<OtlpReceiver> {
  const http = await import('node:http');
  const zlib = await import('node:zlib');
  const spans: ReceivedSpan[] = [];
  const state = { exports: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (
        req.method !== 'POST' ||
        req.url !== '/v1/traces' ||
        !String(req.headers['content-type']).startsWith('application/x-protobuf')
      ) {
        res.writeHead(404).end();
        return;
      }
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = zlib.gunzipSync(body);
      state.exports++;
      spans.push(...decodeExportTraceRequest(body));
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as import('node:net').AddressInfo).port;
  return {
    port,
    spans,
    get exports() {
      return state.exports;
    },
    async waitFor(pred, n, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const got = spans.filter(pred);
        if (got.length >= n) return got;
        if (Date.now() > deadline)
          throw new Error(`OTLP/HTTP receiver: expected ${n} spans, got ${got.length} in ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
