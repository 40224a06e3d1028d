/**
 * Imported first by the *-meshlet-codec test files: selects meshlet's own downstream HTTP/2
 * framing (MESHLET_H2_SERVER_CODEC=meshlet) for this test file's process, so the suites it then
 * imports run against it while the default run covers node:http2.
 */
process.env.MESHLET_H2_SERVER_CODEC = 'meshlet';
