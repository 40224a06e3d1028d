/** The h2spec-style conformance cases against the node:http2 downstream codec (its 16 gaps as it.fails). */
import './use-nghttp2-server-codec';
import './conformance.test';
