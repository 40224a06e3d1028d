/**
 * Protocol detection from the first bytes of a connection (Envoy's tls_inspector and
 * http_inspector listener filters in one place).
 *
 * Leans towards availability: one read with a bounded wait; whatever is not recognised within
 * that read is opaque TCP, and a timeout never stalls a connection forever (server-first protocols
 * such as MySQL or SMTP hit the timeout and continue as raw bytes). The bytes read are always
 * unshifted back into the socket, so nothing is lost. Ports whose inspectors are disabled
 * (listener filter `filter_disabled`, how opaque and server-first ports are configured) skip
 * detection altogether; see listeners/listener.ts. Timing and outcomes are counted in stats.ts.
 */
import type { Socket } from 'node:net';
import type { Sniffed } from '../listeners/types';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

/** Classify a first chunk. Pure; exported for tests and fuzzing. */
export function classify(buf: Buffer): Sniffed {
  if (buf.length >= 1 && buf[0] === 0x16) {
    const hello = parseClientHello(buf);
    if (hello) return { transport: 'tls', sni: hello.sni, alpn: hello.alpn };
    if (buf.length < 6 || buf[1] === 0x03) return { transport: 'tls' };
  }
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (n >= 3 && buf.compare(H2_PREFACE, 0, n, 0, n) === 0) return { transport: 'raw_buffer', application: 'h2' };
  const sp = buf.indexOf(0x20);
  if (sp > 0 && sp <= 8) {
    const m = buf.toString('latin1', 0, sp);
    if (HTTP_METHODS.includes(m)) {
      const eol = buf.indexOf(0x0d);
      const line = buf.toString('latin1', 0, eol > 0 ? eol : Math.min(buf.length, 8192));
      if (line.endsWith(' HTTP/1.0')) return { transport: 'raw_buffer', application: 'http/1.0' };
      return { transport: 'raw_buffer', application: 'http/1.1' };
    }
  }
  return { transport: 'raw_buffer' };
}

/** SNI and ALPN from a TLS ClientHello record, or undefined when the bytes are not one. */
export function parseClientHello(buf: Buffer): { sni?: string; alpn?: string[] } | undefined {
  // TLS record: type(1)=22, version(2), length(2); handshake: type(1)=1, length(3), ...
  if (buf.length < 9 || buf[0] !== 0x16 || buf[5] !== 0x01) return undefined;
  const recLen = buf.readUInt16BE(3);
  const end = Math.min(buf.length, 5 + recLen);
  let p = 9; // after handshake header
  p += 2 + 32; // client_version, random
  if (p >= end) return undefined;
  p += 1 + buf[p]!; // session id
  if (p + 2 > end) return undefined;
  p += 2 + buf.readUInt16BE(p); // cipher suites
  if (p >= end) return undefined;
  p += 1 + buf[p]!; // compression methods
  if (p + 2 > end) return {};
  const extEnd = Math.min(end, p + 2 + buf.readUInt16BE(p));
  p += 2;
  const out: { sni?: string; alpn?: string[] } = {};
  while (p + 4 <= extEnd) {
    const type = buf.readUInt16BE(p);
    const len = buf.readUInt16BE(p + 2);
    const body = p + 4;
    if (body + len > extEnd) break;
    if (type === 0 && len >= 5) {
      // server_name list: len(2), type(1)=0, name len(2), name
      const nameLen = buf.readUInt16BE(body + 3);
      if (buf[body + 2] === 0 && body + 5 + nameLen <= body + len) {
        out.sni = buf.toString('latin1', body + 5, body + 5 + nameLen).toLowerCase();
      }
    } else if (type === 16 && len >= 2) {
      const listEnd = body + 2 + buf.readUInt16BE(body);
      const alpn: string[] = [];
      let q = body + 2;
      while (q < listEnd && q < body + len) {
        const l = buf[q]!;
        alpn.push(buf.toString('latin1', q + 1, q + 1 + l));
        q += 1 + l;
      }
      out.alpn = alpn;
    }
    p = body + len;
  }
  return out;
}

/**
 * Read once (bounded by `timeoutMs`; 0 waits for the first bytes however long), classify, put the bytes back, and call `done`. On timeout or
 * an empty read, `done(undefined)` — the caller treats the connection as opaque / server-first;
 * `timedOut` tells the timeout (nothing arrived in time) from the peer closing or failing.
 */
export function sniff(
  socket: Socket,
  timeoutMs: number,
  done: (s: Sniffed | undefined, timedOut: boolean) => void,
): void {
  let finished = false;
  let timedOut = false;
  const finish = (chunk: Buffer | undefined): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('error', onEnd);
    socket.pause();
    if (chunk) socket.unshift(chunk);
    done(chunk ? classify(chunk) : undefined, timedOut);
  };
  const onData = (c: Buffer): void => finish(c);
  const onEnd = (): void => finish(undefined);
  const onTimeout = (): void => {
    timedOut = true;
    finish(undefined);
  };
  // listener_filters_timeout 0 means no timeout (Envoy: "Specify 0 to disable the timeout").
  const timer = timeoutMs > 0 ? setTimeout(onTimeout, timeoutMs) : undefined;
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.once('error', onEnd);
  socket.resume();
}
