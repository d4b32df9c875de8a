//! `certgate authz` as operators run it: its `--help`, both listeners (one on a Unix socket,
//! mode 0660), and SIGTERM, on both backends.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::{check_request, grpc_outcome, Via};
use crate::helpers::{db_tests, TestDb};
use crate::process::{run_cli, Process};

db_tests!(the_binary_serves_both_listeners_and_stops_on_sigterm);

#[test]
fn help_names_every_flag_and_the_warning() {
    let (ok, out, _) = run_cli(&["authz", "--help"]);
    assert!(ok);
    for flag in [
        "--grpc-listen",
        "--http-listen",
        "--cert-header",
        "--organization",
        "--forward-scope-headers",
        "--trust-poll",
        "--reconcile-interval",
        "--metrics-listen",
        "--database",
        "CERTGATE_AUTHZ_GRPC_LISTEN",
        "CERTGATE_AUTHZ_HTTP_LISTEN",
        "127.0.0.1:9191",
        "127.0.0.1:9192",
        "X-SSL-Client-Cert",
        "Never let clients",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}:\n{out}");
    }
    let (ok, _, err) = run_cli(&["authz", "--grpc-listen", "unix:relative"]);
    assert!(!ok);
    assert!(err.contains("absolute path"), "{err}");
}

async fn the_binary_serves_both_listeners_and_stops_on_sigterm(db: TestDb) {
    let (ok, _, err) = run_cli(&["migrate", "--database", &db.url]);
    assert!(ok, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("authz.sock");
    let http = format!("unix:{}", socket.display());
    let mut process = Process::spawn(
        &[
            "authz",
            "--database",
            &db.url,
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            &http,
            "--organization",
            "org-none",
        ],
        &[],
    );
    let started = Instant::now();
    let grpc = loop {
        let line = process
            .stderr()
            .lines()
            .find(|l| l.contains("certgate authz listening"))
            .map(str::to_owned);
        if let Some(line) = line {
            break line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("grpc="))
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                .unwrap_or_else(|| panic!("no grpc= address in {line}"));
        }
        assert!(process.exited().is_none(), "{}", process.output());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            process.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // Forward auth on the socket.
    let io = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = send
        .send_request(
            hyper::Request::get("/")
                .header("host", "authz")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    // The default organization does not exist: refused before the certificate is looked at.
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["x-certgate-refusal"], "unknown_organization");
    res.into_body().collect().await.unwrap();
    // gRPC on TCP: the default organization does not exist, 400 unknown_organization.
    let mut client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
        format!("http://{grpc}"),
    )
    .await
    .unwrap();
    let id = crate::gateway::good_leaf(&crate::pki::ca("Some CA"));
    let res = client
        .check(check_request(Some(&id), Via::Xfcc, &[], &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc_outcome(&res).code(), Some("unknown_organization"));
    drop((client, send));
    let took = process.terminate_and_wait();
    assert!(took < Duration::from_secs(11), "{took:?}");
    assert!(!socket.exists(), "the socket file is removed at exit");
}
