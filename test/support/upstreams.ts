/**
 * Real upstream servers for tests: an HTTP/1.1 echo server, a TCP echo server, and a raw-bytes
 * client. All bind 127.0.0.1:0 and are closed by `closeAll()`.
 */
import http from 'node:http';
import net from 'node:net';

const closers: (() => Promise<void>)[] = [];

export async function closeAll(): Promise<void> {
  await Promise.all(closers.splice(0).map((c) => c()));
}

export interface EchoRecord {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
  remotePort: number;
}

export interface HttpEcho {
  port: number;
  name: string;
  requests: EchoRecord[];
  /** Distinct TCP connections accepted. */
  connections: number;
  server: http.Server;
}

/**
 * An HTTP/1.1 server answering every request with a JSON echo of what it received, plus an
 * `x-upstream` header naming it. `handler` may answer instead (return true when it did).
 */
export async function startHttpEcho(
  name = 'echo',
  handler?: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => boolean | void,
): Promise<HttpEcho> {
  const state: HttpEcho = { port: 0, name, requests: [], connections: 0, server: undefined as unknown as http.Server };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const rec: EchoRecord = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body,
        remotePort: req.socket.remotePort ?? 0,
      };
      state.requests.push(rec);
      if (handler?.(req, res, body)) return;
      const out = JSON.stringify({ upstream: name, ...rec, rawHeaders: undefined });
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name, 'content-length': Buffer.byteLength(out) });
      res.end(out);
    });
  });
  server.on('connection', () => {
    state.connections++;
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as net.AddressInfo).port;
  state.server = server;
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return state;
}

export interface TcpEcho {
  port: number;
  connections: number;
  received: number;
  server: net.Server;
}

/** A TCP echo server with half-close: it echoes, and ends its side when the client ends. */
export async function startTcpEcho(): Promise<TcpEcho> {
  const state: TcpEcho = { port: 0, connections: 0, received: 0, server: undefined as unknown as net.Server };
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    state.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.on('data', (d) => {
      state.received += d.length;
    });
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as net.AddressInfo).port;
  state.server = server;
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return state;
}

/** A port with nothing listening on it (bound once, then closed). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * Send raw bytes and collect everything the peer sends until it closes the connection or
 * `idleMs` passes without data. Resolves with the text and whether the peer closed.
 */
export function rawExchange(port: number, bytes: string | Buffer, idleMs = 1_000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    let text = '';
    let timer: NodeJS.Timeout | undefined;
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      resolve({ text, closed });
      c.destroy();
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => done(false), idleMs);
    };
    c.on('data', (d) => {
      text += d.toString('latin1');
      arm();
    });
    c.on('end', () => done(true));
    c.on('error', () => done(true));
    c.on('connect', () => {
      c.write(bytes);
      arm();
    });
  });
}

/** GET http://127.0.0.1:port/path on a fresh connection: status and UTF-8 body. */
export function getText(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}
