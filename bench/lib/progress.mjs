// Progress reporting for the runner: one updating line with a bar on a TTY, plain lines otherwise
// (CI logs). Leans towards never garbling the output: log() clears the bar before printing.

export class Progress {
  /** @param {number} total number of steps @param {NodeJS.WriteStream} [stream] */
  constructor(total, stream = process.stderr) {
    this.total = Math.max(1, total);
    this.done = 0;
    this.stream = stream;
    this.tty = Boolean(stream.isTTY) && process.env.TERM !== 'dumb' && !process.env.CI;
    this.label = '';
    this.started = Date.now();
    this.timer = null;
    this.stepStarted = Date.now();
    this.stepSeconds = 0;
    this.closed = false;
  }

  /** Marks the start of a step; expectedSeconds drives the in-step fill on a TTY. */
  begin(label, expectedSeconds = 0) {
    if (this.closed) return;
    this.label = label;
    this.stepStarted = Date.now();
    this.stepSeconds = expectedSeconds;
    if (this.tty) {
      this.render();
      if (!this.timer) {
        this.timer = setInterval(() => this.render(), 250);
        this.timer.unref();
      }
    } else {
      this.stream.write(`[${this.done + 1}/${this.total}] ${label} …\n`);
    }
  }

  /** Marks the end of the current step with a short outcome text. */
  end(outcome) {
    if (this.closed) return;
    this.done = Math.min(this.total, this.done + 1);
    if (this.tty) {
      this.clear();
      this.stream.write(`  ✓ ${this.label}: ${outcome}\n`);
      this.render();
    } else {
      this.stream.write(`[${this.done}/${this.total}] ${this.label}: ${outcome}\n`);
    }
  }

  /** Counts a step that is not run (keeps the bar honest about what is left). */
  skip() {
    this.done = Math.min(this.total, this.done + 1);
  }

  /** Prints a line above the bar. */
  log(line) {
    if (this.tty) this.clear();
    this.stream.write(`${line}\n`);
    if (this.tty && this.label) this.render();
  }

  render() {
    const width = 28;
    let frac = this.done / this.total;
    if (this.stepSeconds > 0 && this.done < this.total) {
      const inStep = Math.min(0.95, (Date.now() - this.stepStarted) / 1000 / this.stepSeconds);
      frac += inStep / this.total;
    }
    const filled = Math.round(frac * width);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    const elapsed = Math.round((Date.now() - this.started) / 1000);
    const cols = this.stream.columns || 100;
    const text = `${bar} ${String(Math.floor(frac * 100)).padStart(3)}% ${this.done}/${this.total} ${elapsed}s ${this.label}`;
    this.stream.write(`\r\x1b[2K${text.slice(0, cols - 1)}`);
  }

  clear() {
    this.stream.write('\r\x1b[2K');
  }

  finish() {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.tty) this.clear();
  }
}
