/**
 * H1ServerCodec over real loopback sockets: request-smuggling defences, limits, 100-continue,
 * HTTP/1.0, pipelining, idle and header timeouts. Requests that pass go through a forwarding sink
 * and an H1ConnectionPool into a raw upstream `net.Server` that records every byte it receives.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { CodecErrorReport, DownstreamConnectionInfo } from '../../proxy/http/codec';
import { H1ConnectionPool } from '../../proxy/http/h1/pool';
import { H1ServerCodec, type H1ServerCodecOptions } from '../../proxy/http/h1/server-codec';
import { ForwardingCallbacks, loopbackHost, poolCluster } from '../support/h1-harness';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

/**
 * Raw upstream: records bytes; answers each complete request head (and a Content-Length body) with
 * a 200 whose body echoes what it received for that request.
 */
async function rawUpstream() {
  const state = { received: Buffer.alloc(0), connections: 0, sockets: new Set<net.Socket>() };
  const server = net.createServer((socket) => {
    state.connections++;
    state.sockets.add(socket);
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      state.received = Buffer.concat([state.received, d]);
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1');
        const m = /\r\ncontent-length: (\d+)/i.exec(head);
        const len = m ? Number(m[1]) : 0;
        if (/\r\ntransfer-encoding: chunked/i.test(head)) {
          const term = buf.indexOf('0\r\n\r\n', end + 4);
          if (term === -1) return;
          const msg = buf.subarray(0, term + 5);
          buf = buf.subarray(term + 5);
          socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${msg.length}\r\n\r\n`);
          socket.write(msg);
          continue;
        }
        if (buf.length < end + 4 + len) return;
        const msg = buf.subarray(0, end + 4 + len);
        buf = buf.subarray(end + 4 + len);
        socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${msg.length}\r\n\r\n`);
        socket.write(msg);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => state.sockets.delete(socket));
  });
  const port = await listen(server);
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of state.sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return { port, state };
}

async function proxy(upstreamPort: number, options: H1ServerCodecOptions = {}) {
  const reports: CodecErrorReport[] = [];
  const pool = new H1ConnectionPool(loopbackHost(upstreamPort), poolCluster());
  const callbacks = new ForwardingCallbacks(pool);
  const codecs: H1ServerCodec[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const info: DownstreamConnectionInfo = {
      id: codecs.length,
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
    };
    codecs.push(new H1ServerCodec(socket, callbacks, info, { ...options, onCodecError: (r) => reports.push(r) }));
  });
  const port = await listen(server);
  cleanups.push(async () => {
    pool.destroy();
    for (const c of codecs) c.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { port, pool, callbacks, reports };
}

/** Write raw bytes, collect everything until the server closes (bounded by `maxMs`). */
function exchange(port: number, data: string | Buffer, maxMs = 5000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    const timer = setTimeout(() => {
      socket.destroy();
    }, maxMs);
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
    socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  });
}

/** Open a connection and read responses as they come. */
function client(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  let buf = '';
  let closed = false;
  const waiters: (() => void)[] = [];
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    for (const w of waiters.splice(0)) w();
  });
  socket.on('end', () => {
    closed = true;
    for (const w of waiters.splice(0)) w();
  });
  socket.on('error', () => {});
  cleanups.push(() => {
    socket.destroy();
  });
  return {
    socket,
    get closed() {
      return closed;
    },
    write: (s: string) => socket.write(Buffer.from(s, 'latin1')),
    /** Wait until the accumulated input contains `needle` (bounded). */
    async until(pred: (b: string) => boolean, maxMs = 5000): Promise<string> {
      const deadline = Date.now() + maxMs;
      while (!pred(buf)) {
        if (closed || Date.now() > deadline) throw new Error(`condition not met; got: ${JSON.stringify(buf)}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return buf;
    },
    take(): string {
      const b = buf;
      buf = '';
      return b;
    },
  };
}

const SMUGGLING: [string, string][] = [
  [
    'Content-Length with Transfer-Encoding (CL.TE)',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG',
  ],
  [
    'Transfer-Encoding with Content-Length (TE.CL)',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n',
  ],
  [
    'differing Content-Length headers',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 10\r\n\r\nabc',
  ],
  ['Content-Length with a sign', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc'],
  ['Content-Length not digits', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3a\r\n\r\nabc'],
  [
    'Transfer-Encoding: chunked, identity',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
  ],
  ['Transfer-Encoding: xchunked', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n'],
  [
    'Transfer-Encoding folded onto a continuation line',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n',
  ],
  [
    'Transfer-Encoding: chunked followed by VT',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n',
  ],
  [
    'Transfer-Encoding with space before the colon',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
  ],
  ['non-hex chunk size', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n'],
  ['empty chunk size', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n'],
  [
    'chunk size beyond 2^53',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n',
  ],
  [
    'chunk extension with a control byte',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=\x01\r\nhello\r\n0\r\n\r\n',
  ],
  ['bare LF in chunk framing', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n'],
  ['bare LF in the head', 'GET / HTTP/1.1\r\nHost: h\nX-Smuggle: 1\r\n\r\n'],
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tX-B: 2\r\n\r\n'],
  ['header name not a token', 'GET / HTTP/1.1\r\nHost: h\r\nX"A: 1\r\n\r\n'],
  ['NUL in a header value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n'],
  ['DEL in a header value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n'],
  ['invalid method token', 'GE\x01T / HTTP/1.1\r\nHost: h\r\n\r\n'],
  ['invalid version', 'GET / HTTP/1.7\r\nHost: h\r\n\r\n'],
  ['Transfer-Encoding in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
];

describe('H1ServerCodec rejects smuggling attempts before anything is forwarded', () => {
  for (const [name, raw] of SMUGGLING) {
    it(name, async () => {
      const up = await rawUpstream();
      const px = await proxy(up.port);
      const res = await exchange(px.port, raw);
      expect(res.text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
      expect(res.text.toLowerCase()).toContain('\r\nconnection: close\r\n');
      expect(res.closed).toBe(true);
      // Exactly one response: nothing after the 400 body.
      expect(res.text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
      expect(px.callbacks.records).toHaveLength(0);
      expect(up.state.connections).toBe(0);
      expect(up.state.received.length).toBe(0);
      expect(px.reports).toEqual([expect.objectContaining({ status: 400, flag: 'DPE' })]);
    });
  }

  it('a valid request forwarded on the same proxy reaches the upstream (the harness can see traffic)', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port);
    const c = client(px.port);
    c.write('POST /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello');
    const text = await c.until((b) => b.includes('hello'));
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(up.state.received.toString('latin1')).toContain('POST /ok HTTP/1.1\r\nhost: h\r\n');
    expect(px.reports).toHaveLength(0);
  });
});

describe('H1ServerCodec limits and timeouts', () => {
  it('431 for more than maxHeadersCount headers', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port, { maxHeadersCount: 10 });
    const res = await exchange(px.port, `GET / HTTP/1.1\r\nHost: h\r\n${'x-a: 1\r\n'.repeat(10)}\r\n`);
    expect(res.text).toMatch(/^HTTP\/1\.1 431 /);
    expect(res.closed).toBe(true);
    expect(up.state.connections).toBe(0);
    expect(px.reports[0]).toMatchObject({ status: 431, flag: 'DPE' });
  });

  it('431 for a head larger than maxRequestHeadersKb, even when it never ends', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port, { maxRequestHeadersKb: 2 });
    const res = await exchange(px.port, `GET / HTTP/1.1\r\nHost: h\r\nx-big: ${'v'.repeat(4096)}`);
    expect(res.text).toMatch(/^HTTP\/1\.1 431 /);
    expect(res.closed).toBe(true);
    expect(up.state.received.length).toBe(0);
  });

  it('414 for a request line longer than 16 KiB', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port);
    const res = await exchange(px.port, `GET /${'a'.repeat(17 * 1024)} HTTP/1.1\r\nHost: h\r\n\r\n`);
    expect(res.text).toMatch(/^HTTP\/1\.1 414 /);
    expect(res.closed).toBe(true);
    expect(up.state.received.length).toBe(0);
  });

  it('408 when the request head does not complete within requestHeadersTimeoutMs', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port, { requestHeadersTimeoutMs: 100 });
    const res = await exchange(px.port, 'GET / HTTP/1.1\r\nHost: h\r\n');
    expect(res.text).toMatch(/^HTTP\/1\.1 408 /);
    expect(res.closed).toBe(true);
    expect(px.reports[0]).toMatchObject({ status: 408 });
  });

  it('closes an idle keep-alive connection after idleTimeoutMs', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port, { idleTimeoutMs: 100 });
    const c = client(px.port);
    c.write('GET /1 HTTP/1.1\r\nHost: h\r\n\r\n');
    await c.until((b) => b.includes('GET /1'));
    // The server ends the connection on its own (bounded wait; no timing assertion).
    await new Promise<void>((resolve, reject) => {
      if (c.closed) return resolve();
      const t = setTimeout(() => reject(new Error('idle connection was not closed')), 5000);
      c.socket.once('end', () => {
        clearTimeout(t);
        resolve();
      });
    });
    expect(c.closed).toBe(true);
    expect(px.reports).toHaveLength(0);
  });
});

describe('H1ServerCodec protocol behaviour', () => {
  it('answers Expect: 100-continue itself and strips the Expect header', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port);
    const c = client(px.port);
    c.write('PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n');
    await c.until((b) => b.startsWith('HTTP/1.1 100 Continue\r\n\r\n'));
    c.write('data');
    const text = await c.until((b) => b.includes('data'));
    expect(text).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
    const seen = up.state.received.toString('latin1').toLowerCase();
    expect(seen).not.toContain('expect');
    expect(seen).toContain('content-length: 4');
  });

  it('HTTP/1.0: close-delimited by default, keep-alive when asked, no chunked encoding', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port);
    const res = await exchange(px.port, 'GET /old HTTP/1.0\r\n\r\n');
    expect(res.text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(res.text.toLowerCase()).toContain('connection: close');
    expect(res.closed).toBe(true);

    const c = client(px.port);
    c.write('GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    const first = await c.until((b) => b.includes('GET /a'));
    expect(first.toLowerCase()).toContain('connection: keep-alive');
    expect(first.toLowerCase()).not.toContain('transfer-encoding');
    c.take();
    c.write('GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    await c.until((b) => b.includes('GET /b'));
    expect(c.closed).toBe(false);
  });

  it('serves pipelined requests one at a time, in order', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port);
    const c = client(px.port);
    c.write(
      'GET /one HTTP/1.1\r\nHost: h\r\n\r\nPOST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nHost: h\r\n\r\n',
    );
    const text = await c.until((b) => b.includes('GET /three'));
    const order = [...text.matchAll(/(GET|POST) \/(\w+) HTTP/g)].map((m) => m[2]);
    expect(order).toEqual(['one', 'two', 'three']);
    expect(text.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(3);
    // One request at a time upstream: a single upstream connection was enough.
    expect(up.state.connections).toBe(1);
  });

  it('removes hop-by-hop headers before forwarding and re-frames chunked bodies', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port);
    const c = client(px.port);
    c.write(
      'POST /c HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: 5\r\nx-hop: 1\r\nTE: trailers\r\n' +
        'Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n',
    );
    await c.until((b) => b.includes('0\r\n\r\n'));
    const seen = up.state.received.toString('latin1');
    expect(seen).toContain('te: trailers\r\n');
    expect(seen).toContain('transfer-encoding: chunked\r\n');
    expect(seen).toContain('3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n');
    expect(seen.toLowerCase()).not.toContain('x-hop');
    expect(seen.toLowerCase()).not.toContain('keep-alive');
  });

  it('resets the stream with connection_termination when the client disconnects mid-request', async () => {
    const up = await rawUpstream();
    const px = await proxy(up.port);
    const c = client(px.port);
    c.write('POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\npartial');
    const deadline = Date.now() + 5000;
    while (px.callbacks.records.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    c.socket.destroy();
    while (px.callbacks.records[0].resets.length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    expect(px.callbacks.records[0].resets).toEqual(['connection_termination']);
  });
});
