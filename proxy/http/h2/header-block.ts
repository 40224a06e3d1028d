/**
 * Assembly of one HTTP/2 header block from HEADERS + CONTINUATION frames (RFC 9113 §6.10), shared
 * by the downstream server and the upstream client on meshlet's own framing. While a block is
 * open (`stream` ≠ 0) no other frame may arrive; the block's size is bounded (CONTINUATION flood
 * defence), and fragments are copied (they live in the socket's read buffers).
 */
export class HeaderBlock {
  /** Stream of the block being assembled; 0 when none is open. */
  stream = 0;
  /** Flags of its HEADERS frame (END_STREAM). */
  flags = 0;
  private parts: Buffer[] = [];
  private bytes = 0;

  begin(stream: number, flags: number): void {
    this.stream = stream;
    this.flags = flags;
  }

  /**
   * Adds a fragment: the whole block once `last`, undefined while more must follow, null when the
   * block grew past `limit` octets (a connection error for the caller).
   */
  add(part: Buffer, last: boolean, limit: number): Buffer | undefined | null {
    this.bytes += part.length;
    if (this.bytes > limit) return null;
    this.parts.push(Buffer.from(part));
    if (!last) return undefined;
    const block = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
    this.stream = 0;
    this.parts = [];
    this.bytes = 0;
    return block;
  }
}
