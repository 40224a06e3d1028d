/** The downstream HTTP/2 codec suite against meshlet's own framing (raw-server-session.ts). */
import '../h2/use-meshlet-server-codec';
import './h2-server-codec.test';
