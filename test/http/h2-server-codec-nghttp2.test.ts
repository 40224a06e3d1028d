/** The downstream HTTP/2 codec suite against the node:http2 codec (server-codec.ts). */
import '../h2/use-nghttp2-server-codec';
import './h2-server-codec.test';
