/**
 * Serialisation helpers shared by the HTTP/1.1 server and client codecs: header blocks as one
 * latin1 string, and "prefix + body + suffix" writes coalesced into a single socket write.
 *
 * Leans towards fewer syscalls over fewer copies for small messages: a body chunk up to
 * {@link COALESCE_LIMIT} bytes is copied once into the same Buffer as the head / chunk framing so
 * the kernel sees one write; larger chunks are written as-is between cork()/uncork().
 */
import type { Socket } from 'node:net';
import type { HeaderList } from '../codec';
import { latin1Write } from './chars';

/** Bodies up to this size are copied next to their framing (one write); larger ones are not. */
export const COALESCE_LIMIT = 16 * 1024;

/** appendHeaders flags: skip `upgrade` (the codec writes its own) / skip `host` (requests). */
export const SKIP_UPGRADE = 1;
export const SKIP_HOST = 2;

/** Set by {@link appendHeaders}: whether the list carried a content-length (and its value). */
export const headerScan = { contentLength: -1 };

/**
 * Append `name: value\r\n` for each header to `str`, skipping the framing/connection headers the
 * codec writes itself (connection, transfer-encoding, keep-alive, proxy-connection, upgrade when
 * `skip` has SKIP_UPGRADE; host with SKIP_HOST). Records a content-length value in {@link headerScan}.
 */
export function appendHeaders(str: string, headers: HeaderList, skip: number): string {
  headerScan.contentLength = -1;
  const n = headers.length;
  for (let i = 0; i < n; i += 2) {
    const name = headers[i];
    switch (name.length) {
      case 4:
        if ((skip & SKIP_HOST) !== 0 && name === 'host') continue;
        break;
      case 7:
        if ((skip & SKIP_UPGRADE) !== 0 && name === 'upgrade') continue;
        break;
      case 10:
        if (name === 'connection' || name === 'keep-alive') continue;
        break;
      case 14:
        if (name === 'content-length') {
          if (headerScan.contentLength !== -1) continue; // never emit two
          headerScan.contentLength = parseContentLength(headers[i + 1]);
          if (headerScan.contentLength === -1) continue; // drop a malformed value
        }
        break;
      case 16:
        if (name === 'proxy-connection') continue;
        break;
      case 17:
        if (name === 'transfer-encoding') continue;
        break;
    }
    str += `${name}: ${headers[i + 1]}\r\n`;
  }
  return str;
}

function parseContentLength(v: string): number {
  const len = v.length;
  if (len === 0 || len > 15) return -1;
  let n = 0;
  for (let i = 0; i < len; i++) {
    const d = v.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * Write `prefix` (latin1) + `chunk` + `suffix` (latin1) as one socket write when the chunk is small,
 * otherwise as three corked writes. Returns what the last socket.write returned.
 */
export function writeFramed(socket: Socket, prefix: string, chunk: Buffer | undefined, suffix: string): boolean {
  const clen = chunk === undefined ? 0 : chunk.length;
  if (clen === 0) {
    const s = prefix + suffix;
    return s.length === 0 ? socket.writableLength < socket.writableHighWaterMark : socket.write(s, 'latin1');
  }
  if (prefix.length === 0 && suffix.length === 0) return socket.write(chunk!);
  if (clen <= COALESCE_LIMIT) {
    const plen = prefix.length;
    const out = Buffer.allocUnsafe(plen + clen + suffix.length);
    if (plen > 0) latin1Write(out, prefix, 0);
    chunk!.copy(out, plen);
    if (suffix.length > 0) latin1Write(out, suffix, plen + clen);
    return socket.write(out);
  }
  socket.cork();
  if (prefix.length > 0) socket.write(prefix, 'latin1');
  let ok = socket.write(chunk!);
  if (suffix.length > 0) ok = socket.write(suffix, 'latin1');
  socket.uncork();
  return ok;
}
