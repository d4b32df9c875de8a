//! OCSP for client certificates (spec §13.4, decisions.md D61, D62), against a real `openssl
//! ocsp` responder on loopback serving the index of a CA run by `openssl ca`: good (from a
//! delegated responder), revoked, unknown, unreachable, slow (past 2 s) and forged answers in
//! `soft_fail` and `hard_fail`, the cache honouring `nextUpdate`, a CA with `ocsp: off` that
//! never reaches the responder, `certgate authz` and the check endpoint answering as the
//! gateway does.
//!
//! The gateway runs in-process on the test's manual clock, moved a minute ahead first:
//! `openssl` dates what it issues by the wall clock.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use certgate::domain::OrgId;
use certgate::insight::{check_client, Check, TrustCache};
use certgate::ocsp::CertState;
use certgate::trust::Rejection;
use serde_json::json;

use super::{caught_up, gateway, once, upstream, Gw, Upstream};
use crate::authz::{authz, http_check, Az};
use crate::helpers::{backend_tests, TestApp};
use crate::openssl_ca::{CrlServer, IssuedLeaf, OpenSslCa, Publish};

backend_tests!(
    good_from_a_delegated_responder_is_admitted_and_reported,
    revoked_is_refused_by_gateway_authz_and_check,
    unknown_admits_in_soft_fail_and_refuses_in_hard_fail,
    unreachable_admits_in_soft_fail_and_refuses_in_hard_fail,
    slow_admits_in_soft_fail_and_refuses_in_hard_fail,
    forged_admits_in_soft_fail_and_refuses_in_hard_fail,
    the_cache_honours_next_update,
    a_ca_with_ocsp_off_never_reaches_the_responder,
);

/// A free loopback port, for a responder started after the leaves naming it are issued.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The extensions of a client certificate whose OCSP responder is `url`.
fn client_ext(url: &str) -> String {
    format!(
        "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\nauthorityInfoAccess = OCSP;URI:{url}"
    )
}

/// A delegated OCSP responder's extensions (RFC 6960 §4.2.2.2).
const RESPONDER_EXT: &str =
    "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = OCSPSigning";

/// `openssl ocsp` answering for `ca` on `port`, signing with `signer` (a PEM certificate and
/// key in the CA's directory); killed on drop.
struct Responder {
    child: Child,
    /// Its log, held open (and never read past the start) so that it can keep writing.
    _log: std::io::BufReader<std::process::ChildStderr>,
}

impl Responder {
    /// Started, and listening once this returns. Readiness is read from its log (it says it is
    /// waiting for connections once bound):
    /// `openssl ocsp` serves one connection at a time, and a probe connection closed without
    /// a request would leave it stuck.
    fn start(ca: &OpenSslCa, port: u16, signer: (&str, &str), validity: &[&str]) -> Responder {
        use std::io::BufRead;
        let port = port.to_string();
        let mut args = vec![
            "ocsp",
            "-index",
            "index.txt",
            "-port",
            &port,
            "-rsigner",
            signer.0,
            "-rkey",
            signer.1,
            "-CA",
            "ca.pem",
        ];
        args.extend_from_slice(validity);
        let mut child = Command::new("openssl")
            .args(&args)
            .current_dir(ca.dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openssl ocsp");
        let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while log.read_line(&mut line).unwrap_or(0) > 0 {
            if line.contains("waiting for OCSP client connections") {
                return Responder { child, _log: log };
            }
            line.clear();
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("openssl ocsp did not start on port {port}");
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP server on loopback that accepts connections and never answers.
async fn silent_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A gateway and an authz on the app's store, both allowed to ask loopback responders.
async fn edges(app: &TestApp) -> (Gw, Upstream, Az) {
    app.clock.advance(60);
    let up = upstream().await;
    let org = app.org_id.clone();
    let gw = gateway(app.store.clone(), &format!("http://{}", up.addr), |o| {
        o.default_organization = Some(org.clone());
        o.fetch_allow_private = true;
    })
    .await;
    let org = app.org_id.clone();
    let az = authz(app.store.clone(), |o| {
        o.default_organization = Some(org);
        o.fetch_allow_private = true;
    })
    .await;
    (gw, up, az)
}

/// Uploads `ca` with OCSP `mode` and activates it for the organization.
async fn upload(app: &TestApp, ca: &OpenSslCa, mode: &str) -> String {
    app.api
        .upload_active_with(&ca.pem(), json!({"ocsp": mode}))
        .await
}

/// Both edges enforce the store's latest trust generation.
async fn synced(app: &TestApp, gw: &Gw, az: &Az) {
    caught_up(app, gw).await;
    crate::authz::caught_up(app, az).await;
}

async fn set_mode(app: &TestApp, gw: &Gw, az: &Az, id: &str, mode: &str) {
    app.api
        .post(
            &format!("/organization/certificates/{id}"),
            json!({"ocsp": mode}),
        )
        .await
        .ok();
    synced(app, gw, az).await;
}

/// What the check endpoint's use case answers for `leaf`, allowed to ask loopback responders.
async fn check(app: &TestApp, leaf: &IssuedLeaf) -> Check {
    let org = OrgId::parse(&app.org_id).unwrap();
    check_client(&app.store, &TrustCache::new(true), &org, &leaf.pem, None)
        .await
        .unwrap()
}

/// The forward-auth answer of `az` for `leaf`: its status and refusal code.
async fn authz_says(az: &Az, leaf: &IssuedLeaf) -> (u16, Option<String>) {
    let cert = crate::authz::escape(&leaf.pem);
    let answer = http_check(az, Some(&cert), &[]).await;
    let code = answer.body["error"]["code"].as_str().map(str::to_owned);
    (answer.status, code)
}

async fn good_from_a_delegated_responder_is_admitted_and_reported(app: TestApp) {
    let (gw, _up, az) = edges(&app).await;
    let ca = OpenSslCa::new("OCSP good CA");
    let port = free_port();
    let leaf = ca.issue_with("client", &client_ext(&format!("http://127.0.0.1:{port}/")));
    let signer = ca.issue_with("OCSP responder", RESPONDER_EXT);
    let signer_file = signer
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    std::fs::write(ca.dir().join("responder.key"), &signer.key_pem).unwrap();
    let _responder = Responder::start(&ca, port, (&signer_file, "responder.key"), &["-ndays", "1"]);
    upload(&app, &ca, "hard_fail").await;
    synced(&app, &gw, &az).await;

    let answer = check(&app, &leaf).await;
    let Check::Admitted {
        ocsp: Some(said), ..
    } = answer
    else {
        panic!("admitted, with what OCSP said: {answer:?}");
    };
    once(&gw, Some(&leaf.identity()), &[]).await.admitted();
    assert_eq!(authz_says(&az, &leaf).await, (200, None));
    let answer = said.outcome.expect("a valid answer");
    assert_eq!(answer.state, CertState::Good);
    assert!(answer.delegated, "signed by the delegated responder");
    assert!(answer.next_update.is_some());
}

async fn revoked_is_refused_by_gateway_authz_and_check(app: TestApp) {
    let (gw, _up, az) = edges(&app).await;
    let ca = OpenSslCa::new("OCSP revoked CA");
    let port = free_port();
    let leaf = ca.issue_with("client", &client_ext(&format!("http://127.0.0.1:{port}/")));
    ca.revoke(&leaf);
    let _responder = Responder::start(&ca, port, ("ca.pem", "ca.key"), &["-ndays", "1"]);
    // soft_fail too: a revoked answer refuses in either mode.
    upload(&app, &ca, "soft_fail").await;
    synced(&app, &gw, &az).await;

    once(&gw, Some(&leaf.identity()), &[])
        .await
        .refused(403, "client_certificate_revoked");
    assert_eq!(
        authz_says(&az, &leaf).await,
        (403, Some("client_certificate_revoked".to_owned()))
    );
    let Check::Refused(Rejection::Revoked, Some(said)) = check(&app, &leaf).await else {
        panic!("refused as revoked, with what OCSP said");
    };
    assert_eq!(said.outcome.unwrap().state, CertState::Revoked);
}

/// Runs one "no valid answer" case: `leaf` under `soft_fail` is admitted (and the check says
/// why there is no answer), then under `hard_fail` refused by the gateway and by authz.
async fn no_answer_case(app: &TestApp, gw: &Gw, az: &Az, ca: &OpenSslCa, leaf: &IssuedLeaf) {
    let id = upload(app, ca, "soft_fail").await;
    synced(app, gw, az).await;
    let who = leaf.identity();
    once(gw, Some(&who), &[]).await.admitted();
    assert_eq!(authz_says(az, leaf).await, (200, None));
    match check(app, leaf).await {
        Check::Admitted {
            ocsp: Some(said), ..
        } => assert!(
            said.outcome
                .as_ref()
                .map_or(true, |a| a.state == CertState::Unknown),
            "no valid answer: {said:?}"
        ),
        other => panic!("admitted under soft_fail: {other:?}"),
    }

    set_mode(app, gw, az, &id, "hard_fail").await;
    once(gw, Some(&who), &[])
        .await
        .refused(403, "client_certificate_revocation_unknown");
    assert_eq!(
        authz_says(az, leaf).await,
        (
            403,
            Some("client_certificate_revocation_unknown".to_owned())
        )
    );
    assert!(matches!(
        check(app, leaf).await,
        Check::Refused(Rejection::RevocationUnknown, Some(_))
    ));
}

async fn unknown_admits_in_soft_fail_and_refuses_in_hard_fail(app: TestApp) {
    let (gw, _up, az) = edges(&app).await;
    let ca = OpenSslCa::new("OCSP unknown CA");
    let port = free_port();
    // The responder's index does not hold the leaf: it answers "unknown".
    let index = std::fs::read(ca.dir().join("index.txt")).unwrap();
    let leaf = ca.issue_with("client", &client_ext(&format!("http://127.0.0.1:{port}/")));
    std::fs::write(ca.dir().join("index.txt"), index).unwrap();
    let _responder = Responder::start(&ca, port, ("ca.pem", "ca.key"), &["-ndays", "1"]);
    no_answer_case(&app, &gw, &az, &ca, &leaf).await;
}

async fn unreachable_admits_in_soft_fail_and_refuses_in_hard_fail(app: TestApp) {
    let (gw, _up, az) = edges(&app).await;
    let ca = OpenSslCa::new("OCSP unreachable CA");
    let closed = free_port();
    let leaf = ca.issue_with(
        "client",
        &client_ext(&format!("http://127.0.0.1:{closed}/")),
    );
    no_answer_case(&app, &gw, &az, &ca, &leaf).await;
}

async fn slow_admits_in_soft_fail_and_refuses_in_hard_fail(app: TestApp) {
    let (gw, _up, az) = edges(&app).await;
    let ca = OpenSslCa::new("OCSP slow CA");
    let silent = silent_server().await;
    let leaf = ca.issue_with("client", &client_ext(&format!("http://{silent}/")));
    no_answer_case(&app, &gw, &az, &ca, &leaf).await;
}

async fn forged_admits_in_soft_fail_and_refuses_in_hard_fail(app: TestApp) {
    let (gw, _up, az) = edges(&app).await;
    let ca = OpenSslCa::new("OCSP forged CA");
    // A responder signing with a key the CA never certified, its certificate in the response.
    let forger = OpenSslCa::new("Forger");
    std::fs::copy(forger.dir().join("ca.pem"), ca.dir().join("forged.pem")).unwrap();
    std::fs::copy(forger.dir().join("ca.key"), ca.dir().join("forged.key")).unwrap();
    let port = free_port();
    let leaf = ca.issue_with("client", &client_ext(&format!("http://127.0.0.1:{port}/")));
    let _responder = Responder::start(&ca, port, ("forged.pem", "forged.key"), &["-ndays", "1"]);
    no_answer_case(&app, &gw, &az, &ca, &leaf).await;
}

async fn the_cache_honours_next_update(app: TestApp) {
    let (gw, _up, _az) = edges(&app).await;
    let ca = OpenSslCa::new("OCSP cached CA");
    let port = free_port();
    let leaf = ca.issue_with("client", &client_ext(&format!("http://127.0.0.1:{port}/")));
    // nextUpdate five minutes after the answer (by the wall clock).
    let responder = Responder::start(&ca, port, ("ca.pem", "ca.key"), &["-nmin", "5"]);
    upload(&app, &ca, "hard_fail").await;
    caught_up(&app, &gw).await;
    let who = leaf.identity();
    once(&gw, Some(&who), &[]).await.admitted();
    drop(responder);

    // Still fresh (the clock is a minute ahead; three more is inside the five): the cached
    // answer admits without the responder.
    app.clock.advance(180);
    once(&gw, Some(&who), &[]).await.admitted();
    // Past nextUpdate: asked again, nobody answers, hard_fail refuses.
    app.clock.advance(200);
    once(&gw, Some(&who), &[])
        .await
        .refused(403, "client_certificate_revocation_unknown");
}

async fn a_ca_with_ocsp_off_never_reaches_the_responder(app: TestApp) {
    let (gw, _up, az) = edges(&app).await;
    let server = CrlServer::start(Publish::Status(500, "no")).await;
    let ca = OpenSslCa::new("OCSP off CA");
    let leaf = ca.issue_with("client", &client_ext(&server.url("/ocsp")));
    let id = upload(&app, &ca, "off").await;
    synced(&app, &gw, &az).await;
    let who = leaf.identity();
    once(&gw, Some(&who), &[]).await.admitted();
    assert_eq!(authz_says(&az, &leaf).await, (200, None));
    assert!(matches!(
        check(&app, &leaf).await,
        Check::Admitted { ocsp: None, .. }
    ));
    assert_eq!(server.count(), 0, "ocsp: off never asks");

    // The same leaf under soft_fail does ask (so the count above could have moved).
    set_mode(&app, &gw, &az, &id, "soft_fail").await;
    once(&gw, Some(&who), &[]).await.admitted();
    assert_eq!(server.count(), 1);
}
