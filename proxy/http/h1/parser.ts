/**
 * Strict, incremental HTTP/1.x message parser (requests and responses) over the Buffers a socket
 * produces. Owns message syntax and body framing; knows nothing about sockets or streams.
 *
 * Leans strict (request-smuggling defences first, RFC 9112 with no leniency): bare LF, obs-fold,
 * whitespace before the colon, CTLs in values, Content-Length together with Transfer-Encoding,
 * conflicting or non-numeric Content-Length, any request Transfer-Encoding other than exactly
 * `chunked`, bad chunk framing: all are errors. It then leans fast: the head is found with one
 * native `indexOf`, turned into one latin1 string and parsed by H1Head (head.ts); body bytes are
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
import { CR, CRLFCRLF, EMPTY, HEX, HTAB, LF, latin1Slice, SP } from './chars';
import { DEFAULT_H1_LIMITS, H1Head, type H1ParserLimits, SECTION_CTL } from './head';

export { DEFAULT_H1_LIMITS, type H1BodyKind, type H1ParserLimits } from './head';

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

/** A CR held back from an earlier read (see readHead). */
const LONE_CR = Buffer.from([0x0d]);

/** Largest chunk size accepted (2^53 - 1, the largest exact integer). */
const MAX_CHUNK_SIZE = Number.MAX_SAFE_INTEGER;
const MAX_CHUNK_SIZE_DIGITS = 16;
/** Bound on chunk-extension bytes per chunk (extensions are ignored, never forwarded). */
const MAX_CHUNK_EXT_BYTES = 4096;

export class H1Parser extends H1Head {
  private state = S_HEAD;
  private remaining = 0;
  private chunkSize = 0;
  private sizeDigits = 0;
  private extBytes = 0;
  /** Accumulates a head/trailer section split across reads. */
  private partial: Buffer | undefined = undefined;
  private partialLen = 0;
  private partialFirstLineSeen = false;
  /** A read ended in the CR of an empty line before a request-line (its LF comes next). */
  private pendingCR = false;
  constructor(
    isRequest: boolean,
    private readonly handler: H1ParserHandler,
    limits: H1ParserLimits = DEFAULT_H1_LIMITS,
  ) {
    super(isRequest, limits);
  }

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
      // The CRLF may be split across reads: a read ending in a lone CR is remembered, so the
      // verdict never depends on segmentation.
      if (this.isRequest) {
        if (this.pendingCR) {
          this.pendingCR = false;
          if (buf[pos] !== LF) {
            // Not an empty line after all: the CR begins the head, exactly as if unsplit.
            if (this.accumulate(LONE_CR, 0, false) === Number.MAX_SAFE_INTEGER) return Number.MAX_SAFE_INTEGER;
            return this.accumulate(buf, pos, false);
          }
          pos++;
        }
        while (pos + 1 < len && buf[pos] === CR && buf[pos + 1] === LF) pos += 2;
        if (pos === len) return pos;
        if (pos === len - 1 && buf[pos] === CR) {
          this.pendingCR = true;
          return len;
        }
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
    const view = p.subarray(0, newLen);
    const end = view.indexOf(CRLFCRLF, oldLen > 3 ? oldLen - 3 : 0);
    // Bare LF in the new bytes of the section (not in body bytes that may follow its end).
    const scanEnd = end === -1 ? newLen : end + 4;
    let nl = oldLen < scanEnd ? view.indexOf(LF, oldLen) : -1;
    while (nl !== -1 && nl < scanEnd) {
      if (nl === 0 || p[nl - 1] !== CR) return this.fail(400, 'bare LF in header section');
      if (!this.partialFirstLineSeen) {
        this.partialFirstLineSeen = true;
        if (this.isRequest && !trailers && nl - 1 > this.limits.maxRequestLineBytes) {
          return this.fail(414, 'request line too long');
        }
      }
      nl = view.indexOf(LF, nl + 1);
    }
    if (end !== -1) {
      const consumed = end + 4 - oldLen;
      const s = latin1Slice(p, 0, end + 2);
      this.partialLen = 0;
      this.partialFirstLineSeen = false;
      if (p.length > 16 * 1024) this.partial = undefined; // don't pin big buffers per connection
      return trailers ? this.completeTrailers(s, pos + consumed) : this.completeHead(s, buf, pos + consumed);
    }
    if (this.isRequest && !trailers && !this.partialFirstLineSeen && newLen > this.limits.maxRequestLineBytes + 1) {
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
          const n = Math.min(avail, this.remaining);
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
