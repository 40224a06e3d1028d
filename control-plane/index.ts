/**
 * The embedded control plane's public surface: start a server for a mesh file, and the mesh model
 * and generator for tools (the demo, tests) that build on it.
 */

export { type CsrRequest, type CsrResponse, csrServiceDefinition } from '../certs/csr-wire';
export { createCertificateHandler } from './csr-service';
export { generateForWorkload, secretResources } from './generate';
export { inboundClusterName, outboundClusterName } from './generate-shared';
export { CertIssuer, type IssuerOptions } from './issuer';
export {
  findService,
  findWorkload,
  type Mesh,
  type MeshService,
  type MeshWorkload,
  parseMesh,
  parseMeshOrThrow,
} from './mesh';
export { type ControlPlaneOptions, ControlPlaneServer, type ReloadResult } from './server';
