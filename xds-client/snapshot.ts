/**
 * A point-in-time view of the xDS cache for the admin /config_dump, in Envoy's vocabulary
 * (version_info, last_updated, client_status, error_state with failed_configuration).
 *
 * Leans towards cheap-until-asked: the cache keeps only resource bytes; they are turned into
 * proto3 JSON here, when someone reads the dump, not on every update.
 */

import type { TypeState } from './cache';
import { anyToJson, type Json } from './proto-json';

/** Envoy's UpdateFailureState. */
export interface XdsErrorState {
  /** The rejected resource as proto3 JSON with "@type", when its bytes were readable. */
  readonly failed_configuration?: Json;
  readonly last_update_attempt: string;
  readonly details: string;
  /** Version of the rejected response. */
  readonly version_info: string;
}

export interface XdsResourceSnapshot {
  readonly name: string;
  /** Version of the accepted value ('' if none yet). */
  readonly version_info: string;
  /** RFC 3339 time the accepted value was applied. */
  readonly last_updated?: string;
  readonly client_status: 'REQUESTED' | 'DOES_NOT_EXIST' | 'ACKED' | 'NACKED';
  /** The accepted resource as proto3 JSON with "@type". */
  readonly resource?: Json;
  readonly error_state?: XdsErrorState;
}

export interface XdsTypeSnapshot {
  readonly type_url: string;
  /** version_info of the last accepted response (SotW) or last system_version_info (delta). */
  readonly version_info: string;
  readonly last_updated?: string;
  /** The last rejected response of this type, until a later one is accepted. */
  readonly error_state?: XdsErrorState;
  readonly resources: readonly XdsResourceSnapshot[];
}

export interface XdsSnapshot {
  readonly connected: boolean;
  readonly types: readonly XdsTypeSnapshot[];
}

function safeJson(typeUrl: string, raw: Buffer | undefined): Json | undefined {
  if (!raw) return undefined;
  try {
    return anyToJson({ type_url: typeUrl, value: raw });
  } catch {
    return { '@type': typeUrl, value: raw.toString('base64') };
  }
}

/** Build the snapshot from the cache (sorted by name for stable output). */
export function buildSnapshot(states: Iterable<TypeState<unknown>>, connected: boolean): XdsSnapshot {
  const types: XdsTypeSnapshot[] = [];
  for (const s of states) {
    const resources: XdsResourceSnapshot[] = [];
    const names = [...s.resources.keys()].sort();
    for (const name of names) {
      const e = s.resources.get(name);
      if (!e) continue;
      resources.push({
        name,
        version_info: e.version,
        last_updated: e.lastUpdated?.toISOString(),
        client_status: e.status,
        resource: safeJson(s.typeUrl, e.raw),
        error_state: e.errorState
          ? {
              failed_configuration: safeJson(s.typeUrl, e.errorState.failedRaw),
              last_update_attempt: e.errorState.lastUpdateAttempt.toISOString(),
              details: e.errorState.details,
              version_info: e.errorState.failedVersion,
            }
          : undefined,
      });
    }
    types.push({
      type_url: s.typeUrl,
      version_info: s.acceptedVersion,
      last_updated: s.lastUpdated?.toISOString(),
      error_state: s.lastError
        ? {
            last_update_attempt: s.lastError.lastUpdateAttempt.toISOString(),
            details: s.lastError.details,
            version_info: s.lastError.failedVersion,
          }
        : undefined,
      resources,
    });
  }
  return { connected, types };
}
