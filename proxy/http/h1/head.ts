/**
 * The head half of the HTTP/1.x parser: turns one complete head (start line + header lines, as a
 * latin1 string) into the per-message fields the codecs read, and decides body framing.
 *
 * Leans strict (see parser.ts for the full list of what is rejected). Values are never scanned
 * byte by byte in JavaScript: one native regular-expression scan rejects CTLs over the whole head,
 * and each line is split with native indexOf. Hop-by-hop headers are lifted out of `headers` here.
 * H1Parser (parser.ts) extends this class with buffering and body decoding.
 */
import type { HeaderList } from '../codec';
import { CR, equalsLower, HTAB, SP, splitList, TOKEN } from './chars';

export interface H1ParserLimits {
  /** Maximum size of the head (request/status line + headers), bytes. Envoy default 60 KiB. */
  readonly maxHeaderBytes: number;
  /** Maximum number of header fields. Envoy default 100. */
  readonly maxHeadersCount: number;
  /** Maximum request-line length (requests only), bytes; longer → 414. Default 16 KiB. */
  readonly maxRequestLineBytes: number;
}

export const DEFAULT_H1_LIMITS: H1ParserLimits = Object.freeze({
  maxHeaderBytes: 60 * 1024,
  maxHeadersCount: 100,
  maxRequestLineBytes: 16 * 1024,
});

/**
 * Control characters never allowed in a head or trailer section (HTAB, CR and LF are checked by
 * the line logic). A simple character class: V8 runs it as a native scan.
 */
// Rejecting control characters is the point of this pattern.
// eslint-disable-next-line no-control-regex
export const SECTION_CTL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;
/** Bytes not allowed in a request-target (SP is a delimiter, so it never reaches here). */
const TARGET_BAD = /[^\x21-\x7e]/;

export type H1BodyKind = 'none' | 'length' | 'chunked' | 'eof';

/** Per-message head fields and the head/framing logic; extended by H1Parser. */
export class H1Head {
  // ── per-message fields, valid from onMessageHead until reset() ──
  /** Request method as sent (case-sensitive token). '' for responses. */
  method = '';
  /** Origin-form path with query, '*' for OPTIONS *, authority for CONNECT. '' for responses. */
  path = '';
  /** Host header value, or the authority of an absolute-form / authority-form target. */
  authority = '';
  /** Scheme from an absolute-form target ('http' / 'https'); '' otherwise. */
  scheme = '';
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  versionMinor = 1;
  /** Response status code (responses only). */
  status = 0;
  /** Header list without hop-by-hop headers, names lower-case, values OWS-trimmed. */
  headers: HeaderList = [];
  /** Declared Content-Length; -1 when chunked / close-delimited; 0 when there is no body. */
  contentLength = 0;
  bodyKind: H1BodyKind = 'none';
  /** Whether the connection may carry another message after this one. */
  keepAlive = true;
  /** Lower-case Upgrade token when Connection includes `upgrade`. */
  upgrade: string | undefined = undefined;
  /** Request carried `Expect: 100-continue` (removed from headers). */
  expectContinue = false;
  /** CONNECT request, or a response that turns the connection into a tunnel (101 / 2xx to CONNECT). */
  tunnel = false;

  // ── response context, set by the client codec before each response ──
  /** The request was HEAD: the response has no body whatever its headers say. */
  responseToHead = false;
  /** The request was CONNECT: a 2xx response has no body and starts a tunnel. */
  responseToConnect = false;

  /** Header-scan scratch state (reset in parseHead). */
  private hostCount = 0;
  private clSeen = false;
  private teValue: string | undefined = undefined;
  private connectionClose = false;
  private connectionKeepAlive = false;
  private connectionUpgrade = false;
  private upgradeValue: string | undefined = undefined;
  private nominated: string[] | undefined = undefined;
  protected errorDetail = '';
  protected errorStatus = 400;

  constructor(
    protected readonly isRequest: boolean,
    protected readonly limits: H1ParserLimits = DEFAULT_H1_LIMITS,
  ) {}

  protected bad(status: number, detail: string): false {
    this.errorStatus = status;
    this.errorDetail = detail;
    return false;
  }

  /** Parse a complete head (every line ends with CRLF, final empty line excluded). */
  protected parseHead(s: string): boolean {
    this.headers = [];
    this.hostCount = 0;
    this.clSeen = false;
    this.contentLength = 0;
    this.teValue = undefined;
    this.connectionClose = false;
    this.connectionKeepAlive = false;
    this.connectionUpgrade = false;
    this.upgradeValue = undefined;
    this.upgrade = undefined;
    this.nominated = undefined;
    this.expectContinue = false;
    this.tunnel = false;
    this.authority = '';
    this.scheme = '';

    // One native scan for CTLs over the whole head (values are not scanned byte by byte in JS).
    if (SECTION_CTL.test(s)) return this.bad(this.isRequest ? 400 : 502, 'invalid character in header section');
    const first = s.indexOf('\n');
    if (first <= 0 || s.charCodeAt(first - 1) !== CR || s.indexOf('\r') !== first - 1) {
      return this.bad(400, 'bare LF or CR in start line');
    }
    if (this.isRequest) {
      if (first - 1 > this.limits.maxRequestLineBytes) return this.bad(414, 'request line too long');
      if (!this.parseRequestLine(s, first - 1)) return false;
    } else if (!this.parseStatusLine(s, first - 1)) {
      return false;
    }
    if (!this.parseFields(s, first + 1, this.headers, false)) return false;
    return this.isRequest ? this.requestFraming() : this.responseFraming();
  }

  private parseRequestLine(s: string, stop: number): boolean {
    const sp1 = s.indexOf(' ');
    if (sp1 <= 0 || sp1 >= stop) return this.bad(400, 'invalid request line');
    for (let i = 0; i < sp1; i++) {
      if (TOKEN[s.charCodeAt(i)] !== 1) return this.bad(400, 'invalid method');
    }
    const sp2 = s.indexOf(' ', sp1 + 1);
    if (sp2 === -1 || sp2 >= stop || sp2 === sp1 + 1) return this.bad(400, 'invalid request line');
    const target = s.slice(sp1 + 1, sp2);
    if (TARGET_BAD.test(target)) return this.bad(400, 'invalid request target');
    // "HTTP/1.0" or "HTTP/1.1" exactly.
    if (
      stop - sp2 !== 9 ||
      s.charCodeAt(sp2 + 1) !== 0x48 ||
      s.charCodeAt(sp2 + 2) !== 0x54 ||
      s.charCodeAt(sp2 + 3) !== 0x54 ||
      s.charCodeAt(sp2 + 4) !== 0x50 ||
      s.charCodeAt(sp2 + 5) !== 0x2f ||
      s.charCodeAt(sp2 + 6) !== 0x31 ||
      s.charCodeAt(sp2 + 7) !== 0x2e
    ) {
      return this.bad(400, 'invalid HTTP version');
    }
    const minor = s.charCodeAt(sp2 + 8);
    if (minor !== 0x30 && minor !== 0x31) return this.bad(400, 'invalid HTTP version');
    this.versionMinor = minor - 0x30;
    const method = s.slice(0, sp1);
    this.method = method;
    const c0 = s.charCodeAt(sp1 + 1);
    if (method === 'CONNECT') {
      // authority-form: host:port, nothing else.
      if (c0 === 0x2f || target.includes('/') || target.includes('@') || target.lastIndexOf(':') <= 0) {
        return this.bad(400, 'CONNECT requires authority-form target');
      }
      this.path = target;
      this.authority = target.toLowerCase();
      this.hostCount = -1; // the target is the authority; a Host header is not required
      this.tunnel = true;
      return true;
    }
    if (c0 === 0x2f) {
      this.path = target;
      return true;
    }
    if (c0 === 0x2a && sp2 === sp1 + 2) {
      if (method !== 'OPTIONS') return this.bad(400, 'asterisk-form is only valid for OPTIONS');
      this.path = '*';
      return true;
    }
    return this.parseAbsoluteForm(target);
  }

  /** absolute-form (explicit proxy): authority from the URI, path to origin-form. */
  private parseAbsoluteForm(target: string): boolean {
    let start: number;
    if (target.length > 7 && equalsLower(target.slice(0, 7), 'http://')) {
      this.scheme = 'http';
      start = 7;
    } else if (target.length > 8 && equalsLower(target.slice(0, 8), 'https://')) {
      this.scheme = 'https';
      start = 8;
    } else {
      return this.bad(400, 'invalid request target');
    }
    let end = start;
    while (end < target.length) {
      const c = target.charCodeAt(end);
      if (c === 0x2f || c === 0x3f || c === 0x23) break;
      if (c === 0x40) return this.bad(400, 'userinfo in request target');
      end++;
    }
    if (end === start) return this.bad(400, 'empty authority in request target');
    if (!validAuthority(target, start, end)) return this.bad(400, 'invalid authority in request target');
    this.authority = target.slice(start, end).toLowerCase();
    if (end === target.length) this.path = '/';
    else if (target.charCodeAt(end) === 0x2f) this.path = target.slice(end);
    else if (target.charCodeAt(end) === 0x3f) this.path = `/${target.slice(end)}`;
    else return this.bad(400, 'fragment in request target');
    this.hostCount = -1; // Host header is ignored when the target carries the authority.
    return true;
  }

  private parseStatusLine(s: string, stop: number): boolean {
    // HTTP/1.x SP 3DIGIT [SP reason]
    if (
      stop < 12 ||
      !s.startsWith('HTTP/1.') ||
      (s.charCodeAt(7) !== 0x30 && s.charCodeAt(7) !== 0x31) ||
      s.charCodeAt(8) !== SP
    ) {
      return this.bad(502, 'invalid status line');
    }
    this.versionMinor = s.charCodeAt(7) - 0x30;
    let status = 0;
    for (let i = 9; i < 12; i++) {
      const d = s.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) return this.bad(502, 'invalid status code');
      status = status * 10 + d;
    }
    if (status < 100) return this.bad(502, 'invalid status code');
    // The reason phrase is free text; CTLs in it were rejected by SECTION_CTL.
    if (stop > 12 && s.charCodeAt(12) !== SP) return this.bad(502, 'invalid status line');
    this.status = status;
    this.method = '';
    this.path = '';
    return true;
  }

  /**
   * Scan header lines from `p` to the end of `s` into `out`. In a head, framing and hop-by-hop
   * headers are lifted out; in trailers every valid field is kept.
   */
  protected parseFields(s: string, p: number, out: HeaderList, trailers: boolean): boolean {
    const end = s.length;
    const maxCount = this.limits.maxHeadersCount;
    let count = 0;
    while (p < end) {
      const e = s.indexOf('\n', p);
      if (e === -1 || s.charCodeAt(e - 1) !== CR) return this.bad(400, 'bare LF in header section');
      const stop = e - 1;
      // A CR anywhere but right before the LF is a bare CR (CTLs were rejected by sectionCtl()).
      if (s.indexOf('\r', p) !== stop) return this.bad(400, 'bare CR in header section');
      const c0 = s.charCodeAt(p);
      if (c0 === SP || c0 === HTAB) return this.bad(400, 'obsolete line folding');
      let i = p;
      let upper = false;
      for (; i < stop; i++) {
        const c = s.charCodeAt(i);
        if (c === 0x3a) break;
        if (TOKEN[c] !== 1) {
          return this.bad(400, c === SP || c === HTAB ? 'whitespace before colon' : 'invalid header name');
        }
        if (c <= 0x5a && c >= 0x41) upper = true;
      }
      if (i === p || i === stop) return this.bad(400, i === p ? 'empty header name' : 'missing colon');
      let vs = i + 1;
      while (vs < stop) {
        const c = s.charCodeAt(vs);
        if (c !== SP && c !== HTAB) break;
        vs++;
      }
      let ve = stop;
      while (ve > vs) {
        const c = s.charCodeAt(ve - 1);
        if (c !== SP && c !== HTAB) break;
        ve--;
      }
      if (++count > maxCount) return this.bad(431, 'too many headers');
      const name = upper ? s.slice(p, i).toLowerCase() : s.slice(p, i);
      const value = s.slice(vs, ve);
      if (trailers) {
        out.push(name, value);
      } else if (!this.headField(name, value, out)) {
        return false;
      }
      p = e + 1;
    }
    if (!trailers && this.nominated !== undefined) this.removeNominated(out);
    return true;
  }

  /** Lift framing/hop-by-hop fields; push everything else. */
  private headField(name: string, value: string, out: HeaderList): boolean {
    switch (name.length) {
      case 2:
        if (name === 'te') {
          // Only "trailers" survives a hop (Envoy's behaviour); the request side only.
          if (this.isRequest && (equalsLower(value, 'trailers') || splitList(value).includes('trailers'))) {
            out.push('te', 'trailers');
          }
          return true;
        }
        break;
      case 4:
        if (name === 'host' && this.isRequest) {
          if (this.hostCount === -1) return true; // absolute-form target wins
          if (++this.hostCount > 1) return this.bad(400, 'multiple Host headers');
          this.authority = value.toLowerCase();
          return true;
        }
        break;
      case 6:
        if (name === 'expect' && this.isRequest && equalsLower(value, '100-continue')) {
          this.expectContinue = true;
          return true;
        }
        break;
      case 7:
        if (name === 'upgrade') {
          this.upgradeValue = this.upgradeValue === undefined ? value : `${this.upgradeValue}, ${value}`;
          if (!this.isRequest && this.status === 101) break; // a 101 must carry it back downstream
          return true;
        }
        break;
      case 10:
        if (name === 'connection') {
          this.connectionTokens(value);
          return true;
        }
        if (name === 'keep-alive') return true;
        break;
      case 14:
        if (name === 'content-length') return this.contentLengthField(value, out);
        break;
      case 16:
        if (name === 'proxy-connection') return true;
        break;
      case 17:
        if (name === 'transfer-encoding') {
          this.teValue = this.teValue === undefined ? value : `${this.teValue}, ${value}`;
          return true;
        }
        break;
    }
    out.push(name, value);
    return true;
  }

  private connectionTokens(value: string): void {
    if (equalsLower(value, 'close')) this.connectionClose = true;
    else if (equalsLower(value, 'keep-alive')) this.connectionKeepAlive = true;
    else if (equalsLower(value, 'upgrade')) this.connectionUpgrade = true;
    else {
      for (const t of splitList(value)) {
        if (t === 'close') this.connectionClose = true;
        else if (t === 'keep-alive') this.connectionKeepAlive = true;
        else if (t === 'upgrade') this.connectionUpgrade = true;
        else if (t !== 'content-length' && t !== 'host') {
          if (this.nominated === undefined) this.nominated = [];
          this.nominated.push(t);
        }
      }
    }
  }

  private removeNominated(out: HeaderList): void {
    const names = this.nominated!;
    let w = 0;
    for (let r = 0; r < out.length; r += 2) {
      if (!names.includes(out[r])) {
        out[w] = out[r];
        out[w + 1] = out[r + 1];
        w += 2;
      }
    }
    out.length = w;
  }

  /** 1*DIGIT, or a list of identical 1*DIGIT values; at most 15 digits (below 2^53). */
  private contentLengthField(value: string, out: HeaderList): boolean {
    let n = -1;
    let digits = 0;
    let cur = 0;
    let i = 0;
    const len = value.length;
    for (;;) {
      const c = i < len ? value.charCodeAt(i) : 0x2c;
      if (c >= 0x30 && c <= 0x39) {
        if (++digits > 15) return this.bad(400, 'content-length too large');
        cur = cur * 10 + (c - 0x30);
      } else if (c === 0x2c) {
        if (digits === 0) return this.bad(400, 'invalid content-length');
        if (n !== -1 && n !== cur) return this.bad(400, 'conflicting content-length values');
        n = cur;
        if (i >= len) break;
        // skip OWS after the comma
        while (i + 1 < len && (value.charCodeAt(i + 1) === SP || value.charCodeAt(i + 1) === HTAB)) i++;
        cur = 0;
        digits = 0;
      } else if ((c === SP || c === HTAB) && digits > 0) {
        // OWS before a comma
        while (i + 1 < len && (value.charCodeAt(i + 1) === SP || value.charCodeAt(i + 1) === HTAB)) i++;
        if (i + 1 < len && value.charCodeAt(i + 1) !== 0x2c) return this.bad(400, 'invalid content-length');
      } else {
        return this.bad(400, 'invalid content-length');
      }
      i++;
    }
    if (this.clSeen) {
      if (n !== this.contentLength) return this.bad(400, 'conflicting content-length values');
      return true; // identical duplicate collapses into the first
    }
    this.clSeen = true;
    this.contentLength = n;
    out.push('content-length', digits === len ? value : String(n));
    return true;
  }

  private requestFraming(): boolean {
    const te = this.teValue;
    if (te !== undefined) {
      if (this.clSeen) return this.bad(400, 'both content-length and transfer-encoding');
      if (this.versionMinor === 0) return this.bad(400, 'transfer-encoding in HTTP/1.0 request');
      if (!equalsLower(te, 'chunked')) return this.bad(400, 'unsupported transfer-encoding');
      this.bodyKind = 'chunked';
      this.contentLength = -1;
    } else if (this.clSeen && this.contentLength > 0) {
      this.bodyKind = 'length';
    } else {
      this.bodyKind = 'none';
      this.contentLength = 0;
    }
    if (this.tunnel && this.bodyKind !== 'none') return this.bad(400, 'CONNECT request with a body');
    if (this.versionMinor === 1) {
      if (this.hostCount === 0) return this.bad(400, 'missing Host header');
      this.keepAlive = !this.connectionClose;
    } else {
      this.keepAlive = this.connectionKeepAlive && !this.connectionClose;
    }
    if (this.connectionUpgrade && this.upgradeValue !== undefined && !this.tunnel) {
      const comma = this.upgradeValue.indexOf(',');
      const tok = (comma === -1 ? this.upgradeValue : this.upgradeValue.slice(0, comma)).trim().toLowerCase();
      if (tok !== '') this.upgrade = tok;
    }
    return true;
  }

  private responseFraming(): boolean {
    const status = this.status;
    const te = this.teValue;
    if (te !== undefined && this.clSeen) return this.bad(502, 'both content-length and transfer-encoding');
    this.keepAlive =
      this.versionMinor === 1 ? !this.connectionClose : this.connectionKeepAlive && !this.connectionClose;
    if (status === 101 || (this.responseToConnect && status >= 200 && status < 300)) {
      this.tunnel = true;
      this.bodyKind = 'none';
      this.contentLength = 0;
      if (status === 101 && this.upgradeValue !== undefined) this.upgrade = this.upgradeValue.trim().toLowerCase();
      return true;
    }
    if (status < 200 || status === 204 || status === 304 || this.responseToHead) {
      this.bodyKind = 'none';
      // Keep the declared length for HEAD/304 (it describes the representation), not for framing.
      if (!this.clSeen) this.contentLength = 0;
      return true;
    }
    if (te !== undefined) {
      const last = te.slice(te.lastIndexOf(',') + 1).trim();
      if (equalsLower(last, 'chunked')) {
        this.bodyKind = 'chunked';
        this.contentLength = -1;
        return true;
      }
      this.bodyKind = 'eof';
      this.contentLength = -1;
      this.keepAlive = false;
      return true;
    }
    if (this.clSeen) {
      this.bodyKind = this.contentLength > 0 ? 'length' : 'none';
      return true;
    }
    this.bodyKind = 'eof';
    this.contentLength = -1;
    this.keepAlive = false;
    return true;
  }
}

/**
 * RFC 3986 authority (no userinfo): `[` IPv6/IPvFuture `]` or a reg-name/IPv4 of unreserved,
 * pct-encoded and sub-delim characters, then an optional `:port` of digits. `http://[::1` and
 * `http://a b` are not URIs and must not be forwarded (Envoy answers 400).
 */
function validAuthority(s: string, start: number, end: number): boolean {
  let i = start;
  if (s.charCodeAt(i) === 0x5b) {
    i++;
    const open = i;
    while (i < end && s.charCodeAt(i) !== 0x5d) {
      const c = s.charCodeAt(i);
      const hex = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
      if (!hex && c !== 0x3a && c !== 0x2e && c !== 0x76 && c !== 0x56) return false;
      i++;
    }
    if (i >= end || i === open) return false;
    i++;
  } else {
    while (i < end && s.charCodeAt(i) !== 0x3a) {
      if (!REG_NAME_CHAR[s.charCodeAt(i)]) return false;
      i++;
    }
  }
  if (i === end) return true;
  if (s.charCodeAt(i) !== 0x3a) return false;
  for (i++; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** unreserved / pct-encoded ('%') / sub-delims, by char code. */
const REG_NAME_CHAR: readonly boolean[] = (() => {
  const t: boolean[] = new Array<boolean>(128).fill(false);
  for (const ch of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=") t[ch.charCodeAt(0)] = true;
  return t;
})();
