/**
 * Decoders for header mutations: envoy.config.core.v3.HeaderValueOption lists (`*_headers_to_add`)
 * and `*_headers_to_remove`, shared by route configurations, virtual hosts, routes and weighted
 * clusters. Validates as Envoy does: pseudo-headers and host may not be modified or removed.
 */
import type { Reader } from '../../../common/reader';
import type { HeaderValueOption } from '../types';
import { enumOf } from './core';
import { headerName } from './matchers';

const APPEND_ACTIONS = [
  'APPEND_IF_EXISTS_OR_ADD',
  'ADD_IF_ABSENT',
  'OVERWRITE_IF_EXISTS_OR_ADD',
  'OVERWRITE_IF_EXISTS',
] as const;

function forbidden(name: string): boolean {
  return name.startsWith(':') || name === 'host';
}

/** One HeaderValueOption; the legacy `append` bool maps to APPEND_IF_EXISTS_OR_ADD / OVERWRITE_IF_EXISTS_OR_ADD. */
export function decodeHeaderValueOption(r: Reader): HeaderValueOption | undefined {
  const h = r.obj('header');
  let key: string | undefined;
  let value = '';
  if (!h) {
    r.error('header', 'is required');
  } else {
    key = headerName(h, 'key');
    if (h.has('raw_value')) {
      const raw = h.str('raw_value', '');
      value = Buffer.from(raw, 'base64').toString('latin1');
      if (h.has('value')) h.error('value', 'only one of value, raw_value may be set');
    }
    if (h.has('value')) value = h.str('value', '');
    h.raw('value');
    h.done();
    if (key && forbidden(key)) {
      h.error('key', ':-prefixed or host headers may not be modified');
      key = undefined;
    }
  }
  let appendAction: HeaderValueOption['appendAction'] = 'APPEND_IF_EXISTS_OR_ADD';
  if (r.has('append') && r.has('append_action')) {
    r.error('append', "both append and append_action are set and it's not allowed");
  }
  if (r.has('append')) {
    appendAction = r.bool('append', true) ? 'APPEND_IF_EXISTS_OR_ADD' : 'OVERWRITE_IF_EXISTS_OR_ADD';
  }
  r.raw('append');
  if (r.has('append_action')) appendAction = enumOf(r, 'append_action', APPEND_ACTIONS, 'APPEND_IF_EXISTS_OR_ADD');
  r.raw('append_action');
  const keepEmptyValue = r.bool('keep_empty_value', false);
  r.done();
  return key ? { key, value, appendAction, keepEmptyValue } : undefined;
}

export function decodeHeadersToAdd(r: Reader, key: string): HeaderValueOption[] {
  const out: HeaderValueOption[] = [];
  for (const e of r.arr(key)) {
    const v = decodeHeaderValueOption(e);
    if (v) out.push(v);
  }
  return out;
}

export function decodeHeadersToRemove(r: Reader, key: string): string[] {
  const out: string[] = [];
  for (const [i, name] of r.strList(key).entries()) {
    const n = name.toLowerCase();
    if (n === '') r.issues.error(`${r.sub(key)}[${i}]`, 'must not be empty');
    else if (forbidden(n)) r.issues.error(`${r.sub(key)}[${i}]`, ':-prefixed or host headers may not be removed');
    else out.push(n);
  }
  return out;
}

/** The four header mutation lists every route-table level carries. */
export function decodeHeaderMutations(r: Reader): {
  requestHeadersToAdd: HeaderValueOption[];
  requestHeadersToRemove: string[];
  responseHeadersToAdd: HeaderValueOption[];
  responseHeadersToRemove: string[];
} {
  return {
    requestHeadersToAdd: decodeHeadersToAdd(r, 'request_headers_to_add'),
    requestHeadersToRemove: decodeHeadersToRemove(r, 'request_headers_to_remove'),
    responseHeadersToAdd: decodeHeadersToAdd(r, 'response_headers_to_add'),
    responseHeadersToRemove: decodeHeadersToRemove(r, 'response_headers_to_remove'),
  };
}
