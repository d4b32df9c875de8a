//! No request leaves the upstream's path prefix, however its path is encoded (decisions.md D33
//! "Paths"; issue 30 item 6).
//!
//! The upstream is a file server that does what the Python `http.server` did, and
//! what other real servers do besides: it cuts each segment at `;` (Java servlet containers),
//! percent-decodes the path once, reads `\` as `/` (Windows servers, WHATWG URL parsers),
//! stops at a NUL, then resolves `.` and `..` (never above its root) and serves the file found
//! there. The gateway forwards to its `/api` prefix; a file outside it holds a secret. Each
//! attack is first shown to fetch the secret straight from the upstream, so its refusal
//! through the gateway is the gateway's doing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{caught_up, connect, gateway, good_leaf};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(encoded_ways_out_of_the_prefix_are_refused);

const SECRET: &str = "SECRET outside /api";

/// Paths (under the gateway's root, i.e. after `/api`) that reach `/secret.txt` on the
/// upstream.
const ESCAPES: [&str; 12] = [
    "/..%2Fsecret.txt",
    "/%2e%2e%2fsecret.txt",
    "/.%2e%2Fsecret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/..%2fsecret.txt",
    "/..%5Csecret.txt",
    "/..%5csecret.txt",
    "/..\\secret.txt",
    "/%2e%2e/secret.txt",
    "/..;/secret.txt",
    "/x/..%2F..%2Fsecret.txt",
    "/%2e%2e%5csecret.txt",
];

/// Paths that stay under `/api`, with what the upstream serves for them (`None`: nothing
/// there, 404, but the request did reach it).
const INSIDE: [(&str, Option<&str>); 7] = [
    ("/hello.txt", Some("hello")),
    ("/with%20space.txt", Some("spaced")),
    ("/a%2eb", Some("a dot b")),
    ("/my..file.txt", Some("dots inside a name")),
    ("/hello.txt?q=a%2Fb%5C..", Some("hello")),
    // Decoded once this is the name `%2e%2e%2fsecret.txt`, which does not exist.
    ("/%252e%252e%252fsecret.txt", None),
    ("/..%252fsecret.txt", None),
];

struct FileServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    _root: tempfile::TempDir,
}

async fn file_server() -> FileServer {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("api")).unwrap();
    std::fs::write(root.path().join("secret.txt"), SECRET).unwrap();
    for (name, body) in [
        ("hello.txt", "hello"),
        ("with space.txt", "spaced"),
        ("a.b", "a dot b"),
        ("my..file.txt", "dots inside a name"),
    ] {
        std::fs::write(root.path().join("api").join(name), body).unwrap();
    }
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (dir, log) = (root.path().to_owned(), seen.clone());
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (dir, log) = (dir.clone(), log.clone());
        async move {
            let raw = req.uri().path().to_owned();
            log.lock().unwrap().push(raw.clone());
            match std::fs::read_to_string(resolve(&dir, &raw)) {
                Ok(body) => (axum::http::StatusCode::OK, body),
                Err(_) => (axum::http::StatusCode::NOT_FOUND, String::new()),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FileServer {
        addr,
        seen,
        _root: root,
    }
}

/// Where a lenient server looks for `raw` (see the module doc).
fn resolve(root: &std::path::Path, raw: &str) -> PathBuf {
    let cut: Vec<&str> = raw
        .split('/')
        .map(|segment| segment.split(';').next().unwrap_or_default())
        .collect();
    let bytes = cut.join("/").into_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let text = text.split('\0').next().unwrap_or_default();
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    parts
        .iter()
        .fold(root.to_owned(), |path, part| path.join(part))
}

/// One GET straight to the upstream over plain TCP, the path sent byte for byte (an HTTP
/// client library would normalise it first, as URL parsers do).
async fn straight(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn encoded_ways_out_of_the_prefix_are_refused(app: TestApp) {
    let up = file_server().await;
    // Control: each way out works against the upstream alone.
    for path in ESCAPES {
        let (status, body) = straight(up.addr, &format!("/api{path}")).await;
        assert_eq!(
            (status, body.as_str()),
            (200, SECRET),
            "{path} escapes /api on the upstream"
        );
    }
    for (path, served) in INSIDE {
        let (status, body) = straight(up.addr, &format!("/api{path}")).await;
        assert_eq!(status, if served.is_some() { 200 } else { 404 }, "{path}");
        assert_eq!(body, served.unwrap_or_default(), "{path}");
    }
    up.seen.lock().unwrap().clear();

    let org = app.org_id.clone();
    let gw = gateway(app.store.clone(), &format!("http://{}/api", up.addr), |o| {
        o.default_organization = Some(org);
    })
    .await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    caught_up(&app, &gw).await;
    let id = good_leaf(&ca);
    for h2 in [false, true] {
        for path in ESCAPES {
            let r = connect(&gw, Some(&id), h2)
                .await
                .call("GET", path, &[], "")
                .await;
            assert_eq!(r.status, 400, "{path} (h2: {h2}): {}", r.body);
            let error = r.body["error"].as_object().expect("OpenAI's error body");
            assert_eq!(error.len(), 4, "{}", r.body);
            assert_eq!(error["type"], "invalid_request_error");
            assert!(error["message"]
                .as_str()
                .is_some_and(|m| m.contains("path")));
        }
        assert!(
            up.seen.lock().unwrap().is_empty(),
            "nothing refused reached the upstream: {:?}",
            up.seen.lock().unwrap()
        );
        let mut conn = connect(&gw, Some(&id), h2).await;
        for (path, served) in INSIDE {
            let req = conn.request("GET", path);
            let res = conn
                .send(
                    req.body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap(),
                )
                .await;
            let status = res.status().as_u16();
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(status, if served.is_some() { 200 } else { 404 }, "{path}");
            assert_eq!(body, served.unwrap_or_default().as_bytes(), "{path}");
        }
        // Forwarded byte for byte, under the prefix.
        let seen: Vec<String> = std::mem::take(&mut *up.seen.lock().unwrap());
        let sent: Vec<String> = INSIDE
            .iter()
            .map(|(p, _)| format!("/api{}", p.split('?').next().unwrap()))
            .collect();
        assert_eq!(seen, sent, "h2: {h2}");
    }
}
