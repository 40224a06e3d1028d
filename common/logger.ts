/**
 * meshlet's application logger: pino, JSON lines, one child logger per component (`component`
 * binding), level changeable at run time per component (admin POST /logging).
 *
 * Cheap when disabled: callers on hot paths check `log.isLevelEnabled('debug')` before building
 * anything, and pino's own methods are no-ops below the level.
 */
import pino, { type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS: readonly LevelWithSilent[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

let root: Logger = pino({
  level: process.env.MESHLET_LOG_LEVEL ?? 'info',
  base: { svc: 'meshlet' },
  timestamp: pino.stdTimeFunctions.isoTime,
});
const children = new Map<string, Logger>();

/**
 * Start-up configuration: the level for every component (module-level child loggers already
 * exist, so the level is applied to each), and optionally a destination for the root logger
 * (tests); a destination applies to children created afterwards.
 */
export function configureLogging(opts: { level?: string; destination?: pino.DestinationStream }): void {
  if (opts.destination) {
    root = pino({ level: opts.level ?? root.level, base: { svc: 'meshlet' }, timestamp: pino.stdTimeFunctions.isoTime }, opts.destination);
  }
  if (opts.level && !setLogLevel(opts.level)) throw new Error(`unknown log level "${opts.level}" (expected one of ${LOG_LEVELS.join(', ')})`);
}

/** The logger for one component; the same object for the same name. */
export function logger(component: string): Logger {
  let l = children.get(component);
  if (!l) {
    l = root.child({ component });
    children.set(component, l);
  }
  return l;
}

/** Set the level of every component, or of one. Returns false for an unknown level. */
export function setLogLevel(level: string, component?: string): boolean {
  if (!(LOG_LEVELS as readonly string[]).includes(level)) return false;
  if (component) {
    logger(component).level = level;
    return true;
  }
  root.level = level;
  for (const l of children.values()) l.level = level;
  return true;
}

/** Current level per component (admin /logging GET). */
export function logLevels(): Record<string, string> {
  const out: Record<string, string> = { '*': root.level };
  for (const [k, l] of children) out[k] = l.level;
  return out;
}
