/** The h2spec-style conformance cases against meshlet's own downstream HTTP/2 framing (all 50 as `it`). */
import './use-meshlet-server-codec';
import './conformance.test';
