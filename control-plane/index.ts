/**
 * The embedded control plane's public surface: start a server for a mesh file, and the mesh model
 * and generator for tools (the demo, tests) that build on it.
 */
export { ControlPlaneServer, type ControlPlaneOptions, type ReloadResult } from './server';
export { parseMesh, parseMeshOrThrow, findWorkload, findService, type Mesh, type MeshWorkload, type MeshService } from './mesh';
export { generateForWorkload, secretResources, outboundClusterName, inboundClusterName } from './generate';
export { CertIssuer, type IssuerOptions } from './issuer';
