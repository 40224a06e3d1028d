/**
 * The H1ServerCodec's ResponseEncoder over real sockets, driven by a tiny in-process "app" sink:
 * framing choices (Content-Length, chunked with trailers, close-delimited HTTP/1.0, HEAD, 204),
 * Content-Length guards, flow control, upgrades (takeTunnel) and downstream resets.
 */
import http from 'node:http';
import net from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type {
  DownstreamConnectionInfo,
  HeaderList,
  RequestHead,
  RequestSink,
  ResetReason,
  ResponseEncoder,
  ServerCodecCallbacks,
} from '../../proxy/http/codec';
import { H1ServerCodec } from '../../proxy/http/h1/server-codec';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

type App = (head: RequestHead, enc: ResponseEncoder, sink: AppSink) => void;

class AppSink implements RequestSink {
  head: RequestHead | undefined;
  body: Buffer[] = [];
  trailers: HeaderList | undefined;
  resets: ResetReason[] = [];
  writable = 0;
  ended = false;
  onEnd: (() => void) | undefined;
  constructor(
    private readonly app: App,
    readonly enc: ResponseEncoder,
  ) {}
  onRequestHeaders(head: RequestHead, endStream: boolean): void {
    this.head = head;
    this.ended = endStream;
    this.app(head, this.enc, this);
  }
  onRequestData(chunk: Buffer, endStream: boolean): void {
    this.body.push(Buffer.from(chunk));
    if (endStream) {
      this.ended = true;
      this.onEnd?.();
    }
  }
  onRequestTrailers(trailers: HeaderList): void {
    this.trailers = trailers;
    this.ended = true;
    this.onEnd?.();
  }
  onDownstreamReset(reason: ResetReason): void {
    this.resets.push(reason);
  }
  onWritable: (() => void) | undefined;
  onDownstreamWritable(): void {
    this.writable++;
    this.onWritable?.();
  }
}

async function serve(app: App) {
  const sinks: AppSink[] = [];
  const callbacks: ServerCodecCallbacks = {
    newStream(enc) {
      const s = new AppSink(app, enc);
      sinks.push(s);
      return s;
    },
  };
  const codecs: H1ServerCodec[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const info: DownstreamConnectionInfo = {
      id: codecs.length,
      remoteAddress: '127.0.0.1',
      remotePort: socket.remotePort ?? 0,
      localAddress: '127.0.0.1',
      localPort: socket.localPort ?? 0,
    };
    codecs.push(new H1ServerCodec(socket, callbacks, info));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  cleanups.push(async () => {
    for (const c of codecs) c.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { port, sinks };
}

function raw(port: number, data: string, maxMs = 5000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    const timer = setTimeout(() => socket.destroy(), maxMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('end', () => {
      closed = true;
      socket.end();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    });
    socket.write(data, 'latin1');
  });
}

describe('H1ServerCodec start-up', () => {
  it('serves a socket handed over explicitly paused with sniffed bytes unshifted (protocol detection)', async () => {
    const callbacks: ServerCodecCallbacks = {
      newStream(enc) {
        return new AppSink((head, e) => {
          const body = Buffer.from(`seen ${head.path}`);
          e.writeHeaders({ status: 200, headers: [], contentLength: body.length }, false);
          e.writeData(body, true);
        }, enc);
      },
    };
    const codecs: H1ServerCodec[] = [];
    const server = net.createServer((socket) => {
      socket.once('data', (first: Buffer) => {
        socket.pause();
        socket.unshift(first);
        const info: DownstreamConnectionInfo = {
          id: 1,
          remoteAddress: '',
          remotePort: 0,
          localAddress: '',
          localPort: 0,
        };
        codecs.push(new H1ServerCodec(socket, callbacks, info));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(async () => {
      for (const c of codecs) c.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    });
    const res = await raw(
      (server.address() as net.AddressInfo).port,
      'GET /sniffed HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n',
    );
    expect(res.text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(res.text.endsWith('seen /sniffed')).toBe(true);
  });
});

describe('H1 response encoding', () => {
  it('keeps a known length, chunks an unknown one with trailers, and ends keep-alive responses cleanly', async () => {
    const { port } = await serve((head, enc) => {
      if (head.path === '/known') {
        enc.writeHeaders({ status: 200, headers: ['x-a', '1'], contentLength: 5 }, false);
        enc.writeData(Buffer.from('hello'), true);
      } else {
        enc.writeHeaders({ status: 200, headers: ['trailer', 'x-sum'], contentLength: -1 }, false);
        enc.writeData(Buffer.from('part1-'), false);
        setTimeout(() => {
          enc.writeData(Buffer.from('part2'), false);
          enc.writeTrailers(['x-sum', '42']);
        }, 5);
      }
    });
    const known = await request(`http://127.0.0.1:${port}/known`);
    expect(known.headers['content-length']).toBe('5');
    expect(known.headers['x-a']).toBe('1');
    expect(await known.body.text()).toBe('hello');

    const res = await new Promise<{ te?: string; body: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/stream' }, (r) => {
          let body = '';
          r.on('data', (d: Buffer) => (body += d.toString()));
          r.on('end', () => resolve({ te: r.headers['transfer-encoding'], body, trailers: r.trailers }));
        })
        .on('error', reject);
    });
    expect(res.te).toBe('chunked');
    expect(res.body).toBe('part1-part2');
    expect(res.trailers).toEqual({ 'x-sum': '42' });
  });

  it('HTTP/1.0 without a length is close-delimited; HEAD and 204 carry no body', async () => {
    const { port } = await serve((head, enc) => {
      if (head.path === '/204') {
        enc.writeHeaders({ status: 204, headers: [], contentLength: 0 }, true);
        return;
      }
      enc.writeHeaders(
        { status: 200, headers: head.method === 'HEAD' ? ['content-length', '3'] : [], contentLength: -1 },
        false,
      );
      enc.writeData(Buffer.from('abc'), true);
    });
    const old = await raw(port, 'GET /x HTTP/1.0\r\n\r\n');
    expect(old.text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(old.text).not.toMatch(/transfer-encoding|content-length/i);
    expect(old.text).toContain('connection: close\r\n\r\nabc');
    expect(old.closed).toBe(true);

    const headRes = await raw(port, 'HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
    expect(headRes.text).toContain('content-length: 3\r\n');
    expect(headRes.text.endsWith('\r\n\r\n')).toBe(true);

    const noContent = await raw(port, 'GET /204 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
    expect(noContent.text).toMatch(/^HTTP\/1\.1 204 No Content\r\n/);
    expect(noContent.text).not.toMatch(/content-length|transfer-encoding/i);
  });

  it('never writes past a declared Content-Length and closes when the body falls short', async () => {
    const { port } = await serve((head, enc) => {
      enc.writeHeaders({ status: 200, headers: ['content-length', '5'], contentLength: 5 }, false);
      enc.writeData(Buffer.from(head.path === '/long' ? 'HTTP/1.1 200 OK smuggled' : 'abc'), true);
    });
    const long = await raw(port, 'GET /long HTTP/1.1\r\nHost: h\r\n\r\n');
    expect(long.text.endsWith('\r\n\r\nHTTP/')).toBe(true);
    expect(long.closed).toBe(true);
    const short = await raw(port, 'GET /short HTTP/1.1\r\nHost: h\r\n\r\n');
    expect(short.text.endsWith('\r\n\r\nabc')).toBe(true);
    expect(short.closed).toBe(true);
  });

  it('answers before the request body is complete with Connection: close', async () => {
    const { port, sinks } = await serve((_head, enc) => {
      enc.writeHeaders({ status: 413, headers: ['content-length', '0'], contentLength: 0 }, true);
    });
    const res = await raw(port, 'POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\nsome');
    expect(res.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(res.text).toContain('connection: close');
    expect(res.closed).toBe(true);
    expect(sinks).toHaveLength(1);
  });

  it('flow control: writeData returns false above the watermark and onDownstreamWritable follows', async () => {
    const chunk = Buffer.alloc(256 * 1024, 'z');
    let written = 0;
    let sawFalse = false;
    const { port, sinks } = await serve((_head, enc, sink) => {
      enc.writeHeaders({ status: 200, headers: [], contentLength: -1 }, false);
      // Write until the codec reports back-pressure (bounded), then finish once writable again.
      for (let i = 0; i < 256 && !sawFalse; i++) {
        written += chunk.length;
        sawFalse = !enc.writeData(chunk, false);
      }
      sink.onWritable = () => {
        written += 4;
        enc.writeData(Buffer.from('done'), true);
      };
    });
    const socket = net.connect(port, '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    socket.pause(); // do not read yet: the proxy's send buffer fills up
    socket.write('GET / HTTP/1.1\r\nHost: h\r\n\r\n');
    const deadline = Date.now() + 10_000;
    while (sinks.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(sawFalse).toBe(true);
    let text = '';
    socket.on('data', (d: Buffer) => (text = (text + d.toString('latin1')).slice(-64)));
    let ended = false;
    socket.on('end', () => (ended = true));
    socket.resume();
    while (!text.endsWith('4\r\ndone\r\n0\r\n\r\n') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    expect(sinks[0].writable).toBe(1);
    expect(text.endsWith('4\r\ndone\r\n0\r\n\r\n')).toBe(true);
    expect(ended).toBe(false); // keep-alive survives
    expect(written).toBeGreaterThan(chunk.length);
  });

  it('pauseRequest stops reading the request body until resumeRequest', async () => {
    let enc: ResponseEncoder | undefined;
    const { port, sinks } = await serve((_head, e) => {
      enc = e;
      e.pauseRequest();
    });
    const socket = net.connect(port, '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    socket.write('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\n');
    const deadline = Date.now() + 5000;
    while (sinks.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    socket.write('abcdef');
    // Give the bytes every chance to arrive while paused (bounded; asserts state, not speed).
    await new Promise((r) => setTimeout(r, 50));
    expect(sinks[0].body).toHaveLength(0);
    const done = new Promise<void>((r) => (sinks[0].onEnd = r));
    enc!.resumeRequest();
    await done;
    expect(Buffer.concat(sinks[0].body).toString()).toBe('abcdef');
  });

  it('hands the raw socket over after a 101 with bytes that followed the request', async () => {
    const { port } = await serve((head, enc) => {
      expect(head.upgrade).toBe('websocket');
      enc.writeHeaders({ status: 101, headers: ['upgrade', 'websocket'], contentLength: -1 }, false);
      const t = enc.takeTunnel();
      t.on('data', (d: Buffer) => t.write(Buffer.concat([Buffer.from('echo:'), d])));
      t.resume();
    });
    const socket = net.connect(port, '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.write('GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly-bytes');
    const deadline = Date.now() + 5000;
    while (!text.includes('echo:early-bytes') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(text).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n/);
    expect(text).toContain('echo:early-bytes');
  });

  it('CONNECT: a 2xx hands over the tunnel (with bytes sent after the head); a refusal closes the connection', async () => {
    const { port, sinks } = await serve((head, enc) => {
      expect(head.method).toBe('CONNECT');
      if (head.authority === 'deny.example:443') {
        enc.writeHeaders({ status: 403, headers: ['content-length', '0'], contentLength: 0 }, true);
        return;
      }
      enc.writeHeaders({ status: 200, headers: [], contentLength: -1 }, false);
      const t = enc.takeTunnel();
      t.on('data', (d: Buffer) => t.write(Buffer.concat([Buffer.from('tunnel:'), d])));
      t.resume();
    });
    const socket = net.connect(port, '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.write('CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\nGET / HTTP/1.1\r\n\r\n');
    const deadline = Date.now() + 5000;
    while (!text.includes('tunnel:GET /') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n\r\ntunnel:GET \/ HTTP\/1\.1/);
    expect(sinks[0].head).toMatchObject({ method: 'CONNECT', path: 'db.example:5432', authority: 'db.example:5432' });
    // The bytes after the CONNECT head were tunnel payload, never parsed as a second request.
    expect(sinks).toHaveLength(1);

    const denied = await raw(port, 'CONNECT deny.example:443 HTTP/1.1\r\nHost: deny.example:443\r\n\r\n');
    expect(denied.text).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    expect(denied.text).toContain('connection: close');
    expect(denied.closed).toBe(true);
  });

  it('reset() closes the connection; a client disconnect during the response resets the stream', async () => {
    const { port, sinks } = await serve((head, enc) => {
      enc.writeHeaders({ status: 200, headers: [], contentLength: 10 }, false);
      enc.writeData(Buffer.from('12345'), false);
      if (head.path === '/reset') enc.reset('local_reset');
    });
    const reset = await raw(port, 'GET /reset HTTP/1.1\r\nHost: h\r\n\r\n');
    expect(reset.text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(sinks[0].resets).toEqual([]);

    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET /hang HTTP/1.1\r\nHost: h\r\n\r\n');
    await new Promise<void>((r) => socket.once('data', () => r()));
    socket.destroy();
    const deadline = Date.now() + 5000;
    while (sinks[1].resets.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(sinks[1].resets).toEqual(['connection_termination']);
  });
});
