# Envoy configuration shared by bench/authz/run.sh and bench/authz/profile.sh (sourced after
# bench/lib.sh): a plain-HTTP listener whose ext_authz filter asks one gRPC cluster and routes
# to the upstream cluster, forwarding the client's x-forwarded-client-cert as it came (wrk and
# the profile's client cannot present a certificate: the header stands in for what Envoy's
# SANITIZE_SET would put there after an mTLS handshake); and a cluster on a loopback port.

envoy_listener() { # NAME PORT CLUSTER
cat <<YAML
  - name: $1
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          forward_client_cert_details: ALWAYS_FORWARD_ONLY
          route_config:
            virtual_hosts:
            - { name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: upstream } }] }
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              encode_raw_headers: true
              failure_mode_allow: false
              grpc_service: { envoy_grpc: { cluster_name: $3 }, timeout: 2s }
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
YAML
}
envoy_cluster() { # NAME PORT h1|h2
cat <<YAML
  - name: $1
    type: STATIC
YAML
[[ $3 == h2 ]] && cat <<YAML
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
YAML
cat <<YAML
    load_assignment:
      cluster_name: $1
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $2 } } } }] }]
YAML
}


# envoy_config UPSTREAM_PORT NAME:LISTEN_PORT:AUTHZ_PORT...: the whole configuration, one
# listener per NAME asking its own ext_authz cluster (HTTP/2) on AUTHZ_PORT.
envoy_config() {
    local up=$1 spec name listen authz
    shift
    echo "static_resources:"
    echo "  listeners:"
    for spec in "$@"; do
        IFS=: read -r name listen authz <<<"$spec"
        envoy_listener "$name" "$listen" "${name}_authz"
    done
    echo "  clusters:"
    envoy_cluster upstream "$up" h1
    for spec in "$@"; do
        IFS=: read -r name listen authz <<<"$spec"
        envoy_cluster "${name}_authz" "$authz" h2
    done
}
