/**
 * Per-node resource snapshots for the ADS server: the generated JSON of one workload, each resource
 * encoded once as a protobuf Any (through xds-client/proto-json, the single proto loader) and
 * versioned by a hash of its content.
 *
 * Owns caching and versioning, nothing about streams. Leans towards content addressing: a
 * resource's version is the SHA-256 of its JSON, so "push only what changed" is a comparison of
 * versions, and the same mesh yields the same versions across restarts. Secrets are the only async
 * part (they come from the issuer, which may need to sign a certificate first).
 */
import { createHash } from 'node:crypto';
import { anyToJson, jsonToAny } from '../xds-client/proto-json';
import { type AnyProto, TYPE_URLS } from '../xds-client/protos';
import { generateForWorkload, secretResources } from './generate';
import { type NodeResources, type ResourceJson, resourceName } from './generate-shared';
import type { CertIssuer } from './issuer';
import { workloadKey } from './issuer';
import type { Mesh, MeshWorkload } from './mesh';

/** One resource as served: its name, content version and encoded Any. */
export interface VersionedResource {
  readonly name: string;
  readonly version: string;
  readonly any: AnyProto;
}

export type ResourceSet = ReadonlyMap<string, VersionedResource>;

/** Type URLs served, in the order Envoy wants them pushed (CDS before EDS, LDS before RDS). */
export const SERVED_TYPES: readonly string[] = [
  TYPE_URLS.cluster,
  TYPE_URLS.clusterLoadAssignment,
  TYPE_URLS.listener,
  TYPE_URLS.routeConfiguration,
  TYPE_URLS.secret,
];

/** LDS and CDS are wildcard types: an empty subscription means "everything for this node". */
export function isWildcardType(typeUrl: string): boolean {
  return typeUrl === TYPE_URLS.listener || typeUrl === TYPE_URLS.cluster;
}

const MAX_ENCODED = 20_000;

export class SnapshotCache {
  private meshValue: Mesh;
  private generation = 0;
  private readonly perNode = new Map<string, { gen: number; resources: NodeResources }>();
  private readonly encoded = new Map<string, VersionedResource>();
  /** Per workload: the encoded `default`/`ROOTCA` secrets of its current certificate. */
  private readonly secrets = new Map<string, { serial: string; set: Map<string, VersionedResource> }>();
  /** The `ROOTCA` secret alone (what every keyless stream gets), per trust bundle. */
  private roots: { pem: string; set: Map<string, VersionedResource> } | undefined;

  constructor(
    mesh: Mesh,
    private readonly issuer: CertIssuer,
  ) {
    this.meshValue = mesh;
  }

  get mesh(): Mesh {
    return this.meshValue;
  }

  setMesh(mesh: Mesh): void {
    this.meshValue = mesh;
    this.generation++;
    this.perNode.clear();
    const live = new Set(mesh.workloads.map(workloadKey));
    for (const k of this.secrets.keys()) if (!live.has(k)) this.secrets.delete(k);
  }

  /**
   * All resources of `typeUrl` for workload `w` (undefined `w` = a node not in the mesh: nothing).
   * Secrets: `ROOTCA` always; `default` (with its private key) only when `withKey`.
   */
  async resources(w: MeshWorkload | undefined, typeUrl: string, withKey = false): Promise<ResourceSet> {
    if (!w) return new Map();
    const key = workloadKey(w);
    if (typeUrl === TYPE_URLS.secret) {
      const bundle = this.issuer.trustBundlePem;
      if (!withKey) {
        if (this.roots?.pem !== bundle) this.roots = { pem: bundle, set: this.encodeAll(secretResources(undefined, bundle)) };
        return this.roots.set;
      }
      const cert = await this.issuer.current(w);
      const hit = this.secrets.get(key);
      const stamp = `${cert.serial}|${bundle}`;
      if (hit && hit.serial === stamp) return hit.set;
      const json = secretResources({ certChainPem: cert.certChainPem, privateKeyPem: cert.privateKeyPem! }, bundle);
      // Secrets bypass the shared encoding cache: a rotated key must not linger in memory.
      const set = this.encodeAll(json, false);
      this.secrets.set(key, { serial: stamp, set });
      return set;
    }
    let node = this.perNode.get(key);
    if (!node || node.gen !== this.generation) {
      node = { gen: this.generation, resources: generateForWorkload(this.meshValue, w) };
      this.perNode.set(key, node);
    }
    return this.encodeAll(node.resources.get(typeUrl) ?? new Map());
  }

  private encodeAll(byName: ReadonlyMap<string, ResourceJson>, cache = true): Map<string, VersionedResource> {
    const out = new Map<string, VersionedResource>();
    for (const json of byName.values()) {
      const r = this.encode(json, cache);
      out.set(r.name, r);
    }
    return out;
  }

  private encode(json: ResourceJson, cache: boolean): VersionedResource {
    const text = JSON.stringify(json);
    const version = createHash('sha256').update(text).digest('hex').slice(0, 16);
    if (!cache) return { name: resourceName(json), version, any: jsonToAny(json) };
    const hit = this.encoded.get(version);
    if (hit) return hit;
    if (this.encoded.size >= MAX_ENCODED) this.encoded.clear();
    const r: VersionedResource = { name: resourceName(json), version, any: jsonToAny(json) };
    this.encoded.set(version, r);
    return r;
  }
}

/** A version for a whole SotW response: hash of the names and versions it carries. */
export function setVersion(resources: Iterable<VersionedResource>): string {
  const h = createHash('sha256');
  const parts = [...resources].map((r) => `${r.name}@${r.version}`).sort();
  for (const p of parts) h.update(p).update('\n');
  return h.digest('hex').slice(0, 16);
}

/** Decode an Any back to proto3 JSON (tests and debugging). */
export function decodeAny(any: AnyProto): Record<string, unknown> {
  return anyToJson({ type_url: any.type_url, value: any.value }) as Record<string, unknown>;
}
