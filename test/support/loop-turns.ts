/**
 * Counts event-loop turns while a job runs: a setImmediate chain that adds one per turn of the
 * loop's check phase. A job that never gives the loop a turn leaves the count where it was.
 */
export interface LoopTurns {
  /** Turns seen so far. */
  readonly count: number;
  stop(): void;
}

export function countLoopTurns(): LoopTurns {
  let count = 0;
  let running = true;
  const spin = (): void => {
    if (!running) return;
    count++;
    setImmediate(spin);
  };
  setImmediate(spin);
  return {
    get count() {
      return count;
    },
    stop() {
      running = false;
    },
  };
}
