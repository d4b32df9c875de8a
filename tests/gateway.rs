//! The mTLS gateway through real TLS handshakes (tokio-rustls clients presenting rcgen
//! certificates, HTTP/1.1 and HTTP/2), in front of a real upstream that echoes what it
//! received, with trust changes made through the real Admin API. Every case runs on SQLite
//! and, when reachable, PostgreSQL.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use certgate::domain::Clock;
use certgate::gateway::{serve_tls, tls, Gateway, GatewayOptions};
use certgate::store::{Store, StoreOptions};
use common::{pki, wall_clock, TestApp};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use sha2::Digest;

const DAY: i64 = 86_400;

// ------------------------------------------------------------------------------ harness

/// The echo upstream: `/stream` sends one event, waits for `release`, then sends the last;
/// `/slow` answers after 5 s; anything else echoes method, path, query, headers and body.
struct Upstream {
    addr: SocketAddr,
    release: Arc<tokio::sync::Notify>,
    last_sent: Arc<AtomicBool>,
}

async fn upstream() -> Upstream {
    let release = Arc::new(tokio::sync::Notify::new());
    let last_sent = Arc::new(AtomicBool::new(false));
    let (r, l) = (release.clone(), last_sent.clone());
    let app = axum::Router::new()
        .route(
            "/v1/stream",
            axum::routing::get(move || {
                let (release, last_sent) = (r.clone(), l.clone());
                async move {
                    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
                    tokio::spawn(async move {
                        let _ = tx.send(Ok(Bytes::from_static(b"data: first\n\n"))).await;
                        release.notified().await;
                        last_sent.store(true, Ordering::SeqCst);
                        let _ = tx.send(Ok(Bytes::from_static(b"data: last\n\n"))).await;
                    });
                    let stream = futures::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|item| (item, rx))
                    });
                    axum::response::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Body::from_stream(stream))
                        .unwrap()
                }
            }),
        )
        .route(
            "/v1/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .fallback(echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Upstream {
        addr,
        release,
        last_sent,
    }
}

async fn echo(req: Request) -> axum::Json<Value> {
    let (parts, body) = req.into_parts();
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::from(v.to_str().unwrap_or("<binary>")))
            .collect();
        headers.insert(name.as_str().to_owned(), Value::Array(values));
    }
    let body = body.collect().await.unwrap().to_bytes();
    axum::Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

/// A gateway on a free port, in front of `upstream`, with its own server PKI.
struct Gw {
    _gateway: Gateway,
    trust: Arc<certgate::gateway::reload::TrustState>,
    ep: Endpoint,
}

/// Where a TLS client connects, and the CA that vouches for the server there.
struct Endpoint {
    addr: SocketAddr,
    server_ca: CertificateDer<'static>,
}

impl std::ops::Deref for Gw {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.ep
    }
}

async fn gateway(store: Store, upstream: &str, tweak: impl FnOnce(&mut GatewayOptions)) -> Gw {
    let server_ca = pki::ca("Gateway test server CA");
    let leaf = pki::server_leaf(&server_ca);
    let config = tls::server_config(
        vec![leaf.cert.der().clone()],
        PrivateKeyDer::Pkcs8(leaf.key.serialize_der().into()),
    )
    .unwrap();
    let mut options = GatewayOptions::new(upstream);
    options.trust_poll = Duration::from_millis(50);
    tweak(&mut options);
    let gateway = Gateway::start(store, options).await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(serve_tls(
        gateway.router(),
        tcp,
        Arc::new(config),
        certgate::gateway::HandshakeLimits::default(),
        std::future::pending(),
    ));
    Gw {
        trust: gateway.trust(),
        _gateway: gateway,
        ep: Endpoint {
            addr,
            server_ca: server_ca.cert.der().clone(),
        },
    }
}

/// Gateway + echo upstream on the TestApp's store.
async fn setup(app: &TestApp) -> (Gw, Upstream) {
    let up = upstream().await;
    let gw = gateway(app.store.clone(), &format!("http://{}", up.addr), |_| {}).await;
    (gw, up)
}

/// A client certificate chain and key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    leaf_sha256: String,
}

fn identity(leaf: &pki::Leaf, intermediates: &[&pki::Ca]) -> Identity {
    let mut chain = vec![leaf.cert.der().clone()];
    chain.extend(intermediates.iter().map(|c| c.cert.der().clone()));
    Identity {
        leaf_sha256: hex::encode(sha2::Sha256::digest(leaf.cert.der().as_ref())),
        chain,
        key: PrivateKeyDer::Pkcs8(leaf.key.serialize_der().into()),
    }
}

/// A leaf of `ca` valid from a day ago for 30 days.
fn good_leaf(ca: &pki::Ca) -> Identity {
    let now = wall_clock();
    identity(&pki::leaf(ca, "client", now - DAY, now + 30 * DAY), &[])
}

enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn connect(gw: &Endpoint, id: Option<&Identity>, h2: bool) -> Conn {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(gw.server_ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match id {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake (the gateway never aborts it over the client certificate)");
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(tls);
    if h2 {
        assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]), "ALPN offers h2");
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn::H2(send)
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        Conn::H1(send)
    }
}

struct Reply {
    status: u16,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Reply {
    /// Asserts a gateway refusal: status, OpenAI's four keys, and `code`.
    #[track_caller]
    fn refused(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        let e = self.body["error"].as_object().expect("error object");
        assert_eq!(e.len(), 4, "four keys: {}", self.body);
        assert_eq!(e["code"], code, "{}", self.body);
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(e["param"].is_null());
        let kind = if status == 400 {
            "invalid_request_error"
        } else if status == 403 {
            "permission_error"
        } else {
            "server_error"
        };
        assert_eq!(e["type"], kind);
    }

    /// The request reached the upstream; returns the headers it saw.
    #[track_caller]
    fn admitted(&self) -> &serde_json::Map<String, Value> {
        assert_eq!(self.status, 200, "{}", self.body);
        self.body["headers"].as_object().expect("echoed headers")
    }
}

impl Conn {
    async fn send(
        &mut self,
        req: hyper::Request<Full<Bytes>>,
    ) -> hyper::Response<hyper::body::Incoming> {
        match self {
            Conn::H1(s) => {
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
            Conn::H2(s) => {
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
        }
    }

    fn request(&self, method: &str, path: &str) -> axum::http::request::Builder {
        match self {
            Conn::H1(_) => hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "localhost"),
            Conn::H2(_) => hyper::Request::builder()
                .method(method)
                .uri(format!("https://localhost{path}")),
        }
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut b = self.request(method, path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let res = self
            .send(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn get(&mut self, headers: &[(&str, &str)]) -> Reply {
        self.call("GET", "/v1/models", headers, "").await
    }
}

/// One request on a fresh HTTP/1.1 connection.
async fn once(gw: &Endpoint, id: Option<&Identity>, headers: &[(&str, &str)]) -> Reply {
    connect(gw, id, false).await.get(headers).await
}

// Admin API helpers (through the real router).

async fn admin(app: &TestApp, path: &str, body: Value) -> Value {
    admin_as(app, &app.key, path, body).await
}

async fn admin_as(app: &TestApp, key: &str, path: &str, body: Value) -> Value {
    let res = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn upload(app: &TestApp, ca: &pki::Ca) -> String {
    let v = admin(
        app,
        "/organization/certificates",
        json!({"certificate": ca.pem()}),
    )
    .await;
    v["id"].as_str().unwrap().to_owned()
}

async fn activate_org(app: &TestApp, id: &str) {
    admin(
        app,
        "/organization/certificates/activate",
        json!({"certificate_ids": [id]}),
    )
    .await;
}

async fn deactivate_org(app: &TestApp, id: &str) {
    admin(
        app,
        "/organization/certificates/deactivate",
        json!({"certificate_ids": [id]}),
    )
    .await;
}

async fn create_project(app: &TestApp, name: &str) -> String {
    let v = admin(app, "/organization/projects", json!({"name": name})).await;
    v["id"].as_str().unwrap().to_owned()
}

async fn activate_project(app: &TestApp, project: &str, id: &str) {
    admin(
        app,
        &format!("/organization/projects/{project}/certificates/activate"),
        json!({"certificate_ids": [id]}),
    )
    .await;
}

/// Uploads `ca` and activates it for the whole organization; returns its id.
async fn org_ca(app: &TestApp, ca: &pki::Ca) -> String {
    let id = upload(app, ca).await;
    activate_org(app, &id).await;
    id
}

/// Uploads `ca` as the organization of `key` and activates it there; returns its id.
async fn org_ca_as(app: &TestApp, key: &str, ca: &pki::Ca) -> String {
    let v = admin_as(
        app,
        key,
        "/organization/certificates",
        json!({"certificate": ca.pem()}),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_owned();
    admin_as(
        app,
        key,
        "/organization/certificates/activate",
        json!({"certificate_ids": [id]}),
    )
    .await;
    id
}

/// Waits until the gateway has loaded everything written so far.
async fn caught_up(app: &TestApp, gw: &Gw) {
    let target = app.store.trust_generation().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.trust.readiness().generation < Some(target) {
        assert!(
            Instant::now() < deadline,
            "gateway did not reach generation {target}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Re-evaluates `cond` until it holds; fails after 5 s. Evaluates to the time it took.
macro_rules! within_5s {
    ($what:expr, $cond:expr) => {{
        let start = Instant::now();
        loop {
            if $cond {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{}: not seen within 5 s",
                $what
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }};
}

// ------------------------------------------------------------------------------ tests

backend_tests!(
    admits_and_rewrites_headers,
    forwards_method_path_query_and_body,
    no_certificate_is_refused,
    untrusted_and_foreign_cas_are_refused,
    leaf_validity_is_enforced,
    anchor_validity_is_enforced_at_its_boundaries,
    project_scope,
    organization_header_and_inference,
    intermediates_sent_by_the_client,
    leaf_must_allow_client_auth,
    forward_scope_headers_flag,
    streams_without_buffering,
    http2_clients,
    upstream_failures,
    changes_apply_to_open_connections,
);

async fn admits_and_rewrites_headers(app: TestApp) {
    let (gw, up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let cert_id = org_ca(&app, &ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let project = create_project(&app, "p").await;
    let reply = once(
        &gw,
        Some(&id),
        &[
            ("authorization", "Bearer sk-test-123"),
            ("openai-organization", app.org_id.as_str()),
            ("openai-project", project.as_str()),
            ("x-certgate-organization", "org-forged"),
            ("x-certgate-project", "proj_forged"),
            ("x-certgate-certificate-id", "cert_forged"),
            ("x-certgate-anything", "forged"),
            ("x-client-cert-sha256", "00"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "dropped"),
            ("keep-alive", "timeout=5"),
            ("x-custom", "kept"),
        ],
    )
    .await;
    let h = reply.admitted();
    let one = |name: &str| -> Vec<&str> {
        h.get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    assert_eq!(one("host"), [up.addr.to_string()]);
    assert_eq!(one("authorization"), ["Bearer sk-test-123"]);
    assert_eq!(one("x-certgate-organization"), [app.org_id.as_str()]);
    assert_eq!(one("x-certgate-project"), [project.as_str()]);
    assert_eq!(one("x-certgate-certificate-id"), [cert_id.as_str()]);
    assert_eq!(one("x-client-cert-sha256"), [id.leaf_sha256.as_str()]);
    assert_eq!(one("x-custom"), ["kept"]);
    for gone in [
        "openai-organization",
        "openai-project",
        "x-certgate-anything",
        "x-hop",
        "keep-alive",
        "connection",
    ] {
        assert!(
            !h.contains_key(gone),
            "{gone} must not reach the upstream: {h:?}"
        );
    }
    // Without a project header there is no project header upstream either.
    let reply = once(&gw, Some(&id), &[]).await;
    let h = reply.admitted();
    assert!(!h.contains_key("x-certgate-project"));
    assert_eq!(h["x-certgate-organization"][0], app.org_id.as_str());
}

async fn forwards_method_path_query_and_body(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    org_ca(&app, &ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let mut conn = connect(&gw, Some(&id), false).await;
    let body = r#"{"model":"gpt-4o","input":"hi"}"#;
    let r = conn
        .call(
            "POST",
            "/v1/responses?stream=false&x=%20y",
            &[("content-type", "application/json")],
            body,
        )
        .await;
    r.admitted();
    assert_eq!(r.body["method"], "POST");
    assert_eq!(r.body["path"], "/v1/responses");
    assert_eq!(r.body["query"], "stream=false&x=%20y");
    assert_eq!(r.body["body"], body);
    // Several requests on one connection.
    let r = conn.call("DELETE", "/v1/files/file_1", &[], "").await;
    r.admitted();
    assert_eq!(r.body["method"], "DELETE");
    assert_eq!(r.body["path"], "/v1/files/file_1");
}

async fn no_certificate_is_refused(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    org_ca(&app, &ca).await;
    caught_up(&app, &gw).await;
    let r = once(&gw, None, &[]).await;
    r.refused(403, "client_certificate_required");
    assert_eq!(r.headers["x-should-retry"], "false");
    let r = once(&gw, None, &[("openai-organization", app.org_id.as_str())]).await;
    r.refused(403, "client_certificate_required");
    // Over HTTP/2 too.
    let r = connect(&gw, None, true).await.get(&[]).await;
    r.refused(403, "client_certificate_required");
}

async fn untrusted_and_foreign_cas_are_refused(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ours = pki::ca("Our CA");
    org_ca(&app, &ours).await;
    // Never uploaded.
    let stranger = pki::ca("Stranger CA");
    // Uploaded but not active.
    let inactive = pki::ca("Inactive CA");
    upload(&app, &inactive).await;
    // Same subject as ours, different key: found by name, refused by signature.
    let impostor = pki::ca("Our CA");
    // Active, but for another organization.
    let (other_org, other_key) = app.other_org().await;
    let theirs = pki::ca("Their CA");
    let theirs_id = org_ca_as(&app, &other_key, &theirs).await;
    caught_up(&app, &gw).await;

    let ours_hdr = [("openai-organization", app.org_id.as_str())];
    for ca in [&stranger, &inactive, &impostor] {
        once(&gw, Some(&good_leaf(ca)), &[])
            .await
            .refused(403, "client_certificate_untrusted");
        once(&gw, Some(&good_leaf(ca)), &ours_hdr)
            .await
            .refused(403, "client_certificate_untrusted");
    }
    // Their CA never admits into our organization...
    once(&gw, Some(&good_leaf(&theirs)), &ours_hdr)
        .await
        .refused(403, "client_certificate_untrusted");
    // ... and ours never into theirs.
    once(
        &gw,
        Some(&good_leaf(&ours)),
        &[("openai-organization", other_org.as_str())],
    )
    .await
    .refused(403, "client_certificate_untrusted");
    // Their CA admits into their organization, inferred or named.
    let r = once(&gw, Some(&good_leaf(&theirs)), &[]).await;
    assert_eq!(
        r.admitted()["x-certgate-organization"][0],
        other_org.as_str()
    );
    let r = once(
        &gw,
        Some(&good_leaf(&theirs)),
        &[("openai-organization", other_org.as_str())],
    )
    .await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        theirs_id.as_str()
    );
    // A self-signed client certificate is refused, not an error.
    let selfsigned = pki::ca("Self");
    let me = Identity {
        chain: vec![selfsigned.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(selfsigned.key.serialize_der().into()),
        leaf_sha256: String::new(),
    };
    once(&gw, Some(&me), &[])
        .await
        .refused(403, "client_certificate_untrusted");
}

async fn leaf_validity_is_enforced(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    org_ca(&app, &ca).await;
    caught_up(&app, &gw).await;
    let now = app.clock.now();
    let expired = identity(&pki::leaf(&ca, "old", now - 30 * DAY, now - DAY), &[]);
    let future = identity(&pki::leaf(&ca, "new", now + DAY, now + 30 * DAY), &[]);
    once(&gw, Some(&expired), &[])
        .await
        .refused(403, "client_certificate_expired");
    once(&gw, Some(&future), &[])
        .await
        .refused(403, "client_certificate_expired");
    // An expired leaf from an untrusted CA is "untrusted": "expired" is only said of genuine chains.
    let stranger = pki::ca("Stranger");
    let stale = identity(&pki::leaf(&stranger, "old", now - 30 * DAY, now - DAY), &[]);
    once(&gw, Some(&stale), &[])
        .await
        .refused(403, "client_certificate_untrusted");
    // Time is the store's clock: move it into the future leaf's window and it is admitted.
    app.clock.set(now + 2 * DAY);
    once(&gw, Some(&future), &[]).await.admitted();
}

async fn anchor_validity_is_enforced_at_its_boundaries(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let now = app.clock.now();
    // Valid from now for two days; the leaf outlives it.
    let ca = pki::ca_valid("Short CA", now, now + 2 * DAY);
    org_ca(&app, &ca).await;
    // Staged for a rotation: not valid for another hour.
    let staged = pki::ca_valid("Staged CA", now + 3600, now + 365 * DAY);
    org_ca(&app, &staged).await;
    caught_up(&app, &gw).await;
    let leaf = identity(&pki::leaf(&ca, "c", now - DAY, now + 30 * DAY), &[]);
    let staged_leaf = identity(&pki::leaf(&staged, "s", now - DAY, now + 30 * DAY), &[]);

    once(&gw, Some(&leaf), &[]).await.admitted();
    once(&gw, Some(&staged_leaf), &[])
        .await
        .refused(403, "client_certificate_expired");
    app.clock.set(now + 3600);
    once(&gw, Some(&staged_leaf), &[]).await.admitted();

    // notAfter is the last valid second; one second later the anchor drops out, with no
    // database event. On an open connection too.
    let mut conn = connect(&gw, Some(&leaf), false).await;
    app.clock.set(now + 2 * DAY);
    conn.get(&[]).await.admitted();
    app.clock.set(now + 2 * DAY + 1);
    conn.get(&[])
        .await
        .refused(403, "client_certificate_expired");
    once(&gw, Some(&leaf), &[])
        .await
        .refused(403, "client_certificate_expired");
}

async fn project_scope(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let p1 = create_project(&app, "one").await;
    let p2 = create_project(&app, "two").await;
    let project_ca = pki::ca("Project CA");
    let pid = upload(&app, &project_ca).await;
    activate_project(&app, &p1, &pid).await;
    let org_wide = pki::ca("Org CA");
    let oid = org_ca(&app, &org_wide).await;
    caught_up(&app, &gw).await;
    let pleaf = good_leaf(&project_ca);
    let oleaf = good_leaf(&org_wide);
    let org = app.org_id.as_str();

    // Project-level CA: only with OpenAI-Project naming its project.
    let r = once(
        &gw,
        Some(&pleaf),
        &[
            ("openai-organization", org),
            ("openai-project", p1.as_str()),
        ],
    )
    .await;
    assert_eq!(r.admitted()["x-certgate-certificate-id"][0], pid.as_str());
    let r = once(&gw, Some(&pleaf), &[("openai-project", p1.as_str())]).await;
    assert_eq!(r.admitted()["x-certgate-project"][0], p1.as_str());
    once(&gw, Some(&pleaf), &[("openai-organization", org)])
        .await
        .refused(403, "client_certificate_not_active_for_project");
    once(&gw, Some(&pleaf), &[])
        .await
        .refused(403, "client_certificate_not_active_for_project");
    once(&gw, Some(&pleaf), &[("openai-project", p2.as_str())])
        .await
        .refused(403, "client_certificate_not_active_for_project");

    // Organization-level CA: every project, and no project.
    for hdrs in [
        vec![("openai-project", p1.as_str())],
        vec![("openai-project", p2.as_str())],
        vec![("openai-organization", org)],
        vec![],
    ] {
        let r = once(&gw, Some(&oleaf), &hdrs).await;
        assert_eq!(r.admitted()["x-certgate-certificate-id"][0], oid.as_str());
    }
}

async fn organization_header_and_inference(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    org_ca(&app, &ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    once(
        &gw,
        Some(&id),
        &[("openai-organization", "org-doesnotexist")],
    )
    .await
    .refused(400, "unknown_organization");
    let r = once(&gw, Some(&id), &[]).await;
    assert_eq!(
        r.admitted()["x-certgate-organization"][0],
        app.org_id.as_str()
    );

    // The same CA uploaded and activated by a second organization: the certificate alone no
    // longer says which organization is meant.
    let (other, key) = app.other_org().await;
    let their_id = org_ca_as(&app, &key, &ca).await;
    caught_up(&app, &gw).await;
    once(&gw, Some(&id), &[])
        .await
        .refused(400, "organization_required");
    let r = once(&gw, Some(&id), &[("openai-organization", other.as_str())]).await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        their_id.as_str()
    );
    let r = once(
        &gw,
        Some(&id),
        &[("openai-organization", app.org_id.as_str())],
    )
    .await;
    assert_eq!(
        r.admitted()["x-certgate-organization"][0],
        app.org_id.as_str()
    );
}

async fn intermediates_sent_by_the_client(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let now = app.clock.now();
    let root = pki::ca("Root CA");
    org_ca(&app, &root).await;
    caught_up(&app, &gw).await;
    let inter = pki::intermediate(&root, "Issuing CA", now - DAY, now + 100 * DAY);
    let leaf = pki::leaf(&inter, "c", now - DAY, now + 30 * DAY);
    once(&gw, Some(&identity(&leaf, &[&inter])), &[])
        .await
        .admitted();
    // Without the intermediate the chain cannot be built.
    once(&gw, Some(&identity(&leaf, &[])), &[])
        .await
        .refused(403, "client_certificate_untrusted");
}

async fn leaf_must_allow_client_auth(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let now = app.clock.now();
    let ca = pki::ca("Org CA");
    org_ca(&app, &ca).await;
    caught_up(&app, &gw).await;
    let server_only = identity(
        &pki::server_only_leaf(&ca, "srv", now - DAY, now + DAY),
        &[],
    );
    once(&gw, Some(&server_only), &[])
        .await
        .refused(403, "client_certificate_untrusted");
}

async fn forward_scope_headers_flag(app: TestApp) {
    let up = upstream().await;
    let gw = gateway(
        app.store.clone(),
        &format!("http://{}/prefix/", up.addr),
        |o| o.forward_scope_headers = true,
    )
    .await;
    let ca = pki::ca("Org CA");
    org_ca(&app, &ca).await;
    caught_up(&app, &gw).await;
    let r = once(
        &gw,
        Some(&good_leaf(&ca)),
        &[
            ("openai-organization", app.org_id.as_str()),
            ("openai-project", "proj_x"),
        ],
    )
    .await;
    let h = r.admitted();
    assert_eq!(h["openai-organization"][0], app.org_id.as_str());
    assert_eq!(h["openai-project"][0], "proj_x");
    // The upstream URL's path is a prefix.
    assert_eq!(r.body["path"], "/prefix/v1/models");
}

async fn streams_without_buffering(app: TestApp) {
    let (gw, up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    org_ca(&app, &ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    for h2 in [false, true] {
        up.last_sent.store(false, Ordering::SeqCst);
        let mut conn = connect(&gw, Some(&id), h2).await;
        let req = conn
            .request("GET", "/v1/stream")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = conn.send(req).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut body = res.into_body();
        // The upstream holds its last event until told; a buffering proxy would never
        // deliver the first one, and this times out.
        let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("first event arrives while the upstream is still sending")
            .unwrap()
            .unwrap();
        assert_eq!(
            first.data_ref().map(|b| &b[..]),
            Some(&b"data: first\n\n"[..])
        );
        assert!(!up.last_sent.load(Ordering::SeqCst));
        up.release.notify_one();
        let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes();
        assert_eq!(&rest[..], b"data: last\n\n", "h2={h2}");
    }
}

async fn http2_clients(app: TestApp) {
    let (gw, up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let cert_id = org_ca(&app, &ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let mut conn = connect(&gw, Some(&id), true).await;
    let r = conn
        .call(
            "POST",
            "/v1/chat/completions?a=b",
            &[("authorization", "Bearer k")],
            "{}",
        )
        .await;
    let h = r.admitted();
    assert_eq!(h["host"][0], up.addr.to_string());
    assert_eq!(h["x-certgate-certificate-id"][0], cert_id.as_str());
    assert_eq!(h["authorization"][0], "Bearer k");
    assert_eq!(r.body["query"], "a=b");
    assert_eq!(r.body["body"], "{}");
    // Concurrent streams on the one connection.
    let Conn::H2(sender) = &conn else {
        unreachable!()
    };
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut s = sender.clone();
        tasks.push(tokio::spawn(async move {
            let req = hyper::Request::builder()
                .uri(format!("https://localhost/v1/n/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let res = s.send_request(req).await.unwrap();
            let status = res.status();
            let body: Value =
                serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes())
                    .unwrap();
            (status, body["path"].as_str().unwrap().to_owned())
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, path) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(path, format!("/v1/n/{i}"));
    }
    let untrusted = good_leaf(&pki::ca("Stranger"));
    connect(&gw, Some(&untrusted), true)
        .await
        .get(&[])
        .await
        .refused(403, "client_certificate_untrusted");
}

async fn upstream_failures(app: TestApp) {
    let ca = pki::ca("Org CA");
    org_ca(&app, &ca).await;
    let id = good_leaf(&ca);
    // Nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = gateway(app.store.clone(), &format!("http://{dead}"), |_| {}).await;
    once(&gw, Some(&id), &[])
        .await
        .refused(502, "upstream_unavailable");
    // Too slow.
    let up = upstream().await;
    let gw = gateway(app.store.clone(), &format!("http://{}", up.addr), |o| {
        o.upstream_timeout = Duration::from_millis(300)
    })
    .await;
    let started = Instant::now();
    let r = connect(&gw, Some(&id), false)
        .await
        .call("GET", "/v1/slow", &[], "")
        .await;
    r.refused(504, "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "504 before the upstream answers"
    );
    // Untrusted clients never reach a failing upstream: the refusal comes first.
    once(&gw, None, &[])
        .await
        .refused(403, "client_certificate_required");
}

async fn changes_apply_to_open_connections(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let ca = pki::ca("Org CA");
    let cert_id = upload(&app, &ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    let mut h1 = connect(&gw, Some(&id), false).await;
    let mut h2 = connect(&gw, Some(&id), true).await;
    h1.get(&[])
        .await
        .refused(403, "client_certificate_untrusted");
    h2.get(&[])
        .await
        .refused(403, "client_certificate_untrusted");

    activate_org(&app, &cert_id).await;
    within_5s!(
        "activation on an open HTTP/1.1 connection",
        h1.get(&[]).await.status == 200
    );
    within_5s!(
        "activation on an open HTTP/2 connection",
        h2.get(&[]).await.status == 200
    );
    once(&gw, Some(&id), &[]).await.admitted();

    deactivate_org(&app, &cert_id).await;
    within_5s!(
        "deactivation on an open connection",
        h1.get(&[]).await.status == 403
    );
    once(&gw, Some(&id), &[])
        .await
        .refused(403, "client_certificate_untrusted");

    // Project activation, then archiving the project, then delete.
    let p = create_project(&app, "p").await;
    activate_project(&app, &p, &cert_id).await;
    let hdr = [("openai-project", p.as_str())];
    within_5s!("project activation", h1.get(&hdr).await.status == 200);
    admin(
        &app,
        &format!("/organization/projects/{p}/archive"),
        json!({}),
    )
    .await;
    within_5s!(
        "archiving ends the activation",
        h1.get(&hdr).await.status == 403
    );
    let del = app
        .http
        .delete(format!("{}/organization/certificates/{cert_id}", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success());
    h1.get(&hdr)
        .await
        .refused(403, "client_certificate_untrusted");
}

// ------------------------------------------------------------------------------ outage

/// PostgreSQL goes away: the gateway keeps enforcing what it loaded (admits the admitted,
/// refuses the rest, drops an anchor at its expiry), reports not-ready, and catches up when
/// the database returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_keeps_the_last_state() {
    let Some(app) = TestApp::spawn(common::Db::Postgres).await else {
        return;
    };
    let (proxy, url) = common::CuttableProxy::in_front_of(&app.db.url).await;
    let mut options = StoreOptions::new(url);
    options.timeout = Duration::from_millis(500);
    options.max_connections = 2;
    let store = Store::connect(&options, app.clock.clone()).await.unwrap();
    let up = upstream().await;
    let gw = gateway(store, &format!("http://{}", up.addr), |_| {}).await;

    let now = app.clock.now();
    let ca = pki::ca_valid("Org CA", now - DAY, now + 2 * DAY);
    let cert_id = org_ca(&app, &ca).await;
    let later = pki::ca("Later CA");
    let later_id = upload(&app, &later).await;
    caught_up(&app, &gw).await;
    assert!(gw.trust.readiness().ready);
    let id = identity(&pki::leaf(&ca, "c", now - DAY, now + 30 * DAY), &[]);
    let later_leaf = good_leaf(&later);

    proxy.cut();
    within_5s!("readiness reports the outage", !gw.trust.readiness().ready);
    // The last state is enforced: neither open nor closed.
    once(&gw, Some(&id), &[]).await.admitted();
    once(&gw, Some(&later_leaf), &[])
        .await
        .refused(403, "client_certificate_untrusted");
    once(&gw, None, &[])
        .await
        .refused(403, "client_certificate_required");
    // Changes made meanwhile (through the Admin API, which still reaches the database).
    deactivate_org(&app, &cert_id).await;
    activate_org(&app, &later_id).await;
    once(&gw, Some(&id), &[]).await.admitted();
    // Expiry needs no database.
    app.clock.set(now + 2 * DAY + 1);
    once(&gw, Some(&id), &[])
        .await
        .refused(403, "client_certificate_expired");
    app.clock.set(now);

    proxy.restore();
    within_5s!("catches up after the outage", gw.trust.readiness().ready);
    caught_up(&app, &gw).await;
    once(&gw, Some(&later_leaf), &[]).await.admitted();
    once(&gw, Some(&id), &[])
        .await
        .refused(403, "client_certificate_untrusted");
}

// ------------------------------------------------------------------------------ binary

/// `certgate gateway` as operators run it: flags and environment, health endpoint, TLS from
/// PEM files, and the same decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_and_reports_readiness() {
    let app = TestApp::spawn(common::Db::Sqlite).await.unwrap();
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let server_ca = pki::ca("Binary server CA");
    let server = pki::server_leaf(&server_ca);
    let cert_path = dir.path().join("gateway.pem");
    let key_path = dir.path().join("gateway.key");
    std::fs::write(&cert_path, server.cert.pem()).unwrap();
    std::fs::write(&key_path, server.key.serialize_pem()).unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (listen, health) = (free(), free());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(["gateway", "--listen", &listen.to_string()])
        .args(["--health-listen", &health.to_string()])
        .args(["--tls-cert", cert_path.to_str().unwrap()])
        .args(["--upstream", &format!("http://{}", up.addr)])
        .env("CERTGATE_TLS_KEY", &key_path)
        .env("CERTGATE_DATABASE_URL", &app.db.url)
        .env("CERTGATE_UPSTREAM_TIMEOUT", "5s")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("certgate gateway exited: {status}");
        }
        let ready = reqwest::get(format!("http://{health}/readyz")).await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "gateway never ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _guard = Kill(child);
    let ca = pki::ca("Org CA");
    let cert_id = upload(&app, &ca).await;
    let gw = Endpoint {
        addr: listen,
        server_ca: server_ca.cert.der().clone(),
    };
    let id = good_leaf(&ca);
    once(&gw, Some(&id), &[])
        .await
        .refused(403, "client_certificate_untrusted");
    activate_org(&app, &cert_id).await;
    within_5s!(
        "the binary sees the activation",
        once(&gw, Some(&id), &[]).await.status == 200
    );
    let r = once(&gw, Some(&id), &[]).await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        cert_id.as_str()
    );
    let body: Value = reqwest::get(format!("http://{health}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["anchors"], 1);
}
