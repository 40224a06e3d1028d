// Child process: a @grpc/grpc-js server with one unary method (/meshlet.bench.Bench/Echo) that
// echoes its request bytes. Messages are raw bytes, so no .proto file is needed.
// Usage: node grpc-server.mjs PORT
import grpc from '@grpc/grpc-js';
import { BENCH_SERVICE } from './grpc-service.mjs';

const port = Number(process.argv[2]);
const server = new grpc.Server();
server.addService(BENCH_SERVICE, {
  Echo(call, callback) {
    callback(null, call.request);
  },
});
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    process.stderr.write(`bind failed: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`listening ${port}\n`);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
