/**
 * Istio's private extension configs — the typed_config types istiod puts into a sidecar's
 * listeners that are not part of the Envoy API (no .proto ships with @grpc/grpc-js-xds). Without
 * them in the Root, an Any of these types reaches the decoders as opaque base64 bytes.
 *
 * Written here as protobufjs JSON descriptors from the field names and numbers of istio/proxy's
 * configs (facts about the wire format; the descriptors are ours). Added to the resource Root by
 * protos.ts so proto-json turns their bytes into the same JSON a YAML bootstrap carries.
 */
import type * as protobuf from 'protobufjs';

const str = (id: number, rule?: 'repeated') => ({ type: 'string', id, ...(rule ? { rule } : {}) });
const msg = (type: string, id: number, rule?: 'repeated') => ({ type, id, ...(rule ? { rule } : {}) });

export const ISTIO_PRIVATE_TYPES = {
  nested: {
    // istio/proxy source/extensions/filters/http/istio_stats: istio.stats (HTTP and network).
    stats: {
      nested: {
        MetricConfig: {
          fields: {
            dimensions: { keyType: 'string', type: 'string', id: 1 },
            name: str(2),
            tags_to_remove: str(3, 'repeated'),
            match: str(4),
            drop: { type: 'bool', id: 5 },
          },
        },
        MetricType: { values: { COUNTER: 0, GAUGE: 1, HISTOGRAM: 2 } },
        MetricDefinition: { fields: { name: str(1), value: str(2), type: msg('MetricType', 3) } },
        Reporter: { values: { UNSPECIFIED: 0, SERVER_GATEWAY: 1 } },
        PluginConfig: {
          fields: {
            disable_host_header_fallback: { type: 'bool', id: 6 },
            tcp_reporting_duration: msg('google.protobuf.Duration', 7),
            metrics: msg('MetricConfig', 8, 'repeated'),
            definitions: msg('MetricDefinition', 9, 'repeated'),
            reporter: msg('Reporter', 10),
            rotation_interval: msg('google.protobuf.Duration', 11),
            graceful_deletion_interval: msg('google.protobuf.Duration', 12),
          },
        },
      },
    },
    // istio/proxy source/extensions/filters/network/metadata_exchange: envoy.tcp.metadataexchange.
    envoy: {
      nested: {
        tcp: {
          nested: {
            metadataexchange: {
              nested: {
                config: {
                  nested: {
                    MetadataExchange: { fields: { protocol: str(1), enable_discovery: { type: 'bool', id: 2 } } },
                  },
                },
              },
            },
          },
        },
      },
    },
    istio: {
      nested: {
        envoy: {
          nested: {
            config: {
              nested: {
                filter: {
                  nested: {
                    http: {
                      nested: {
                        // istio/proxy source/extensions/filters/http/alpn: istio.alpn.
                        alpn: {
                          nested: {
                            v2alpha1: {
                              nested: {
                                FilterConfig: {
                                  fields: { alpn_override: msg('AlpnOverride', 1, 'repeated') },
                                  nested: {
                                    Protocol: { values: { HTTP10: 0, HTTP11: 1, HTTP2: 2 } },
                                    AlpnOverride: {
                                      fields: { upstream_protocol: msg('Protocol', 1), alpn_override: str(2, 'repeated') },
                                    },
                                  },
                                },
                              },
                            },
                          },
                        },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
    io: {
      nested: {
        istio: {
          nested: {
            network: { nested: { authn: { nested: { Config: { fields: {} } } } } },
            http: {
              nested: {
                // istio/proxy source/extensions/filters/http/peer_metadata: io.istio.http.peer_metadata.
                peer_metadata: {
                  nested: {
                    Config: {
                      fields: {
                        downstream_discovery: msg('DiscoveryMethod', 1, 'repeated'),
                        upstream_discovery: msg('DiscoveryMethod', 2, 'repeated'),
                        downstream_propagation: msg('PropagationMethod', 3, 'repeated'),
                        upstream_propagation: msg('PropagationMethod', 4, 'repeated'),
                        shared_with_upstream: { type: 'bool', id: 5 },
                        additional_labels: str(6, 'repeated'),
                      },
                      nested: {
                        Baggage: { fields: {} },
                        WorkloadDiscovery: { fields: {} },
                        IstioHeaders: { fields: { skip_external_clusters: { type: 'bool', id: 1 } } },
                        DiscoveryMethod: {
                          oneofs: { method_specifier: { oneof: ['baggage', 'workload_discovery', 'istio_headers'] } },
                          fields: { baggage: msg('Baggage', 1), workload_discovery: msg('WorkloadDiscovery', 2), istio_headers: msg('IstioHeaders', 3) },
                        },
                        PropagationMethod: {
                          oneofs: { method_specifier: { oneof: ['istio_headers'] } },
                          fields: { istio_headers: msg('IstioHeaders', 1) },
                        },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
} as protobuf.INamespace;
