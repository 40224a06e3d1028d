/**
 * SPIFFE identities as Istio uses them: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
 *
 * Owns parsing and formatting only. Leans strict: a SPIFFE ID that does not follow the spec
 * (lower-case trust domain, no query/fragment/port/userinfo, non-empty path segments without
 * `.`/`..`) is rejected rather than normalised, because identities are compared as exact strings.
 */

/** A parsed SPIFFE ID. `ns`/`sa` are set only when the path has Istio's `/ns/<ns>/sa/<sa>` shape. */
export interface SpiffeId {
  readonly trustDomain: string;
  /** The path, starting with `/` (may be empty for a trust-domain-only ID). */
  readonly path: string;
  readonly ns?: string;
  readonly sa?: string;
  /** The canonical URI string. */
  readonly uri: string;
}

const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

/** Whether `td` is a valid SPIFFE trust domain name. */
export function isValidTrustDomain(td: string): boolean {
  return td.length > 0 && td.length <= 255 && TRUST_DOMAIN_RE.test(td);
}

/** Whether `s` is a valid path segment (also used for Kubernetes-ish names in the mesh file). */
export function isValidSegment(s: string): boolean {
  return s.length > 0 && s !== '.' && s !== '..' && SEGMENT_RE.test(s);
}

/** Parse a SPIFFE ID; returns an error message instead of throwing. */
export function parseSpiffeId(uri: string): SpiffeId | { error: string } {
  const prefix = 'spiffe://';
  if (!uri.toLowerCase().startsWith(prefix)) return { error: `not a SPIFFE ID (must start with spiffe://): ${uri}` };
  if (!uri.startsWith(prefix)) return { error: `SPIFFE scheme must be lower-case: ${uri}` };
  const rest = uri.slice(prefix.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  if (!isValidTrustDomain(trustDomain)) return { error: `invalid trust domain "${trustDomain}" in ${uri}` };
  if (path !== '') {
    const segs = path.slice(1).split('/');
    for (const s of segs) {
      if (!isValidSegment(s)) return { error: `invalid path segment "${s}" in ${uri}` };
    }
    if (segs.length === 4 && segs[0] === 'ns' && segs[2] === 'sa') {
      return { trustDomain, path, ns: segs[1], sa: segs[3], uri };
    }
  }
  return { trustDomain, path, uri };
}

/** `spiffe://<td>/ns/<ns>/sa/<sa>`; throws on invalid parts (control-plane use only). */
export function formatSpiffeId(trustDomain: string, ns: string, sa: string): string {
  if (!isValidTrustDomain(trustDomain)) throw new TypeError(`invalid SPIFFE trust domain "${trustDomain}"`);
  if (!isValidSegment(ns)) throw new TypeError(`invalid namespace "${ns}" for a SPIFFE ID`);
  if (!isValidSegment(sa)) throw new TypeError(`invalid service account "${sa}" for a SPIFFE ID`);
  return `spiffe://${trustDomain}/ns/${ns}/sa/${sa}`;
}

/**
 * URI SANs of a certificate from node:crypto's `X509Certificate.subjectAltName` string
 * (`"URI:spiffe://…, DNS:…"`). Node quotes entries containing commas as JSON strings.
 */
export function uriSansOf(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const out: string[] = [];
  for (const entry of splitSan(subjectAltName)) {
    if (entry.startsWith('URI:')) out.push(entry.slice(4));
  }
  return out;
}

/** All SAN entries as `TYPE:value` strings. */
export function splitSan(subjectAltName: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < subjectAltName.length) {
    while (subjectAltName[i] === ' ' || subjectAltName[i] === ',') i++;
    if (i >= subjectAltName.length) break;
    const colon = subjectAltName.indexOf(':', i);
    if (colon < 0) break;
    const type = subjectAltName.slice(i, colon);
    let j = colon + 1;
    let value: string;
    if (subjectAltName[j] === '"') {
      // JSON-quoted value
      let k = j + 1;
      while (k < subjectAltName.length && subjectAltName[k] !== '"') k += subjectAltName[k] === '\\' ? 2 : 1;
      value = JSON.parse(subjectAltName.slice(j, k + 1)) as string;
      j = k + 1;
    } else {
      const comma = subjectAltName.indexOf(', ', j);
      const end = comma < 0 ? subjectAltName.length : comma;
      value = subjectAltName.slice(j, end);
      j = end;
    }
    out.push(`${type}:${value}`);
    i = j;
  }
  return out;
}
