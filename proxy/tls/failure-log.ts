/**
 * One info-level line per TLS failure, rate limited: a burst of bad handshakes (a scanner, a
 * misconfigured peer retrying in a loop) must not flood the log or cost the proxy its event loop.
 * Up to `perSecond` lines a second; the lines dropped meanwhile are counted and reported on the
 * next line that is written (`suppressed`).
 */
import type { Logger } from '../../common/logger';

export class RateLimitedLog {
  private windowStart = 0;
  private written = 0;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly perSecond = 10,
    private readonly now: () => number = Date.now,
  ) {}

  info(fields: Record<string, unknown>, msg: string): void {
    if (!this.log.isLevelEnabled('info')) return;
    const t = this.now();
    if (t - this.windowStart >= 1_000) {
      this.windowStart = t;
      this.written = 0;
    }
    if (this.written >= this.perSecond) {
      this.suppressed++;
      return;
    }
    this.written++;
    if (this.suppressed > 0) {
      this.log.info({ ...fields, suppressed: this.suppressed }, msg);
      this.suppressed = 0;
    } else {
      this.log.info(fields, msg);
    }
  }
}
