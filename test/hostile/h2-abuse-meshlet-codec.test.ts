/** The HTTP/2 abuse defences against meshlet's own downstream HTTP/2 framing. */
import '../h2/use-meshlet-server-codec';
import './h2-abuse.test';
