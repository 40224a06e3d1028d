/**
 * Unit tests of the HTTP/2 ⇄ neutral-head translation (no sockets: pure functions).
 */
import { describe, expect, it } from 'vitest';
import type { RequestHead } from '../codec';
import {
  decodeRequestHead,
  decodeResponseHead,
  decodeTrailers,
  encodeRequestHeaders,
  encodeResponseHeaders,
  encodeTrailers,
} from './headers';

function head(over: Partial<RequestHead> = {}): RequestHead {
  return {
    method: 'GET',
    path: '/p',
    authority: 'a.test',
    scheme: 'http',
    protocol: 'HTTP/1.1',
    headers: [],
    contentLength: 0,
    ...over,
  };
}

describe('decodeRequestHead', () => {
  it('splits pseudo-headers off, keeps order of the rest and merges cookies', () => {
    const h = decodeRequestHead(
      [
        ':method',
        'POST',
        ':path',
        '/x?y=1',
        ':authority',
        'svc',
        ':scheme',
        'https',
        'x-a',
        '1',
        'cookie',
        'a=1',
        'x-b',
        '2',
        'cookie',
        'b=2',
        'content-length',
        '12',
      ],
      false,
      false,
    );
    expect(h).toEqual({
      method: 'POST',
      path: '/x?y=1',
      authority: 'svc',
      scheme: 'https',
      protocol: 'HTTP/2',
      headers: ['x-a', '1', 'cookie', 'a=1; b=2', 'x-b', '2', 'content-length', '12'],
      contentLength: 12,
    });
  });

  it('uses host when :authority is absent, defaults scheme by transport, drops te other than trailers', () => {
    const h = decodeRequestHead(
      [':method', 'GET', ':path', '/', 'host', 'h.test', 'te', 'gzip'],
      true,
      true,
    ) as RequestHead;
    expect(h.authority).toBe('h.test');
    expect(h.scheme).toBe('https');
    expect(h.headers).toEqual([]);
    expect(h.contentLength).toBe(0);
    const t = decodeRequestHead([':method', 'POST', ':path', '/', 'te', 'trailers'], false, false) as RequestHead;
    expect(t.headers).toEqual(['te', 'trailers']);
    expect(t.contentLength).toBe(-1);
  });

  it('maps extended CONNECT to the HTTP/1.1 upgrade shape and plain CONNECT to authority-form', () => {
    const ws = decodeRequestHead(
      [':method', 'CONNECT', ':protocol', 'WebSocket', ':path', '/chat', ':authority', 'w', ':scheme', 'http'],
      false,
      false,
    ) as RequestHead;
    expect(ws.method).toBe('GET');
    expect(ws.upgrade).toBe('websocket');
    expect(ws.path).toBe('/chat');
    const c = decodeRequestHead([':method', 'CONNECT', ':authority', 'db:5432'], false, false) as RequestHead;
    expect(c.method).toBe('CONNECT');
    expect(c.path).toBe('db:5432');
    expect(c.upgrade).toBeUndefined();
  });

  it('rejects malformed requests with a reason', () => {
    expect(decodeRequestHead([':path', '/'], true, false)).toBe('missing :method');
    expect(decodeRequestHead([':method', 'GET'], true, false)).toBe('missing :path');
    expect(decodeRequestHead([':method', 'CONNECT'], true, false)).toBe('missing :authority on CONNECT');
    expect(decodeRequestHead([':method', 'GET', ':path', '/', ':bogus', 'x'], true, false)).toBe(
      'unknown pseudo-header :bogus',
    );
    expect(decodeRequestHead([':method', 'POST', ':path', '/', 'content-length', 'abc'], false, false)).toBe(
      'invalid content-length',
    );
  });
});

describe('encodeRequestHeaders', () => {
  it('drops connection-specific headers and host, keeps te: trailers, repeats → arrays', () => {
    const obj = encodeRequestHeaders(
      head({
        headers: [
          'connection',
          'keep-alive',
          'keep-alive',
          'timeout=5',
          'transfer-encoding',
          'chunked',
          'upgrade',
          'x',
          'proxy-connection',
          'close',
          'host',
          'other',
          'te',
          'trailers',
          'x-m',
          '1',
          'x-m',
          '2',
        ],
      }),
      'http',
    );
    expect(obj).toEqual({
      ':method': 'GET',
      ':scheme': 'http',
      ':authority': 'a.test',
      ':path': '/p',
      te: 'trailers',
      'x-m': ['1', '2'],
    });
    expect(encodeRequestHeaders(head({ headers: ['te', 'gzip'] }), 'http').te).toBeUndefined();
  });

  it('leaves :authority to node when the request has none (HTTP/1.0 without Host)', () => {
    expect(':authority' in encodeRequestHeaders(head({ authority: '' }), 'http')).toBe(false);
  });

  it("keeps the request's :scheme, falling back to the transport's", () => {
    expect(encodeRequestHeaders(head({ scheme: 'http' }), 'https')[':scheme']).toBe('http');
    expect(encodeRequestHeaders(head({ scheme: '' }), 'https')[':scheme']).toBe('https');
  });

  it('turns an HTTP/1.1 upgrade into extended CONNECT and CONNECT into authority-only', () => {
    const ws = encodeRequestHeaders(head({ upgrade: 'websocket', headers: ['sec-websocket-version', '13'] }), 'http');
    expect(ws).toEqual({
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': 'http',
      ':authority': 'a.test',
      ':path': '/p',
      'sec-websocket-version': '13',
    });
    const c = encodeRequestHeaders(head({ method: 'CONNECT', path: 'db:5432', authority: 'db:5432' }), 'http');
    expect(c).toEqual({ ':method': 'CONNECT', ':authority': 'db:5432' });
  });
});

describe('response and trailers', () => {
  it('encodes responses: 101 to an upgrade becomes 200; repeated single-value headers keep the first', () => {
    const r = encodeResponseHeaders(
      { status: 101, headers: ['upgrade', 'websocket', 'connection', 'upgrade', 'x-a', '1'], contentLength: -1 },
      true,
    );
    expect(r).toEqual({ ':status': 200, 'x-a': '1' });
    const d = encodeResponseHeaders(
      {
        status: 200,
        headers: ['content-type', 'text/plain', 'content-type', 'text/html', 'set-cookie', 'a', 'set-cookie', 'b'],
        contentLength: -1,
      },
      false,
    );
    expect(d).toEqual({ ':status': 200, 'content-type': 'text/plain', 'set-cookie': ['a', 'b'] });
  });

  it('decodes responses and trailers from raw arrays', () => {
    expect(decodeResponseHead([':status', '404', 'content-length', '3', 'x', 'y'], false)).toEqual({
      status: 404,
      headers: ['content-length', '3', 'x', 'y'],
      contentLength: 3,
    });
    expect(decodeResponseHead([':status', '200', 'grpc-status', '0'], true).contentLength).toBe(0);
    expect(decodeTrailers(['grpc-status', '0', 'grpc-message', 'ok'])).toEqual([
      'grpc-status',
      '0',
      'grpc-message',
      'ok',
    ]);
    expect(encodeTrailers(['grpc-status', '0', 'x', '1', 'x', '2'])).toEqual({ 'grpc-status': '0', x: ['1', '2'] });
  });
});
