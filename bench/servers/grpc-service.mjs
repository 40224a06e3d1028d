// The bench's one gRPC service definition, shared by the server and the load client. Bytes in,
// bytes out (identity serializers), so the bench measures transport, not protobuf encoding.
const identity = (b) => b;

export const BENCH_SERVICE = Object.freeze({
  Echo: {
    path: '/meshlet.bench.Bench/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
});
