/**
 * The asynchronous half of validation (ResourceTypeDef.check): after a resource decoded, ask the
 * running system whether it can be applied (a listener's address can be bound). A failed check
 * turns the resource into a rejected one, so it is NACKed and keeps its last good value exactly as
 * a decode error would.
 *
 * Leans towards no cost when unused: without a check, or with nothing changed, it returns
 * undefined and the response is applied synchronously as before.
 */

import type { TypeState } from './cache';
import type { ParsedResource } from './parser';

/** Check every changed, wanted resource of `parsed` in place; undefined when there is nothing to wait for. */
export function runChecks(state: TypeState<unknown>, parsed: ParsedResource<unknown>[]): Promise<void> | undefined {
  const check = state.def.check;
  if (!check) return undefined;
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < parsed.length; i++) {
    const p = parsed[i]!;
    if (p.value === undefined || p.unchanged || p.name === undefined || !state.wants(p.name)) continue;
    const previous = state.resources.get(p.name)?.value;
    const reject = (message: string): void => {
      parsed[i] = { ...p, value: undefined, issues: [{ path: '(resource)', message }] };
    };
    jobs.push(
      check.call(state.def, p.value, previous).then(
        (problem) => {
          if (problem !== undefined) reject(problem);
        },
        (err: Error) => reject(`check failed: ${err.message}`),
      ),
    );
  }
  return jobs.length > 0 ? Promise.all(jobs).then(() => undefined) : undefined;
}
