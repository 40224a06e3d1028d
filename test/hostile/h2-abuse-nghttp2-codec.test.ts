/** The HTTP/2 abuse defences against the node:http2 downstream codec. */
import '../h2/use-nghttp2-server-codec';
import './h2-abuse.test';
