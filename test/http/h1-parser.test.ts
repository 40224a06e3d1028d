import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HeaderList } from '../../proxy/http/codec';
import { DEFAULT_H1_LIMITS, H1Parser, type H1ParserHandler, type H1ParserLimits } from '../../proxy/http/h1/parser';

interface Msg {
  method: string;
  path: string;
  authority: string;
  scheme: string;
  status: number;
  versionMinor: number;
  headers: HeaderList;
  contentLength: number;
  bodyKind: string;
  keepAlive: boolean;
  upgrade?: string;
  expectContinue: boolean;
  tunnel: boolean;
  body: Buffer;
  bodyEnded: boolean;
  trailers?: HeaderList;
  complete: boolean;
}

/** Records everything the parser reports; optionally stops after each message. */
class Recorder implements H1ParserHandler {
  msgs: Msg[] = [];
  error: { status: number; detail: string } | undefined;
  chunks: Buffer[] = [];
  constructor(private readonly continueAfterMessage = true) {}
  onMessageHead(p: H1Parser): void {
    this.chunks = [];
    this.msgs.push({
      method: p.method,
      path: p.path,
      authority: p.authority,
      scheme: p.scheme,
      status: p.status,
      versionMinor: p.versionMinor,
      headers: p.headers,
      contentLength: p.contentLength,
      bodyKind: p.bodyKind,
      keepAlive: p.keepAlive,
      upgrade: p.upgrade,
      expectContinue: p.expectContinue,
      tunnel: p.tunnel,
      body: Buffer.alloc(0),
      bodyEnded: false,
      complete: false,
    });
  }
  onMessageBody(chunk: Buffer, end: boolean): void {
    const m = this.msgs[this.msgs.length - 1];
    expect(m.bodyEnded).toBe(false);
    this.chunks.push(Buffer.from(chunk));
    m.body = Buffer.concat(this.chunks);
    m.bodyEnded = end;
  }
  onMessageTrailers(trailers: HeaderList): void {
    const m = this.msgs[this.msgs.length - 1];
    m.trailers = trailers;
    m.bodyEnded = true;
  }
  onMessageComplete(): boolean {
    this.msgs[this.msgs.length - 1].complete = true;
    return this.continueAfterMessage;
  }
  onParseError(status: number, detail: string): void {
    this.error = { status, detail };
  }
}

function parseAll(input: string | Buffer, isRequest = true, limits?: H1ParserLimits): Recorder {
  const r = new Recorder();
  const p = new H1Parser(isRequest, r, limits);
  p.execute(typeof input === 'string' ? Buffer.from(input, 'latin1') : input);
  return r;
}

/** Feed the input split at `cut` (two reads); returns the recorder. */
function parseSplit(input: Buffer, cut: number, isRequest = true): Recorder {
  const r = new Recorder();
  const p = new H1Parser(isRequest, r);
  p.execute(input.subarray(0, cut));
  p.execute(input.subarray(cut));
  return r;
}

function strip(m: Msg) {
  return { ...m, body: m.body.toString('latin1') };
}

describe('H1Parser requests', () => {
  it('parses a GET: method, path, authority from Host, lower-case names, OWS-trimmed values', () => {
    const r = parseAll(
      'GET /a/b?c=d HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent:  curl/8 \t\r\nAccept: */*\r\n\r\n',
    );
    expect(r.error).toBeUndefined();
    expect(r.msgs).toHaveLength(1);
    const m = r.msgs[0];
    expect(m.method).toBe('GET');
    expect(m.path).toBe('/a/b?c=d');
    expect(m.authority).toBe('example.com:8080');
    expect(m.headers).toEqual(['user-agent', 'curl/8', 'accept', '*/*']);
    expect(m.contentLength).toBe(0);
    expect(m.bodyKind).toBe('none');
    expect(m.keepAlive).toBe(true);
    expect(m.complete).toBe(true);
  });

  it('removes hop-by-hop headers and those named in Connection, keeps te: trailers', () => {
    const r = parseAll(
      'GET / HTTP/1.1\r\nhost: h\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\n' +
        'TE: trailers, deflate\r\nx-secret: s\r\nx-kept: k\r\n\r\n',
    );
    expect(r.error).toBeUndefined();
    expect(r.msgs[0].headers).toEqual(['te', 'trailers', 'x-kept', 'k']);
  });

  it('delivers a Content-Length body identically when split at every byte position', () => {
    const input = Buffer.from('POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world', 'latin1');
    for (let cut = 0; cut <= input.length; cut++) {
      const r = parseSplit(input, cut);
      expect(r.error, `cut ${cut}`).toBeUndefined();
      expect(r.msgs).toHaveLength(1);
      expect(r.msgs[0].body.toString()).toBe('hello world');
      expect(r.msgs[0].bodyEnded).toBe(true);
      expect(r.msgs[0].headers).toEqual(['content-length', '11']);
      expect(r.msgs[0].complete).toBe(true);
    }
  });

  it('decodes chunked bodies with extensions and trailers split at every byte position', () => {
    const input = Buffer.from(
      'POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n',
      'latin1',
    );
    const whole = strip(parseAll(input).msgs[0]);
    expect(whole.body).toBe('hello 0123456789');
    expect(whole.trailers).toEqual(['x-checksum', 'abc', 'x-other', '1']);
    expect(whole.contentLength).toBe(-1);
    expect(whole.bodyKind).toBe('chunked');
    for (let cut = 0; cut <= input.length; cut++) {
      const r = parseSplit(input, cut);
      expect(r.error, `cut ${cut}`).toBeUndefined();
      expect(r.msgs.map(strip), `cut ${cut}`).toEqual([whole]);
    }
  });

  it('ends a chunked body without trailers with an empty final chunk, at every split', () => {
    const input = Buffer.from(
      'PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      'latin1',
    );
    for (let cut = 0; cut <= input.length; cut++) {
      const r = parseSplit(input, cut);
      expect(r.error, `cut ${cut}`).toBeUndefined();
      expect(r.msgs[0].body.toString()).toBe('abc');
      expect(r.msgs[0].bodyEnded).toBe(true);
      expect(r.msgs[0].trailers).toBeUndefined();
      expect(r.msgs[0].complete).toBe(true);
    }
  });

  it('passes body bytes as views into the input (no copies)', () => {
    const input = Buffer.from('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd', 'latin1');
    const seen: Buffer[] = [];
    const p = new H1Parser(true, {
      onMessageHead() {},
      onMessageBody(chunk) {
        seen.push(chunk);
      },
      onMessageTrailers() {},
      onMessageComplete: () => true,
      onParseError() {},
    });
    p.execute(input);
    expect(seen).toHaveLength(1);
    expect(seen[0].buffer).toBe(input.buffer);
    expect(seen[0].byteOffset).toBe(input.byteOffset + input.length - 4);
  });

  it('parses pipelined requests in order and stops between them when asked', () => {
    const input = Buffer.from(
      'GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nokGET /3 HTTP/1.1\r\nHost: h\r\n\r\n',
      'latin1',
    );
    const all = parseAll(input);
    expect(all.msgs.map((m) => m.path)).toEqual(['/1', '/2', '/3']);

    const r = new Recorder(false);
    const p = new H1Parser(true, r);
    let pos = p.execute(input);
    const paths: string[] = [r.msgs[0].path];
    while (pos < input.length) {
      p.reset();
      const rest = input.subarray(pos);
      pos += p.execute(rest);
      paths.push(r.msgs[r.msgs.length - 1].path);
    }
    expect(paths).toEqual(['/1', '/2', '/3']);
    expect(r.msgs[1].body.toString()).toBe('ok');
  });

  it('ignores empty lines before a request line', () => {
    const r = parseAll('\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n');
    expect(r.error).toBeUndefined();
    expect(r.msgs).toHaveLength(1);
  });

  it('absolute-form: authority from the URI, path in origin-form, Host ignored', () => {
    const r = parseAll('GET http://Svc.NS:8080/x/y?z=1 HTTP/1.1\r\nHost: other\r\n\r\n');
    expect(r.error).toBeUndefined();
    expect(r.msgs[0]).toMatchObject({ authority: 'svc.ns:8080', path: '/x/y?z=1', scheme: 'http' });
    expect(parseAll('GET https://a.b HTTP/1.1\r\nHost: a.b\r\n\r\n').msgs[0]).toMatchObject({
      authority: 'a.b',
      path: '/',
      scheme: 'https',
    });
    expect(parseAll('GET http://a.b?q HTTP/1.1\r\n\r\n').msgs[0]).toMatchObject({ authority: 'a.b', path: '/?q' });
  });

  it('CONNECT authority-form is a tunnel with no body; OPTIONS * is accepted', () => {
    const r = parseAll('CONNECT db.internal:5432 HTTP/1.1\r\n\r\n');
    expect(r.error).toBeUndefined();
    expect(r.msgs[0]).toMatchObject({
      method: 'CONNECT',
      path: 'db.internal:5432',
      authority: 'db.internal:5432',
      tunnel: true,
    });
    expect(parseAll('OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n').msgs[0].path).toBe('*');
    expect(parseAll('GET * HTTP/1.1\r\nHost: h\r\n\r\n').error?.status).toBe(400);
    expect(parseAll('CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n').error?.status).toBe(400);
  });

  it('sets upgrade only when Connection includes upgrade', () => {
    const up = parseAll(
      'GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: k\r\n\r\n',
    );
    expect(up.msgs[0].upgrade).toBe('websocket');
    expect(up.msgs[0].headers).toEqual(['sec-websocket-key', 'k']);
    const no = parseAll('GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n');
    expect(no.msgs[0].upgrade).toBeUndefined();
    expect(no.msgs[0].headers).toEqual([]);
  });

  it('applies HTTP/1.0 and HTTP/1.1 keep-alive rules', () => {
    expect(parseAll('GET / HTTP/1.0\r\n\r\n').msgs[0]).toMatchObject({
      keepAlive: false,
      versionMinor: 0,
      authority: '',
    });
    expect(parseAll('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n').msgs[0].keepAlive).toBe(true);
    expect(parseAll('GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n').msgs[0].keepAlive).toBe(false);
    expect(parseAll('GET / HTTP/1.1\r\nHost: h\r\n\r\n').msgs[0].keepAlive).toBe(true);
  });

  it('lifts Expect: 100-continue and collapses identical Content-Length values', () => {
    const r = parseAll(
      'PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc',
    );
    expect(r.error).toBeUndefined();
    expect(r.msgs[0].expectContinue).toBe(true);
    expect(r.msgs[0].headers).toEqual(['content-length', '3']);
    const list = parseAll('PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc');
    expect(list.error).toBeUndefined();
    expect(list.msgs[0].headers).toEqual(['content-length', '3']);
  });
});

describe('H1Parser rejects malformed and ambiguous requests', () => {
  const cases: [string, string, number][] = [
    [
      'CL and TE together',
      'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
    ],
    ['differing CL values', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400],
    ['differing CL list', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\nabcd', 400],
    ['signed CL', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc', 400],
    ['hex CL', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x3\r\n\r\nabc', 400],
    ['empty CL', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n', 400],
    ['CL with inner space', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n', 400],
    ['CL too large', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999\r\n\r\n', 400],
    [
      'TE chunked, identity',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
      400,
    ],
    ['TE identity', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n', 400],
    ['TE xchunked', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n', 400],
    ['TE gzip, chunked', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 400],
    [
      'TE twice',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
    ],
    ['TE with VT', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n', 400],
    ['TE folded', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n', 400],
    ['TE in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    [
      'non-hex chunk size',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n',
      400,
    ],
    ['empty chunk size', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\nab\r\n0\r\n\r\n', 400],
    [
      'chunk size overflow',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n20000000000000\r\nab',
      400,
    ],
    [
      'chunk size 17 hex digits',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\na\r\n0\r\n\r\n',
      400,
    ],
    [
      'chunk ext with NUL',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\x00\r\na\r\n0\r\n\r\n',
      400,
    ],
    [
      'chunk ext with LF',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nb\r\na\r\n0\r\n\r\n',
      400,
    ],
    [
      'bare LF after chunk size',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n',
      400,
    ],
    [
      'bare LF after chunk data',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\n0\r\n\r\n',
      400,
    ],
    [
      'chunk data longer than size',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n',
      400,
    ],
    ['bare LF in head', 'GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n', 400],
    ['bare LF request line', 'GET / HTTP/1.1\nHost: h\r\n\r\n', 400],
    ['only bare LFs', 'GET / HTTP/1.1\nHost: h\n\n', 400],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n', 400],
    ['space before colon', 'GET / HTTP/1.1\r\nHost: h\r\nX-A : a\r\n\r\n', 400],
    ['tab before colon', 'GET / HTTP/1.1\r\nHost: h\r\nX-A\t: a\r\n\r\n', 400],
    ['non-token header name', 'GET / HTTP/1.1\r\nHost: h\r\nX(A): a\r\n\r\n', 400],
    ['empty header name', 'GET / HTTP/1.1\r\nHost: h\r\n: a\r\n\r\n', 400],
    ['no colon', 'GET / HTTP/1.1\r\nHost: h\r\nX-A\r\n\r\n', 400],
    ['NUL in value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n', 400],
    ['CR in value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n', 400],
    ['DEL in value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n', 400],
    ['invalid method', 'G(T / HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['lower-case version', 'GET / http/1.1\r\nHost: h\r\n\r\n', 400],
    ['HTTP/2.0 version', 'GET / HTTP/2.0\r\nHost: h\r\n\r\n', 400],
    ['HTTP/1.2 version', 'GET / HTTP/1.2\r\nHost: h\r\n\r\n', 400],
    ['HTTP/0.9 style', 'GET /\r\n\r\n', 400],
    ['double space', 'GET  / HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['space in target', 'GET /a b HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['relative target', 'GET a/b HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['missing Host in 1.1', 'GET / HTTP/1.1\r\nX: y\r\n\r\n', 400],
    ['two Host headers', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
    ['userinfo in absolute-form', 'GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n', 400],
  ];
  for (const [name, input, status] of cases) {
    it(name, () => {
      const r = parseAll(input);
      expect(r.error?.status).toBe(status);
      // Nothing was handed out for errors found in the head or in the body bytes of the same read.
      expect(r.msgs).toHaveLength(0);
    });
  }

  it('rejects a bare LF in a head that is still incomplete', () => {
    const r = new Recorder();
    new H1Parser(true, r).execute(Buffer.from('GET / HTTP/1.1\nHost: h\n', 'latin1'));
    expect(r.error?.status).toBe(400);
  });

  it('431 for too many headers and for an oversized head; 414 for a long request line', () => {
    const many = `GET / HTTP/1.1\r\nHost: h\r\n${'x-a: 1\r\n'.repeat(100)}\r\n`;
    expect(parseAll(many).error?.status).toBe(431);
    const limits = { ...DEFAULT_H1_LIMITS, maxHeaderBytes: 1024 };
    expect(
      parseAll(`GET / HTTP/1.1\r\nHost: h\r\nx-big: ${'v'.repeat(2000)}\r\n\r\n`, true, limits).error?.status,
    ).toBe(431);
    expect(parseAll(`GET /${'a'.repeat(17 * 1024)} HTTP/1.1\r\nHost: h\r\n\r\n`).error?.status).toBe(414);
    // Incomplete heads are bounded too, without waiting for the end.
    const r = new Recorder();
    const p = new H1Parser(true, r, limits);
    p.execute(Buffer.from(`GET / HTTP/1.1\r\nHost: h\r\nx-big: ${'v'.repeat(600)}`, 'latin1'));
    expect(r.error).toBeUndefined();
    p.execute(Buffer.from('v'.repeat(600), 'latin1'));
    expect(r.error?.status).toBe(431);
    const r2 = new Recorder();
    const p2 = new H1Parser(true, r2);
    p2.execute(Buffer.from(`GET /${'a'.repeat(10 * 1024)}`, 'latin1'));
    expect(r2.error).toBeUndefined();
    p2.execute(Buffer.from('a'.repeat(7 * 1024), 'latin1'));
    expect(r2.error?.status).toBe(414);
  });
});

describe('H1Parser responses', () => {
  it('parses Content-Length, chunked and close-delimited bodies', () => {
    const cl = parseAll('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: x\r\n\r\nhi', false);
    expect(cl.msgs[0]).toMatchObject({ status: 200, contentLength: 2, keepAlive: true, complete: true });
    expect(cl.msgs[0].body.toString()).toBe('hi');

    const ch = parseAll(
      'HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\nx-t: 1\r\n\r\n',
      false,
    );
    expect(ch.error).toBeUndefined();
    expect(ch.msgs[0]).toMatchObject({ status: 201, contentLength: -1, bodyKind: 'chunked', trailers: ['x-t', '1'] });

    const r = new Recorder();
    const p = new H1Parser(false, r);
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\n\r\nuntil', 'latin1'));
    p.execute(Buffer.from(' close', 'latin1'));
    expect(r.msgs[0]).toMatchObject({ bodyKind: 'eof', keepAlive: false, complete: false });
    expect(p.finish()).toBe(true);
    expect(r.msgs[0].body.toString()).toBe('until close');
    expect(r.msgs[0]).toMatchObject({ bodyEnded: true, complete: true });
  });

  it('has no body for HEAD, 204, 304 and 1xx whatever the headers say', () => {
    const r = new Recorder();
    const p = new H1Parser(false, r);
    p.responseToHead = true;
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n', 'latin1'));
    expect(r.msgs[0]).toMatchObject({ bodyKind: 'none', contentLength: 500, complete: true });
    expect(parseAll('HTTP/1.1 204 No Content\r\n\r\n', false).msgs[0]).toMatchObject({
      bodyKind: 'none',
      complete: true,
    });
    expect(parseAll('HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n', false).msgs[0]).toMatchObject({
      bodyKind: 'none',
      complete: true,
    });
    const two = parseAll('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx', false);
    expect(two.msgs.map((m) => m.status)).toEqual([100, 200]);
  });

  it('101 and 2xx to CONNECT turn into tunnels', () => {
    const up = parseAll('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', false);
    expect(up.msgs[0]).toMatchObject({ tunnel: true, upgrade: 'websocket', headers: ['upgrade', 'websocket'] });
    const r = new Recorder();
    const p = new H1Parser(false, r);
    p.responseToConnect = true;
    p.execute(Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1'));
    expect(r.msgs[0]).toMatchObject({ tunnel: true, bodyKind: 'none' });
  });

  it('rejects malformed responses', () => {
    for (const bad of [
      'HTTP/1.1 2000 OK\r\n\r\n',
      'HTTP/1.1 20 OK\r\n\r\n',
      'HTTP/2 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnothex\r\n',
      'HTTP/1.1 200 OK\nContent-Length: 0\n\n',
      'garbage\r\n\r\n',
    ]) {
      const r = parseAll(bad, false);
      expect(r.error, JSON.stringify(bad)).toBeDefined();
    }
  });
});

describe('H1Parser properties (fast-check)', () => {
  it('chunked bodies survive any chunk sizes and any read boundaries', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 2000 }),
        fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 30 }),
        (bodyBytes, chunkSizes, readSizes) => {
          const body = Buffer.from(bodyBytes);
          const parts: Buffer[] = [
            Buffer.from('POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n', 'latin1'),
          ];
          let off = 0;
          let i = 0;
          while (off < body.length) {
            const n = Math.min(chunkSizes[i++ % chunkSizes.length], body.length - off);
            parts.push(
              Buffer.from(`${n.toString(16)}\r\n`, 'latin1'),
              body.subarray(off, off + n),
              Buffer.from('\r\n'),
            );
            off += n;
          }
          parts.push(Buffer.from('0\r\nx-t: 1\r\n\r\n', 'latin1'));
          const wire = Buffer.concat(parts);
          const r = new Recorder();
          const p = new H1Parser(true, r);
          let pos = 0;
          let j = 0;
          while (pos < wire.length) {
            const n = Math.min(readSizes[j++ % readSizes.length], wire.length - pos);
            p.execute(wire.subarray(pos, pos + n));
            pos += n;
          }
          expect(r.error).toBeUndefined();
          expect(r.msgs).toHaveLength(1);
          expect(r.msgs[0].body.equals(body)).toBe(true);
          expect(r.msgs[0].trailers).toEqual(['x-t', '1']);
          expect(r.msgs[0].complete).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('pipelined mixes of GET, Content-Length and chunked requests parse identically at any read boundaries', () => {
    const req = fc.oneof(
      fc.record({ kind: fc.constant('get' as const), path: fc.stringMatching(/^\/[a-z0-9]{0,12}$/) }),
      fc.record({ kind: fc.constant('cl' as const), body: fc.uint8Array({ maxLength: 300 }) }),
      fc.record({ kind: fc.constant('chunked' as const), body: fc.uint8Array({ minLength: 1, maxLength: 300 }) }),
    );
    fc.assert(
      fc.property(fc.array(req, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 97 }), (reqs, step) => {
        const parts: Buffer[] = [];
        for (const r of reqs) {
          if (r.kind === 'get') parts.push(Buffer.from(`GET ${r.path} HTTP/1.1\r\nHost: h\r\n\r\n`, 'latin1'));
          else if (r.kind === 'cl') {
            parts.push(
              Buffer.from(`POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: ${r.body.length}\r\n\r\n`, 'latin1'),
            );
            parts.push(Buffer.from(r.body));
          } else {
            parts.push(Buffer.from('POST /ch HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n', 'latin1'));
            parts.push(
              Buffer.from(`${r.body.length.toString(16)}\r\n`),
              Buffer.from(r.body),
              Buffer.from('\r\n0\r\n\r\n'),
            );
          }
        }
        const wire = Buffer.concat(parts);
        const rec = new Recorder();
        const p = new H1Parser(true, rec);
        for (let pos = 0; pos < wire.length; pos += step)
          p.execute(wire.subarray(pos, Math.min(pos + step, wire.length)));
        expect(rec.error).toBeUndefined();
        expect(rec.msgs).toHaveLength(reqs.length);
        reqs.forEach((r, i) => {
          const m = rec.msgs[i];
          expect(m.complete).toBe(true);
          if (r.kind === 'get') expect(m.path).toBe(r.path);
          else expect(m.body.equals(Buffer.from(r.body))).toBe(true);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on arbitrary bytes: it either reports an error or parses', () => {
    const prefix = fc.constantFrom(
      '',
      'GET / HTTP/1.1\r\nHost: h\r\n',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n',
    );
    fc.assert(
      fc.property(prefix, fc.uint8Array({ maxLength: 512 }), fc.boolean(), (pre, junk, isRequest) => {
        const r = new Recorder();
        const p = new H1Parser(isRequest, r);
        expect(() => {
          p.execute(Buffer.concat([Buffer.from(pre, 'latin1'), Buffer.from(junk)]));
          p.finish();
        }).not.toThrow();
        if (r.error !== undefined) expect([400, 414, 431, 502]).toContain(r.error.status);
      }),
      { numRuns: 500 },
    );
  });
});
