/**
 * Imported first by the *-nghttp2 test files: selects the node:http2 downstream codec
 * (MESHLET_H2_SERVER_CODEC=nghttp2) for this test file's process, so the suites it then imports
 * also cover the path kept for comparison, while the default run covers meshlet's own framing.
 */
process.env.MESHLET_H2_SERVER_CODEC = 'nghttp2';
