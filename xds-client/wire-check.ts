/**
 * Strict protobuf wire-format check run before protobufjs decodes xDS bytes. protobufjs is
 * lenient where Envoy's C++ protobuf is not: its Node reader clamps a string whose declared length
 * runs past the buffer (so a truncated or garbage resource decodes into a "valid" message), and it
 * accepts invalid UTF-8 in proto3 strings. Envoy rejects such bytes ("Unable to unpack"), so
 * meshlet must NACK them rather than ACK garbage.
 *
 * Schema-aware and linear: walks every field once, recursing into fields whose type is a message
 * (the protobufjs Type from the same Root), bounded by protobuf's default recursion limit.
 * Control-plane only; returns a reason or undefined, never throws.
 */
import { isUtf8 } from 'node:buffer';
import type protobuf from 'protobufjs';

/** protobuf's default recursion limit (C++ and Java). */
const MAX_DEPTH = 100;

interface Cursor {
  pos: number;
}

/** Read a varint within [c.pos, end); returns -1 when it does not terminate in 10 bytes. */
function varint(buf: Uint8Array, c: Cursor, end: number): number {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (c.pos >= end) return -1;
    const b = buf[c.pos++]!;
    // Values past 2^53 lose precision, which only matters for lengths (checked against `end`).
    result += (b & 0x7f) * mul;
    if (b < 0x80) return result;
    mul *= 128;
  }
  return -1;
}

/**
 * Why `buf[start, end)` is not a well-formed encoding of `type`, or undefined when it is. Unknown
 * fields are checked for framing only (they may belong to a newer proto).
 */
export function wireFormatError(type: protobuf.Type | null, buf: Uint8Array, start = 0, end = buf.length, depth = 0): string | undefined {
  if (depth > MAX_DEPTH) return 'message nesting exceeds 100 levels';
  const c: Cursor = { pos: start };
  while (c.pos < end) {
    const tag = varint(buf, c, end);
    if (tag < 0) return `truncated field tag at byte ${c.pos}`;
    const fieldNo = Math.floor(tag / 8);
    const wire = tag % 8;
    if (fieldNo === 0) return `invalid field number 0 at byte ${c.pos}`;
    switch (wire) {
      case 0:
        if (varint(buf, c, end) < 0) return `truncated varint in field ${fieldNo}`;
        break;
      case 1:
        if (c.pos + 8 > end) return `truncated fixed64 in field ${fieldNo}`;
        c.pos += 8;
        break;
      case 5:
        if (c.pos + 4 > end) return `truncated fixed32 in field ${fieldNo}`;
        c.pos += 4;
        break;
      case 2: {
        const len = varint(buf, c, end);
        if (len < 0 || len > end - c.pos) return `length of field ${fieldNo} runs past the end of its message`;
        const from = c.pos;
        c.pos += len;
        const field = type?.fieldsById[fieldNo];
        if (field === undefined) break;
        if (field.type === 'string') {
          if (!isUtf8(buf.subarray(from, from + len))) return `field ${field.name} is not valid UTF-8`;
        } else if (field.map) {
          // A map entry: key = 1, value = 2 (a message when the map's value type is one).
          const valueType = field.resolvedType && 'fieldsById' in field.resolvedType ? (field.resolvedType as protobuf.Type) : null;
          const why = wireFormatError(null, buf, from, from + len, depth + 1) ?? mapValueError(valueType, buf, from, from + len, depth + 1);
          if (why !== undefined) return `${field.name}: ${why}`;
        } else if (field.resolvedType && 'fieldsById' in field.resolvedType) {
          const why = wireFormatError(field.resolvedType as protobuf.Type, buf, from, from + len, depth + 1);
          if (why !== undefined) return `${field.name}: ${why}`;
        }
        break;
      }
      default:
        return `unsupported wire type ${wire} in field ${fieldNo}`;
    }
  }
  return undefined;
}

/** Check the value (field 2) of a map entry against the map's message value type. */
function mapValueError(valueType: protobuf.Type | null, buf: Uint8Array, start: number, end: number, depth: number): string | undefined {
  if (valueType === null) return undefined;
  const c: Cursor = { pos: start };
  while (c.pos < end) {
    const tag = varint(buf, c, end);
    const wire = tag % 8;
    if (wire !== 2) {
      if (wire === 0) varint(buf, c, end);
      else c.pos += wire === 1 ? 8 : 4;
      continue;
    }
    const len = varint(buf, c, end);
    if (Math.floor(tag / 8) === 2) return wireFormatError(valueType, buf, c.pos, c.pos + len, depth);
    c.pos += len;
  }
  return undefined;
}
