/**
 * HTTP/1.1 request smuggling: every ambiguous framing vector is answered 400 by meshlet itself,
 * the connection is closed, the upstream never sees the request (nor the request hidden in its
 * body), and a well-behaved client on another connection is served throughout.
 *
 * Also the other direction: malformed upstream responses become 502 and the upstream connection
 * they came on is closed, never reused for the next request.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAllMeshlets } from '../support/meshlet';
import { closeAll, rawExchange } from '../support/upstreams';
import { getOnce, goodClient, type Proxied, type RawUpstream, responseCount, startProxied, startRawUpstream, statusOf, until } from './harness';

let p: Proxied;
/** A second meshlet in front of a raw upstream that records every byte it receives. */
let rawUp: RawUpstream;
let q: Proxied;

beforeAll(async () => {
  p = await startProxied();
  rawUp = await startRawUpstream(() => 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  q = await startProxied({ upstreamPort: rawUp.port });
});

afterAll(async () => {
  await stopAllMeshlets();
  await rawUp.close();
  await closeAll();
});

const SMUGGLED = 'GET /attack/smuggled HTTP/1.1\r\nHost: x\r\n\r\n';

/** A POST to /attack/<name> with the given header lines and body, followed by a pipelined request. */
function vector(name: string, headerLines: string, body: string): string {
  return `POST /attack/${name} HTTP/1.1\r\nHost: x\r\n${headerLines}\r\n${body}`;
}

const vectors: [string, string][] = [
  ['cl-cl-conflict', vector('clcl', 'Content-Length: 5\r\nContent-Length: 47\r\n', `hello${SMUGGLED}`)],
  ['cl-list-conflict', vector('cllist', 'Content-Length: 5, 47\r\n', `hello${SMUGGLED}`)],
  ['cl-sign', vector('clsign', 'Content-Length: +5\r\n', `hello${SMUGGLED}`)],
  ['cl-negative', vector('clneg', 'Content-Length: -1\r\n', `hello${SMUGGLED}`)],
  ['cl-hex', vector('clhex', 'Content-Length: 0x5\r\n', `hello${SMUGGLED}`)],
  ['cl-huge', vector('clhuge', 'Content-Length: 99999999999999999999\r\n', `hello${SMUGGLED}`)],
  ['cl-te (CL.TE)', vector('clte', 'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n', `0\r\n\r\n${SMUGGLED}`)],
  ['te-cl (TE.CL)', vector('tecl', 'Transfer-Encoding: chunked\r\nContent-Length: 3\r\n', `8\r\n${SMUGGLED.slice(0, 8)}\r\n0\r\n\r\n`)],
  ['te-xchunked', vector('tex', 'Transfer-Encoding: xchunked\r\n', `0\r\n\r\n${SMUGGLED}`)],
  ['te-chunked-identity', vector('teid', 'Transfer-Encoding: chunked, identity\r\n', `0\r\n\r\n${SMUGGLED}`)],
  ['te-identity-chunked', vector('teid2', 'Transfer-Encoding: identity, chunked\r\n', `0\r\n\r\n${SMUGGLED}`)],
  ['te-duplicate', vector('tedup', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n', `0\r\n\r\n${SMUGGLED}`)],
  ['te-space-before-colon', vector('tesp', 'Transfer-Encoding : chunked\r\nContent-Length: 5\r\n', `0\r\n\r\n${SMUGGLED}`)],
  ['te-obs-fold', vector('tefold', 'Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n', `0\r\n\r\n${SMUGGLED}`)],
  ['te-vertical-tab', vector('tevt', 'Transfer-Encoding:\x0bchunked\r\n', `0\r\n\r\n${SMUGGLED}`)],
  ['te-http10', `POST /attack/te10 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`],
  ['chunk-size-invalid', vector('chbad', 'Transfer-Encoding: chunked\r\n', `zz\r\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
  ['chunk-size-negative', vector('chneg', 'Transfer-Encoding: chunked\r\n', `-5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
  ['chunk-size-overflow', vector('chovf', 'Transfer-Encoding: chunked\r\n', `fffffffffffffffff5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
  ['chunk-size-0x', vector('ch0x', 'Transfer-Encoding: chunked\r\n', `0x5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
  ['chunk-data-overrun', vector('chover', 'Transfer-Encoding: chunked\r\n', `3\r\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
  ['chunk-bare-lf', vector('chlf', 'Transfer-Encoding: chunked\r\n', `5\nhello\n0\n\n${SMUGGLED}`)],
  ['bare-lf-headers', `POST /attack/lf HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello${SMUGGLED}`],
  ['bare-lf-in-header', vector('lfh', 'X-A: 1\nContent-Length: 47\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`)],
  ['bare-cr-in-header', vector('crh', 'X-A: 1\rTransfer-Encoding: chunked\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`)],
  ['nul-in-header-value', vector('nul', 'X-A: a\x00b\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`)],
  ['ctl-in-header-value', vector('ctl', 'X-A: a\x01b\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`)],
  ['forbidden-header-name', vector('name', 'X(A): 1\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`)],
  ['empty-header-name', vector('empty', ': 1\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`)],
  ['duplicate-host', `GET /attack/hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n${SMUGGLED}`],
  ['space-in-target', `GET /attack/a b HTTP/1.1\r\nHost: x\r\n\r\n${SMUGGLED}`],
  ['bad-version', `GET /attack/ver HTTP/1.2\r\nHost: x\r\n\r\n${SMUGGLED}`],
];

describe('HTTP/1.1 request smuggling vectors', () => {
  it.each(vectors)('%s → 400, connection closed, nothing forwarded', async (_name, bytes) => {
    const good = goodClient(p.port);
    const r = await rawExchange(p.port, bytes, 3_000);
    const results = await good.stop();
    expect(statusOf(r.text)).toBe(400);
    // Exactly one response: the smuggled request was never parsed as a second one.
    expect(responseCount(r.text)).toBe(1);
    expect(r.text.toLowerCase()).toContain('connection: close');
    expect(r.closed).toBe(true);
    expect(p.leaked()).toEqual([]);
    expect(results.length).toBeGreaterThan(0);
    expect(results.every((x) => x.ok)).toBe(true);
    // Byte-level: not one byte of the attack (not even a head later reset) reached an upstream socket.
    const r2 = await rawExchange(q.port, bytes, 3_000);
    expect(statusOf(r2.text)).toBe(400);
    expect(rawUp.conns.map((c) => c.data).join('')).not.toContain('/attack');
  });

  it.each(vectors.filter(([n]) => n.startsWith('chunk-')))(
    '%s delivered in two reads (head first): the smuggled request never reaches an upstream socket, both connections are closed',
    async (_name, bytes) => {
      const split = bytes.indexOf('\r\n\r\n') + 4;
      const before = rawUp.conns.length;
      const r = await new Promise<{ text: string; closed: boolean }>((resolve) => {
        const c = net.connect(q.port, '127.0.0.1');
        let text = '';
        const t = setTimeout(() => {
          c.destroy();
          resolve({ text, closed: false });
        }, 5_000);
        c.on('data', (d) => {
          text += d.toString('latin1');
        });
        c.on('error', () => {});
        c.on('close', () => {
          clearTimeout(t);
          resolve({ text, closed: true });
        });
        c.on('connect', () => {
          c.write(bytes.slice(0, split));
          setTimeout(() => c.write(bytes.slice(split)), 150);
        });
      });
      expect(r.closed).toBe(true);
      // The raw upstream answers as soon as it sees a head (legal before the body ends), so the
      // client sees either that early 200 or meshlet's 400 — and never a response to the smuggled request.
      expect([200, 400]).toContain(statusOf(r.text));
      expect(responseCount(r.text)).toBe(1);
      const data = rawUp.conns.slice(before).map((c) => c.data).join('') + rawUp.conns.map((c) => c.data).join('');
      expect(data).not.toContain('/attack/smuggled');
      // Any upstream connection that carried the (valid) head was closed, never reused.
      await until(() => rawUp.conns.every((c) => !c.data.includes('POST /attack/') || c.closed), 5_000, 'tainted upstream connections closed');
    },
  );

  it('a well-formed pipelined pair still works (the vectors are not rejected for pipelining)', async () => {
    const before = p.echo.requests.length;
    const r = await rawExchange(
      p.port,
      'POST /good HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /good HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      3_000,
    );
    expect(responseCount(r.text)).toBe(2);
    expect(p.echo.requests.length - before).toBe(2);
    expect(p.echo.requests.at(-2)?.body).toBe('hello');
  });
});

describe('malformed upstream responses', () => {
  const bad: [string, string][] = [
    ['conflicting content-length', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc'],
    ['content-length with transfer-encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'],
    ['invalid status code', 'HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n'],
    ['not HTTP at all', 'SSH-2.0-OpenSSH_9.0\r\n\r\n'],
    ['bare LF in headers', 'HTTP/1.1 200 OK\nContent-Length: 0\n\n'],
    ['NUL in a header value', 'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n'],
    ['space before colon', 'HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n'],
    ['101 response headers (Envoy default limit 100)', `HTTP/1.1 200 OK\r\n${'x-r: 1\r\n'.repeat(101)}Content-Length: 0\r\n\r\n`],
    ['a response head over 60 KiB', `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(61 * 1024)}\r\nContent-Length: 0\r\n\r\n`],
    ['an interim 1xx response followed by a garbage head', 'HTTP/1.1 199 Odd\r\n\r\n\x00\x01\x02 bad\r\n\r\n'],
  ];

  it.each(bad)('%s → 502 and the upstream connection is not reused', async (_name, response) => {
    // First connection answers malformed, later connections answer well (and record the path).
    const up = await startRawUpstream((head, conn) =>
      conn === 0 ? response : `HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Conn: ${conn}\r\n\r\nok`,
    );
    const q = await startProxied({ upstreamPort: up.port });
    try {
      const first = await getOnce(q.port, '/attack/first');
      expect(first.status).toBe(502);
      const second = await getOnce(q.port, '/good');
      expect(second.status).toBe(200);
      expect(second.body).toBe('ok');
      // The second request went over a fresh upstream connection; the bad one was closed.
      expect(up.conns.length).toBe(2);
      expect(up.conns[0]!.closed).toBe(true);
      expect(up.conns[0]!.data).not.toContain('/good');
      expect(up.conns[1]!.data).toContain('GET /good ');
    } finally {
      await up.close();
    }
  });

  it('a chunked upstream body with an invalid chunk size resets the downstream response and the connection is dropped', async () => {
    const up = await startRawUpstream((_head, conn) =>
      conn === 0
        ? 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'
        : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    );
    const q = await startProxied({ upstreamPort: up.port });
    try {
      // The head was valid, so like Envoy the downstream either gets a 502 (nothing sent yet) or
      // sees its connection reset mid-response; never the bytes after the bad chunk size.
      const r = await rawExchange(q.port, 'GET /attack/chunk HTTP/1.1\r\nHost: x\r\n\r\n', 3_000);
      expect(r.closed).toBe(true);
      expect([0, 200, 502]).toContain(statusOf(r.text));
      expect(r.text).not.toContain('abc');
      await until(() => up.conns[0]!.closed, 5_000, 'bad upstream connection closed');
      const second = await getOnce(q.port, '/good');
      expect(second.status).toBe(200);
      expect(up.conns.length).toBe(2);
    } finally {
      await up.close();
    }
  });
});
