//! The request path: decide, then forward to the upstream and stream the answer back.
//!
//! Requests and responses are streamed in both directions (never buffered), so server-sent
//! events and chunked bodies reach the client as the upstream sends them. Hop-by-hop headers
//! are dropped both ways; `Host` becomes the upstream's; the `X-Certgate-*` and
//! `X-Client-Cert-Sha256` headers are always the gateway's own (anything a client sent under
//! those names, or under another proxy's client-certificate header such as
//! `X-Forwarded-Client-Cert`, in any case and with `_` for `-`, is removed first); the scope
//! headers reach the upstream only with `--forward-scope-headers`, and then only in their
//! checked form. Paths are checked by [`check_path`] and forwarded byte for byte.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

mod path;
pub use path::check_path;

use super::handler::{RefusalLog, ORGANIZATION_HEADER, PROJECT_HEADER};
use super::listener::PeerIdentity;
use super::reload::TrustState;
use super::upgrade::UpgradeStats;
use crate::admission::ChainPool;
use crate::openai_error::{OpenAiError, INVALID_REQUEST, SERVER};
use crate::store::Store;
use crate::telemetry::ErrorChain;
use crate::trust::Admission;
pub const X_ORGANIZATION: HeaderName = HeaderName::from_static("x-certgate-organization");
pub const X_PROJECT: HeaderName = HeaderName::from_static("x-certgate-project");
pub const X_CERTIFICATE_ID: HeaderName = HeaderName::from_static("x-certgate-certificate-id");
pub const X_CLIENT_CERT_SHA256: HeaderName = HeaderName::from_static("x-client-cert-sha256");

/// Connection-level headers (RFC 9110 §7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Upstream {
    scheme: axum::http::uri::Scheme,
    authority: axum::http::uri::Authority,
    /// Path prefix without a trailing slash ("" for none).
    prefix: String,
}

impl Upstream {
    /// Accepts `http://HOST[:PORT][/PREFIX]` and `https://…`.
    pub fn parse(raw: &str) -> anyhow::Result<Upstream> {
        let uri: Uri = raw
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid upstream URL '{raw}': {e}"))?;
        let scheme = uri
            .scheme()
            .filter(|s| s.as_str() == "http" || s.as_str() == "https")
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!("upstream URL '{raw}' must start with http:// or https://")
            })?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("upstream URL '{raw}' has no host"))?;
        if uri.query().is_some() {
            anyhow::bail!("upstream URL '{raw}' must not have a query");
        }
        Ok(Upstream {
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    pub(super) fn uri_for(&self, original: &Uri) -> Option<Uri> {
        let pq = original
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.prefix, pq))
            .build()
            .ok()
    }
}

/// Everything a request needs, shared by all connections.
pub struct GatewayState {
    pub store: Store,
    pub trust: Arc<TrustState>,
    pub client: HttpsClient,
    /// HTTP/1.1 only, for upgrades.
    pub upgrade_client: HttpsClient,
    pub upstream: Upstream,
    pub upstream_timeout: Duration,
    pub forward_scope_headers: bool,
    /// The organization of requests without an `OpenAI-Organization` header.
    pub default_organization: Option<String>,
    pub algs: rustls::crypto::WebPkiSupportedAlgorithms,
    pub chain_pool: ChainPool,
    /// Genuine paths found by earlier connections, reused by the next ones with the same chain.
    pub chain_cache: crate::trust::CheckCache,
    /// OCSP answers for clients of CAs whose `ocsp` mode is not `off`.
    pub ocsp: crate::ocsp::OcspChecker,
    pub refusals: RefusalLog,
    pub upgrades: std::sync::Arc<UpgradeStats>,
    /// An upgraded connection with no frame either way for this long is closed.
    pub upgrade_idle_timeout: Duration,
    pub metrics: super::metrics::GatewayMetrics,
}

/// Builds an upstream client: http and https (webpki roots, plus `extra_roots`), HTTP/1.1.
///
/// With `http2`, the client for plain requests: also HTTP/2 by ALPN, and idle connections are
/// kept for the next request. Without it, the client for upgrades: HTTP/1.1 only (RFC 8441 is
/// not used) and no pool at all, so every upgrade opens its own upstream connection and no
/// connection that carried an upgrade request ever carries another request, whatever the
/// upstream answered (decisions.md D39: an upstream that misreads one request's framing can then
/// only desynchronise a connection that nobody else's request will use).
pub fn upstream_client(
    extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    http2: bool,
) -> anyhow::Result<HttpsClient> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("upstream CA certificate not usable: {e}"))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(super::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let connector = if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    let mut client = Client::builder(TokioExecutor::new());
    if http2 {
        client.pool_idle_timeout(Duration::from_secs(90));
    } else {
        // No idle connection is ever kept: hyper-util disables the pool entirely.
        client.pool_max_idle_per_host(0);
    }
    Ok(client.build(connector))
}

/// Forwards an admitted request and streams the answer back.
pub async fn forward(
    shared: &GatewayState,
    peer: &PeerIdentity,
    admission: Admission,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let Some(uri) = shared.upstream.uri_for(&parts.uri) else {
        return bad_path();
    };
    let mut out = axum::http::Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    // The client picks HTTP/1.1 or HTTP/2 towards the upstream by ALPN.
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = outgoing_headers(shared, peer, &admission, parts.headers, false);
    match send_upstream(shared, &shared.client, out).await {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(refusal) => refusal,
    }
}

/// The refusal of a request whose path cannot be put under the upstream's.
pub fn bad_path() -> Response {
    refusal(
        StatusCode::BAD_REQUEST,
        INVALID_REQUEST,
        "The request path cannot be forwarded.",
        None,
    )
}

/// The headers an admitted request carries upstream: hop-by-hop and reserved ones removed
/// (`Connection`/`Upgrade` put back for an `upgrade`, which also loses `Content-Length`: it is
/// sent without a body), scope headers only when forwarded, `Host` the upstream's, and the
/// gateway's identity headers added.
pub fn outgoing_headers(
    shared: &GatewayState,
    peer: &PeerIdentity,
    admission: &Admission,
    mut headers: HeaderMap,
    upgrade: bool,
) -> HeaderMap {
    let upgrade_to = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            is_reserved(name)
                || (is_scope_header(name)
                    && !(shared.forward_scope_headers
                        && (*name == ORGANIZATION_HEADER || *name == PROJECT_HEADER)))
        })
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
    if upgrade {
        // No body-framing header on an upgrade (`Transfer-Encoding` went with the hop-by-hop
        // ones): hyper sends the head alone and would keep a `Content-Length` as given, and an
        // upstream would then read that many bytes of whatever comes next as this body.
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(to) = upgrade_to {
            headers.insert(header::UPGRADE, to);
        }
    }
    if let Ok(v) = HeaderValue::from_str(shared.upstream.authority.as_str()) {
        headers.insert(header::HOST, v);
    }
    insert(&mut headers, X_ORGANIZATION, &admission.organization);
    if let Some(p) = &admission.project {
        insert(&mut headers, X_PROJECT, p);
    }
    insert(&mut headers, X_CERTIFICATE_ID, &admission.certificate_id);
    if let Some(chain) = peer.chain() {
        insert(&mut headers, X_CLIENT_CERT_SHA256, chain.leaf_sha256());
    }
    headers
}

/// Sends `req` with `client`, waiting at most the upstream timeout for the response headers;
/// failures become the gateway's 502/504 answers.
pub async fn send_upstream(
    shared: &GatewayState,
    client: &HttpsClient,
    req: axum::http::Request<Body>,
) -> Result<hyper::Response<hyper::body::Incoming>, Response> {
    match tokio::time::timeout(shared.upstream_timeout, client.request(req)).await {
        Ok(Ok(res)) => Ok(res),
        Ok(Err(e)) => {
            tracing::warn!(error = %ErrorChain(&e), "upstream request failed");
            Err(refusal(
                StatusCode::BAD_GATEWAY,
                SERVER,
                "The upstream server could not be reached or answered badly.",
                Some("upstream_unavailable"),
            ))
        }
        Err(_) => {
            tracing::warn!(timeout = ?shared.upstream_timeout, "upstream timed out");
            Err(refusal(
                StatusCode::GATEWAY_TIMEOUT,
                SERVER,
                "The upstream server did not answer in time.",
                Some("upstream_timeout"),
            ))
        }
    }
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Removes the hop-by-hop headers and any header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    // `Upgrade` is connection-specific as well (upgrades put it back, see `outgoing_headers`).
    headers.remove(header::UPGRADE);
}

pub(super) fn refusal(
    status: StatusCode,
    kind: &'static str,
    message: &str,
    code: Option<&'static str>,
) -> Response {
    OpenAiError {
        status,
        kind,
        message: message.to_owned(),
        param: None,
        code,
    }
    .into_response()
}

/// Headers in which other proxies tell their upstream about a client certificate (decisions.md D32
/// names the first five): Envoy's `X-Forwarded-Client-Cert`, nginx's `X-SSL-Client-Cert` and
/// `-Verify`, `X-Client-Cert`, Traefik's `X-Forwarded-Tls-Client-Cert`, and RFC 9440's
/// `Client-Cert` and `Client-Cert-Chain`.
const CLIENT_CERT_HEADERS: [&str; 7] = [
    "x-forwarded-client-cert",
    "x-ssl-client-cert",
    "x-ssl-client-verify",
    "x-client-cert",
    "x-forwarded-tls-client-cert",
    "client-cert",
    "client-cert-chain",
];

/// The same conventions' other fields (`X-SSL-Client-DN`, `X-Forwarded-Tls-Client-Cert-Info`,
/// ingress-nginx's `ssl-client-verify`, …): every name starting with one of these.
const CLIENT_CERT_FAMILIES: [&str; 4] = [
    "x-ssl-client-",
    "x-client-cert-",
    "x-forwarded-tls-client-cert-",
    "ssl-client-",
];

/// Whether a client's header name is, read case-insensitively with `_` as `-`, one of the
/// gateway's own (`X-Client-Cert-Sha256`, `X-Certgate-*`) or one in which another proxy would
/// state a verified client certificate (`CLIENT_CERT_HEADERS`, `CLIENT_CERT_FAMILIES`):
/// such headers are always removed, since an upstream (a WSGI one, say) may read
/// `X_Certgate_Project` as `X-Certgate-Project`, and upstreams trust those conventions.
pub fn is_reserved(name: &HeaderName) -> bool {
    let normalized = dashed(name);
    normalized.starts_with("x-certgate-")
        || CLIENT_CERT_HEADERS.contains(&&*normalized)
        || CLIENT_CERT_FAMILIES
            .iter()
            .any(|family| normalized.starts_with(family))
}

/// Whether a header is, read the same way, a scope header (`OpenAI-Organization`,
/// `OpenAI-Project`).
pub fn is_scope_header(name: &HeaderName) -> bool {
    let normalized = dashed(name);
    normalized == ORGANIZATION_HEADER || normalized == PROJECT_HEADER
}

/// A header name (lowercase already) with `_` read as `-`; copied only when it has a `_`
/// (these run for every header of every request).
fn dashed(name: &HeaderName) -> Cow<'_, str> {
    let name = name.as_str();
    if name.contains('_') {
        Cow::Owned(name.replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::{is_reserved, HeaderName};

    #[test]
    fn client_certificate_headers_are_reserved_in_any_spelling() {
        for name in [
            "x-forwarded-client-cert",
            "x_forwarded_client_cert",
            "x-ssl-client-cert",
            "x-ssl-client-verify",
            "x_ssl_client_verify",
            "x-client-cert",
            "x-forwarded-tls-client-cert",
            "x-forwarded-tls-client-cert-info",
            "x-ssl-client-s-dn",
            "ssl-client-subject-dn",
            "client-cert",
            "client-cert-chain",
            "client_cert_chain",
            "x-client-cert-sha256",
            "x_client_cert_sha256",
            "x-certgate-project",
            "x_certgate_anything",
        ] {
            let header = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(is_reserved(&header), "{name}");
        }
        for name in [
            "authorization",
            "x-client-certainly",
            "client-certs",
            "x-ssl-protocol",
            "x-forwarded-for",
            "x-certgate",
        ] {
            let header = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(!is_reserved(&header), "{name}");
        }
    }
}
