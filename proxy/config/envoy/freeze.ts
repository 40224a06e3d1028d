/**
 * Deep freeze for decoded config (style rule 1: validate, then freeze). Plain objects, arrays,
 * Maps and Sets are frozen recursively; Buffers (which cannot be frozen) and RegExps (whose
 * non-global exec never writes lastIndex) are left as they are.
 */
export function deepFreeze<T>(value: T): T {
  freezeInto(value, new Set());
  return value;
}

function freezeInto(v: unknown, seen: Set<unknown>): void {
  if (v === null || typeof v !== 'object' || seen.has(v)) return;
  if (v instanceof RegExp || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return;
  seen.add(v);
  if (v instanceof Map) {
    for (const [k, x] of v) {
      freezeInto(k, seen);
      freezeInto(x, seen);
    }
  } else if (v instanceof Set) {
    for (const x of v) freezeInto(x, seen);
  } else {
    for (const k of Object.keys(v)) freezeInto((v as Record<string, unknown>)[k], seen);
  }
  Object.freeze(v);
}
