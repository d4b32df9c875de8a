//! The proxies' configurations the end-to-end tests run (`proxies`), as docs/proxies.md shows
//! them: Envoy, nginx and HAProxy terminating mTLS and asking `certgate authz`.

use std::net::SocketAddr;
use std::path::Path;

/// The Envoy configuration docs/proxies.md shows: mTLS that requires a client certificate
/// (proof of its key) but leaves trust to certgate, XFCC sanitized and set with the chain,
/// `ext_authz` over gRPC with the peer certificate and raw headers.
pub fn envoy_config(
    listen: SocketAddr,
    cert: &Path,
    key: &Path,
    authz: SocketAddr,
    upstream: SocketAddr,
) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: mtls
    address:
      socket_address: {{ address: {listen_ip}, port_value: {listen_port} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{ filename: "{cert}" }}
              private_key: {{ filename: "{key}" }}
            validation_context:
              trust_chain_verification: ACCEPT_UNTRUSTED
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          forward_client_cert_details: SANITIZE_SET
          set_current_client_cert_details: {{ chain: true }}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream }}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              include_peer_certificate: true
              encode_raw_headers: true
              failure_mode_allow: false
              status_on_error: {{ code: ServiceUnavailable }}
              grpc_service:
                envoy_grpc: {{ cluster_name: certgate_authz }}
                timeout: 2s
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {up_ip}, port_value: {up_port} }}
  - name: certgate_authz
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
    load_assignment:
      cluster_name: certgate_authz
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {authz_ip}, port_value: {authz_port} }}
"#,
        listen_ip = listen.ip(),
        listen_port = listen.port(),
        cert = cert.display(),
        key = key.display(),
        up_ip = upstream.ip(),
        up_port = upstream.port(),
        authz_ip = authz.ip(),
        authz_port = authz.port(),
    )
}

/// The nginx configuration docs/proxies.md shows: mTLS that asks for a client certificate
/// (proof of its key) and leaves trust to certgate, `auth_request` passing the escaped
/// certificate, the identity headers taken from certgate's answer, and every client header
/// of the same names replaced or removed.
pub fn nginx_config(
    dir: &Path,
    listen: SocketAddr,
    cert: &Path,
    key: &Path,
    authz: SocketAddr,
    upstream: SocketAddr,
) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen {listen} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_verify_client optional_no_ca;
    keepalive_requests 1000;

    location / {{
      auth_request /_certgate;
      auth_request_set $certgate_org $upstream_http_x_certgate_organization;
      auth_request_set $certgate_project $upstream_http_x_certgate_project;
      auth_request_set $certgate_ca $upstream_http_x_certgate_certificate_id;
      auth_request_set $certgate_sha $upstream_http_x_client_cert_sha256;
      auth_request_set $certgate_refusal $upstream_http_x_certgate_refusal;
      add_header X-Certgate-Refusal $certgate_refusal always;
      proxy_set_header X-Certgate-Organization $certgate_org;
      proxy_set_header X-Certgate-Project $certgate_project;
      proxy_set_header X-Certgate-Certificate-Id $certgate_ca;
      proxy_set_header X-Client-Cert-Sha256 $certgate_sha;
      proxy_set_header OpenAI-Organization "";
      proxy_set_header OpenAI-Project "";
      proxy_set_header X-SSL-Client-Cert "";
      proxy_set_header X-Forwarded-Client-Cert "";
      proxy_pass http://{upstream};
    }}

    location = /_certgate {{
      internal;
      proxy_pass http://{authz};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
      proxy_set_header X-Forwarded-Client-Cert "";
    }}
  }}
}}
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

/// The Lua action docs/proxies.md shows for HAProxy (`lua.certgate URL`).
pub const HAPROXY_LUA: &str = include_str!("certgate.lua");

/// The HAProxy configuration docs/proxies.md shows: mTLS that asks for a client certificate
/// (proof of its key) and leaves trust to certgate (`verify optional` with every verification
/// error ignored), the client's certificate and identity headers removed, the certificate's
/// DER in base64 passed to certgate by the Lua action, the scope headers consumed. `lua` is
/// the path of [`HAPROXY_LUA`], `crt` the server's certificate and key in one file, `ca` the
/// CA names sent in the certificate request.
pub fn haproxy_config(
    lua: &Path,
    listen: SocketAddr,
    crt: &Path,
    ca: &Path,
    authz: SocketAddr,
    upstream: SocketAddr,
) -> String {
    format!(
        r"global
  lua-load {lua}

defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s

frontend mtls
  bind {listen} ssl crt {crt} verify optional ca-file {ca} crt-ignore-err all ca-ignore-err all
  http-request del-header X-SSL-Client-Cert
  http-request del-header X-Forwarded-Client-Cert
  http-request set-header X-SSL-Client-Cert %[ssl_c_der,base64] if {{ ssl_c_used }}
  http-request lua.certgate http://{authz}/
  http-request del-header X-SSL-Client-Cert
  http-request del-header OpenAI-Organization
  http-request del-header OpenAI-Project
  default_backend upstream

backend upstream
  server upstream {upstream}
",
        lua = lua.display(),
        crt = crt.display(),
        ca = ca.display(),
    )
}
