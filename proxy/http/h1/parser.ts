/**
 * Strict, incremental HTTP/1.x message parser (requests and responses) over the Buffers a socket
 * produces. Owns message syntax and body framing; knows nothing about sockets or streams.
 *
 * Leans strict (request-smuggling defences first, RFC 9112 with no leniency): bare LF, obs-fold,
 * whitespace before the colon, CTLs in values, Content-Length together with Transfer-Encoding,
 * conflicting or non-numeric Content-Length, any request Transfer-Encoding other than exactly
 * `chunked`, bad chunk framing: all are errors. It then leans fast: the head is found with one
 * native `indexOf`, turned into one latin1 string and scanned with charCodeAt; body bytes are
 * delivered as `subarray`s of the socket's Buffers, never copied. A head split across reads is
 * accumulated in one growable buffer (bounded by the header limit).
 *
 * Results are delivered with direct calls on an {@link H1ParserHandler}; head fields are read from
 * the parser's public fields inside `onMessageHead` (no per-message result object). Hop-by-hop
 * headers are removed from `headers` while scanning (connection, keep-alive, proxy-connection,
 * transfer-encoding, upgrade, te other than `trailers`, names listed in Connection); `host` and
 * `expect: 100-continue` are lifted into fields.
 *
 * Errors carry the HTTP status the server codec should answer with (400, 414, 431); for response
 * parsing the status is irrelevant and the client codec maps every error to `protocol_error`.
 */
import type { HeaderList } from '../codec';
import { CR, CRLFCRLF, EMPTY, equalsLower, HEX, HTAB, LF, latin1Slice, SP, splitList, TOKEN } from './chars';

/** Receives parse results. All calls are synchronous from inside {@link H1Parser.execute}. */
export interface H1ParserHandler {
  /** A complete, validated head; read the parser's fields. */
  onMessageHead(parser: H1Parser): void;
  /** Body bytes (a view into the input Buffer); `end` marks the last body call of the message. */
  onMessageBody(chunk: Buffer, end: boolean): void;
  /** Chunked trailers (non-empty); the message ends after this call. */
  onMessageTrailers(trailers: HeaderList): void;
  /**
   * The message is complete. Return true to go on parsing the next message from the same input,
   * false to stop: `execute` then returns the offset reached and the caller calls `reset()` before
   * feeding the remaining bytes later.
   */
  onMessageComplete(): boolean;
  /** The input is malformed; parsing stopped for good. `status` is the answer a server gives. */
  onParseError(status: number, detail: string): void;
}

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

// Parser states (numeric constants rather than an enum: cheap switch, no cross-file inlining).
const S_HEAD = 0;
const S_BODY_LENGTH = 1;
const S_BODY_EOF = 2;
const S_CHUNK_SIZE = 3;
const S_CHUNK_EXT = 4;
const S_CHUNK_SIZE_LF = 5;
const S_CHUNK_DATA = 6;
const S_CHUNK_DATA_CR = 7;
const S_CHUNK_DATA_LF = 8;
const S_TRAILERS_START = 9;
const S_TRAILERS_END_LF = 10;
const S_TRAILERS = 11;
const S_DONE = 12;
const S_ERROR = 13;
const S_ABORTED = 14;

/**
 * Control characters never allowed in a head or trailer section (HTAB, CR and LF are checked by
 * the line logic). A simple character class: V8 runs it as a native scan.
 */
const SECTION_CTL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;
/** Bytes not allowed in a request-target (SP is a delimiter, so it never reaches here). */
const TARGET_BAD = /[^\x21-\x7e]/;

/** Largest chunk size accepted (2^53 - 1, the largest exact integer). */
const MAX_CHUNK_SIZE = Number.MAX_SAFE_INTEGER;
const MAX_CHUNK_SIZE_DIGITS = 16;
/** Bound on chunk-extension bytes per chunk (extensions are ignored, never forwarded). */
const MAX_CHUNK_EXT_BYTES = 4096;

export type H1BodyKind = 'none' | 'length' | 'chunked' | 'eof';

export class H1Parser {
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

  private state = S_HEAD;
  private remaining = 0;
  private chunkSize = 0;
  private sizeDigits = 0;
  private extBytes = 0;
  /** Accumulates a head/trailer section split across reads. */
  private partial: Buffer | undefined = undefined;
  private partialLen = 0;
  private partialFirstLineSeen = false;
  /** Header-scan scratch state (reset in parseHead). */
  private hostCount = 0;
  private clSeen = false;
  private teValue: string | undefined = undefined;
  private connectionClose = false;
  private connectionKeepAlive = false;
  private connectionUpgrade = false;
  private upgradeValue: string | undefined = undefined;
  private nominated: string[] | undefined = undefined;
  private errorDetail = '';
  private errorStatus = 400;

  constructor(
    private readonly isRequest: boolean,
    private readonly handler: H1ParserHandler,
    private readonly limits: H1ParserLimits = DEFAULT_H1_LIMITS,
  ) {}

  /** True between the first byte of a head and its completion (request-headers timeout). */
  get inHead(): boolean {
    return this.state === S_HEAD && this.partialLen > 0;
  }

  /** True once the current message is complete and not yet reset. */
  get messageComplete(): boolean {
    return this.state === S_DONE;
  }

  get failed(): boolean {
    return this.state === S_ERROR;
  }

  /** Bytes of a head/trailer section buffered while waiting for its end. */
  get bufferedHeadBytes(): number {
    return this.partialLen;
  }

  /** Prepare for the next message after onMessageComplete returned false. */
  reset(): void {
    if (this.state === S_ERROR || this.state === S_ABORTED) return;
    this.state = S_HEAD;
  }

  /** Stop delivering anything (the owner tore the connection down). */
  abort(): void {
    this.state = S_ABORTED;
    this.partial = undefined;
    this.partialLen = 0;
  }

  /**
   * Parse `buf` from `start`. Returns the offset where parsing stopped: `buf.length` normally;
   * less when onMessageComplete returned false or the handler called abort() (the rest belongs to
   * the next message or a tunnel). After an error the return value is meaningless; check `failed`.
   */
  execute(buf: Buffer, start = 0): number {
    let pos = start;
    const len = buf.length;
    while (pos < len) {
      switch (this.state) {
        case S_HEAD:
          pos = this.readHead(buf, pos);
          break;
        case S_BODY_LENGTH: {
          const avail = len - pos;
          if (avail < this.remaining) {
            this.remaining -= avail;
            this.handler.onMessageBody(pos === 0 ? buf : buf.subarray(pos), false);
            pos = len;
          } else {
            const end = pos + this.remaining;
            this.remaining = 0;
            this.state = S_DONE;
            this.handler.onMessageBody(pos === 0 && end === len ? buf : buf.subarray(pos, end), true);
            pos = end;
          }
          break;
        }
        case S_BODY_EOF:
          this.handler.onMessageBody(pos === 0 ? buf : buf.subarray(pos), false);
          pos = len;
          break;
        case S_TRAILERS:
          pos = this.readTrailers(buf, pos);
          break;
        case S_DONE:
          if (!this.handler.onMessageComplete()) return pos;
          if (this.state === S_DONE) this.state = S_HEAD;
          break;
        case S_ERROR:
        case S_ABORTED:
          return pos;
        default:
          pos = this.decodeChunked(buf, pos, false);
      }
    }
    // A message can complete exactly at the end of the input.
    if (this.state === S_DONE) {
      if (this.handler.onMessageComplete() && this.state === S_DONE) this.state = S_HEAD;
    }
    return pos;
  }

  /**
   * The peer closed its side. Completes a close-delimited body; returns false when a message was
   * cut short (the caller treats it as a reset), true when the close happened between messages.
   */
  finish(): boolean {
    if (this.state === S_BODY_EOF) {
      this.state = S_DONE;
      this.handler.onMessageBody(EMPTY, true);
      if (this.state === S_DONE) this.handler.onMessageComplete();
      return true;
    }
    return (this.state === S_HEAD && this.partialLen === 0) || this.state === S_DONE;
  }

  // ───────────────────────────── head ─────────────────────────────

  private fail(status: number, detail: string): number {
    this.state = S_ERROR;
    this.partial = undefined;
    this.partialLen = 0;
    this.handler.onParseError(status, detail);
    return Number.MAX_SAFE_INTEGER;
  }

  private readHead(buf: Buffer, pos: number): number {
    const len = buf.length;
    if (this.partialLen === 0) {
      // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line.
      if (this.isRequest) {
        while (pos + 1 < len && buf[pos] === CR && buf[pos + 1] === LF) pos += 2;
        if (pos === len) return pos;
      }
      const end = buf.indexOf(CRLFCRLF, pos);
      if (end !== -1) {
        if (end + 4 - pos > this.limits.maxHeaderBytes + 4) return this.headTooLarge(buf, pos, end);
        const s = latin1Slice(buf, pos, end + 2);
        return this.completeHead(s, buf, end + 4);
      }
    }
    return this.accumulate(buf, pos, false);
  }

  /** Over the size limit: 414 when the request line alone is too long, else 431. */
  private headTooLarge(buf: Buffer, pos: number, end: number): number {
    if (this.isRequest) {
      const nl = buf.indexOf(LF, pos);
      if (nl === -1 || nl > end || nl - pos > this.limits.maxRequestLineBytes) {
        return this.fail(414, 'request line too long');
      }
    }
    return this.fail(431, 'headers too large');
  }

  /**
   * Slow path: the section is split across reads. Append to the partial buffer (bounded), look for
   * the end, and reject bare LF / over-long lines as soon as they appear.
   */
  private accumulate(buf: Buffer, pos: number, trailers: boolean): number {
    const limit = this.limits.maxHeaderBytes + 4;
    const oldLen = this.partialLen;
    const take = Math.min(buf.length - pos, limit - oldLen);
    let p = this.partial;
    if (p === undefined || p.length < oldLen + take) {
      const grown = Buffer.allocUnsafe(Math.min(limit, Math.max(1024, (oldLen + take) * 2)));
      if (p !== undefined && oldLen > 0) p.copy(grown, 0, 0, oldLen);
      p = this.partial = grown;
    }
    buf.copy(p, oldLen, pos, pos + take);
    const newLen = oldLen + take;
    this.partialLen = newLen;
    // Bare LF anywhere in the new bytes.
    let nl = p.indexOf(LF, oldLen);
    while (nl !== -1 && nl < newLen) {
      if (nl === 0 || p[nl - 1] !== CR) return this.fail(400, 'bare LF in header section');
      if (!this.partialFirstLineSeen) {
        this.partialFirstLineSeen = true;
        if (this.isRequest && !trailers && nl - 1 > this.limits.maxRequestLineBytes) {
          return this.fail(414, 'request line too long');
        }
      }
      nl = p.indexOf(LF, nl + 1);
    }
    const end = p.indexOf(CRLFCRLF, oldLen > 3 ? oldLen - 3 : 0);
    if (end !== -1 && end + 4 <= newLen) {
      const consumed = end + 4 - oldLen;
      const s = latin1Slice(p, 0, end + 2);
      this.partialLen = 0;
      this.partialFirstLineSeen = false;
      if (p.length > 16 * 1024) this.partial = undefined; // don't pin big buffers per connection
      return trailers ? this.completeTrailers(s, pos + consumed) : this.completeHead(s, buf, pos + consumed);
    }
    if (
      this.isRequest &&
      !trailers &&
      !this.partialFirstLineSeen &&
      newLen > this.limits.maxRequestLineBytes + 1
    ) {
      return this.fail(414, 'request line too long');
    }
    if (newLen >= limit) return this.fail(431, 'headers too large');
    return pos + take;
  }

  private completeHead(s: string, buf: Buffer, pos: number): number {
    if (!this.parseHead(s)) return this.fail(this.errorStatus, this.errorDetail);
    if (this.bodyKind === 'chunked' && this.isRequest && pos < buf.length) {
      // Validate the chunk framing already received before anything reaches the handler, so a
      // smuggling attempt in one packet is rejected with nothing forwarded.
      const st = this.state;
      this.state = S_CHUNK_SIZE;
      this.chunkSize = 0;
      this.sizeDigits = 0;
      this.extBytes = 0;
      const ok = this.decodeChunked(buf, pos, true) !== -1;
      this.state = st;
      if (!ok) return this.fail(400, this.errorDetail);
    }
    this.chunkSize = 0;
    this.sizeDigits = 0;
    this.extBytes = 0;
    switch (this.bodyKind) {
      case 'none':
        this.state = S_DONE;
        break;
      case 'length':
        this.remaining = this.contentLength;
        this.state = S_BODY_LENGTH;
        break;
      case 'chunked':
        this.state = S_CHUNK_SIZE;
        break;
      default:
        this.state = S_BODY_EOF;
    }
    this.handler.onMessageHead(this);
    // If the handler aborted (e.g. took the connection as a tunnel), execute() stops here and
    // returns `pos`, so the caller knows where the unparsed bytes start.
    return pos;
  }

  private bad(status: number, detail: string): false {
    this.errorStatus = status;
    this.errorDetail = detail;
    return false;
  }

  /** Parse a complete head (every line ends with CRLF, final empty line excluded). */
  private parseHead(s: string): boolean {
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
  private parseFields(s: string, p: number, out: HeaderList, trailers: boolean): boolean {
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
        else if (t !== 'content-length' && t !== 'host') (this.nominated ??= []).push(t);
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
    this.keepAlive = this.versionMinor === 1 ? !this.connectionClose : this.connectionKeepAlive && !this.connectionClose;
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

  // ───────────────────────────── chunked body ─────────────────────────────

  private chunkError(dry: boolean, detail: string): number {
    this.errorDetail = detail;
    if (dry) return -1;
    return this.fail(this.isRequest ? 400 : 502, detail);
  }

  /**
   * Chunk framing state machine from `pos`. With `dry`, nothing is delivered and -1 is returned on
   * the first framing error (used to pre-validate before the head is handed out).
   */
  private decodeChunked(buf: Buffer, pos: number, dry: boolean): number {
    const len = buf.length;
    while (pos < len) {
      switch (this.state) {
        case S_CHUNK_SIZE: {
          const c = buf[pos];
          const h = HEX[c];
          if (h >= 0) {
            if (++this.sizeDigits > MAX_CHUNK_SIZE_DIGITS) return this.chunkError(dry, 'chunk size too long');
            const next = this.chunkSize * 16 + h;
            if (next > MAX_CHUNK_SIZE) return this.chunkError(dry, 'chunk size overflow');
            this.chunkSize = next;
            pos++;
            break;
          }
          if (this.sizeDigits === 0) return this.chunkError(dry, 'invalid chunk size');
          if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else if (c === 0x3b || c === SP || c === HTAB) {
            this.state = S_CHUNK_EXT;
            this.extBytes = 0;
          } else return this.chunkError(dry, 'invalid chunk size');
          pos++;
          break;
        }
        case S_CHUNK_EXT: {
          const c = buf[pos];
          if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else if ((c < 0x20 && c !== HTAB) || c >= 0x7f) return this.chunkError(dry, 'invalid chunk extension');
          else if (++this.extBytes > MAX_CHUNK_EXT_BYTES) return this.chunkError(dry, 'chunk extension too long');
          pos++;
          break;
        }
        case S_CHUNK_SIZE_LF:
          if (buf[pos] !== LF) return this.chunkError(dry, 'bare CR in chunk framing');
          pos++;
          if (this.chunkSize === 0) {
            this.state = S_TRAILERS_START;
          } else {
            this.remaining = this.chunkSize;
            this.state = S_CHUNK_DATA;
          }
          break;
        case S_CHUNK_DATA: {
          const avail = len - pos;
          const n = avail < this.remaining ? avail : this.remaining;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S_CHUNK_DATA_CR;
          if (!dry) this.handler.onMessageBody(pos === 0 && n === len ? buf : buf.subarray(pos, pos + n), false);
          pos += n;
          if (!dry && this.state !== S_CHUNK_DATA && this.state !== S_CHUNK_DATA_CR) return len;
          break;
        }
        case S_CHUNK_DATA_CR:
          if (buf[pos] !== CR) return this.chunkError(dry, 'missing CRLF after chunk data');
          this.state = S_CHUNK_DATA_LF;
          pos++;
          break;
        case S_CHUNK_DATA_LF:
          if (buf[pos] !== LF) return this.chunkError(dry, 'bare CR after chunk data');
          this.state = S_CHUNK_SIZE;
          this.chunkSize = 0;
          this.sizeDigits = 0;
          pos++;
          break;
        case S_TRAILERS_START:
          if (buf[pos] === CR) {
            this.state = S_TRAILERS_END_LF;
            pos++;
            break;
          }
          if (dry) return pos;
          this.state = S_TRAILERS;
          return pos;
        case S_TRAILERS_END_LF:
          if (buf[pos] !== LF) return this.chunkError(dry, 'bare CR after last chunk');
          pos++;
          this.state = S_DONE;
          if (!dry) this.handler.onMessageBody(EMPTY, true);
          return pos;
        default:
          return pos;
      }
    }
    return pos;
  }

  private readTrailers(buf: Buffer, pos: number): number {
    if (this.partialLen === 0) {
      const end = buf.indexOf(CRLFCRLF, pos);
      if (end !== -1) {
        if (end + 4 - pos > this.limits.maxHeaderBytes + 4) return this.fail(431, 'trailers too large');
        return this.completeTrailers(latin1Slice(buf, pos, end + 2), end + 4);
      }
    }
    return this.accumulate(buf, pos, true);
  }

  private completeTrailers(s: string, pos: number): number {
    const trailers: HeaderList = [];
    if (SECTION_CTL.test(s)) return this.fail(400, 'invalid character in trailers');
    if (!this.parseFields(s, 0, trailers, true)) return this.fail(this.errorStatus, this.errorDetail);
    this.state = S_DONE;
    this.handler.onMessageTrailers(trailers);
    return pos;
  }
}
