//! Every answer of both transports (spec §13.2): what an admission sets and removes, the
//! forward-auth statuses, unreadable certificates, the metrics, and a Unix socket listener.

use std::os::unix::fs::PermissionsExt;

use bytes::Bytes;
use certgate::authz::listen::{Bound, ListenAddr};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::{
    chain_pem, check_request, escape, grpc_check, grpc_outcome, grpc_set_headers, http_check,
    Outcome, Via,
};
use crate::gateway::{good_leaf, Identity};
use crate::helpers::{backend_tests, TestApp};
use crate::metrics::Scrape;
use crate::pki;

backend_tests!(
    grpc_admission_sets_identity_and_removes_what_the_client_sent,
    grpc_forwards_scope_headers_only_when_told,
    forward_auth_answers,
    unreadable_certificates_are_refused_as_bad_requests,
    a_forwarded_chain_is_bound_to_the_handshake_leaf,
    decisions_are_counted_and_timed,
);

async fn grpc_admission_sets_identity_and_removes_what_the_client_sent(app: TestApp) {
    let az = super::setup(&app).await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    let project = app.api.create_project("one").await;
    let id = good_leaf(&ca);
    super::caught_up(&app, &az).await;
    let hostile = [
        ("authorization", "Bearer sk-test"),
        ("x-certgate-project", "proj_forged"),
        ("x-certgate-organization", "org-forged"),
        ("x_certgate_project", "proj_forged"),
        ("x-client-cert-sha256", "00"),
        ("x-ssl-client-cert", "forged"),
        ("openai_organization", "org-forged"),
    ];
    for via in [Via::Xfcc, Via::Source] {
        // Unscoped: no project header is set, and the client's is removed.
        let res = grpc_check(&az, check_request(Some(&id), via, &hostile, &[])).await;
        assert_eq!(grpc_outcome(&res), Outcome::Admitted(ca_id.clone()));
        let set = grpc_set_headers(&res);
        assert_eq!(set["x-certgate-organization"], app.org_id);
        assert_eq!(set["x-certgate-certificate-id"], ca_id);
        assert_eq!(set["x-client-cert-sha256"], id.leaf_sha256);
        assert!(!set.contains_key("x-certgate-project"));
        let removed = removed_by(&res);
        for name in [
            "x-certgate-project",
            "x_certgate_project",
            "x-ssl-client-cert",
            "openai_organization",
        ] {
            assert!(
                removed.contains(&name.to_owned()),
                "{via:?}: {name} removed: {removed:?}"
            );
        }
        // Set, so replaced, not removed (Envoy removes after it sets).
        for name in [
            "x-certgate-organization",
            "x-client-cert-sha256",
            "authorization",
        ] {
            assert!(
                !removed.contains(&name.to_owned()),
                "{via:?}: {name}: {removed:?}"
            );
        }
        if matches!(via, Via::Xfcc) {
            assert!(removed.contains(&"x-forwarded-client-cert".to_owned()));
        }
        // Scoped: the project is set, the scope headers removed.
        let headers = [
            ("openai-organization", app.org_id.as_str()),
            ("openai-project", project.as_str()),
        ];
        let res = grpc_check(&az, check_request(Some(&id), via, &headers, &[])).await;
        assert_eq!(grpc_set_headers(&res)["x-certgate-project"], project);
        let removed = removed_by(&res);
        assert!(removed.contains(&"openai-organization".to_owned()));
        assert!(removed.contains(&"openai-project".to_owned()));
        assert!(!removed.contains(&"x-certgate-project".to_owned()));
    }
}

fn removed_by(res: &envoy_types::pb::envoy::service::auth::v3::CheckResponse) -> Vec<String> {
    match res.http_response.as_ref() {
        Some(HttpResponse::OkResponse(ok)) => ok.headers_to_remove.clone(),
        other => panic!("not admitted: {other:?}"),
    }
}

async fn grpc_forwards_scope_headers_only_when_told(app: TestApp) {
    let org = app.org_id.clone();
    let az = super::authz(app.store.clone(), |o| {
        o.default_organization = Some(org);
        o.forward_scope_headers = true;
    })
    .await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let id = good_leaf(&ca);
    super::caught_up(&app, &az).await;
    let headers = [
        ("openai-organization", app.org_id.as_str()),
        ("openai_project", "proj_forged"),
    ];
    let res = grpc_check(&az, check_request(Some(&id), Via::Xfcc, &headers, &[])).await;
    let removed = removed_by(&res);
    assert!(
        !removed.contains(&"openai-organization".to_owned()),
        "{removed:?}"
    );
    assert!(
        removed.contains(&"openai_project".to_owned()),
        "{removed:?}"
    );
}

async fn forward_auth_answers(app: TestApp) {
    let az = super::setup(&app).await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    let id = good_leaf(&ca);
    let stranger = good_leaf(&pki::ca("Stranger CA"));
    super::caught_up(&app, &az).await;
    let pem = chain_pem(&id);
    // Admitted: 200, the identity headers, an empty body; any method and path.
    let client = reqwest::Client::new();
    for method in [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        let res = client
            .request(method.clone(), format!("http://{}/any/{method}", az.http))
            .header("x-ssl-client-cert", escape(&pem))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{method}");
        let h = res.headers().clone();
        assert_eq!(h["x-certgate-organization"], app.org_id.as_str());
        assert_eq!(h["x-certgate-certificate-id"], ca_id.as_str());
        assert_eq!(h["x-client-cert-sha256"], id.leaf_sha256.as_str());
        assert!(h.get("x-certgate-project").is_none());
        assert!(res.bytes().await.unwrap().is_empty());
    }
    // No certificate: 401, as nginx's auth_request understands it.
    let a = http_check(&az, None, &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.headers["x-certgate-refusal"],
        "client_certificate_required"
    );
    assert_eq!(a.body["error"]["code"], "client_certificate_required");
    assert_eq!(a.body["error"]["type"], "permission_error");
    // An empty header is no certificate either.
    assert_eq!(http_check(&az, Some(""), &[]).await.status, 401);
    // Every other refusal: 403 with the code.
    let a = http_check(&az, Some(&escape(&chain_pem(&stranger))), &[]).await;
    assert_eq!(a.status, 403);
    assert_eq!(
        a.headers["x-certgate-refusal"],
        "client_certificate_untrusted"
    );
    assert_eq!(a.body["error"]["code"], "client_certificate_untrusted");
    // Another header name when told.
    let org = app.org_id.clone();
    let traefik = super::authz(app.store.clone(), |o| {
        o.default_organization = Some(org);
        o.cert_header = "x-forwarded-tls-client-cert".parse().unwrap();
    })
    .await;
    super::caught_up(&app, &traefik).await;
    let res = client
        .get(format!("http://{}/", traefik.http))
        .header("x-forwarded-tls-client-cert", escape(&pem))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .get(format!("http://{}/", traefik.http))
        .header("x-ssl-client-cert", escape(&pem))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "only the named header is read");
}

async fn unreadable_certificates_are_refused_as_bad_requests(app: TestApp) {
    let az = super::setup(&app).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    super::caught_up(&app, &az).await;
    for garbage in [
        "%zz",
        "not base64!",
        "-----BEGIN CERTIFICATE----- AAAA",
        "-----BEGIN PRIVATE KEY----- AAAA -----END PRIVATE KEY-----",
    ] {
        let a = http_check(&az, Some(garbage), &[]).await;
        // 403, not 400: nginx's auth_request turns any status but 2xx/401/403 into a 500.
        assert_eq!(a.status, 403, "{garbage}: {}", a.body);
        assert_eq!(a.body["error"]["type"], "invalid_request_error");
        assert_eq!(
            a.headers["x-certgate-refusal"],
            "invalid_client_certificate"
        );
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("The client certificate"), "{message}");
    }
    // Base64 that is not a certificate is read, and refused as the gateway refuses it.
    let a = http_check(&az, Some("AAAA"), &[]).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body["error"]["code"], "client_certificate_untrusted");
    // The certificate header twice: the proxy is misconfigured.
    let pem = escape(&chain_pem(&good_leaf(&ca)));
    let res = reqwest::Client::new()
        .get(format!("http://{}/", az.http))
        .header("x-ssl-client-cert", &pem)
        .header("x-ssl-client-cert", &pem)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // gRPC: a denial with 400 and INVALID_ARGUMENT.
    let mut request = check_request(None, Via::Source, &[], &[]);
    request
        .attributes
        .as_mut()
        .unwrap()
        .source
        .as_mut()
        .unwrap()
        .certificate = "%zz".into();
    let res = grpc_check(&az, request).await;
    let outcome = grpc_outcome(&res);
    assert!(
        matches!(
            &outcome,
            Outcome::Refused {
                status: 400,
                code: None,
                ..
            }
        ),
        "{outcome:?}"
    );
}

/// Envoy writes `URI=`/`DNS=` values unquoted after `Chain=`: a client whose own (untrusted)
/// certificate names `urn:x,Chain=<a trusted client's public chain>` must not be judged as
/// that client. The header must hold one element, and its chain must begin with the leaf
/// Envoy's handshake saw (`attributes.source.certificate`).
async fn a_forwarded_chain_is_bound_to_the_handshake_leaf(app: TestApp) {
    let az = super::setup(&app).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let victim = good_leaf(&ca);
    let attacker = good_leaf(&pki::ca("Attacker's own CA"));
    super::caught_up(&app, &az).await;
    let leaf_of = |id: &Identity| {
        escape(&pem::encode(&pem::Pem::new(
            "CERTIFICATE",
            id.chain[0].to_vec(),
        )))
    };
    let ask = |xfcc: String, source: String| {
        let mut request = check_request(None, Via::Source, &[], &[]);
        let attributes = request.attributes.as_mut().unwrap();
        attributes.source.as_mut().unwrap().certificate = source;
        let http = attributes.request.as_mut().unwrap().http.as_mut().unwrap();
        http.headers.insert("x-forwarded-client-cert".into(), xfcc);
        grpc_check(&az, request)
    };
    let bad_request = |outcome: &Outcome, says: &str| match outcome {
        Outcome::Refused {
            status: 400,
            code: None,
            message,
        } => assert!(message.contains(says), "{message}"),
        other => panic!("expected a 400 saying {says:?}, got {other:?}"),
    };
    // The injection: the attacker's handshake, a second element naming the victim's chain.
    let injected = format!(
        "Hash=00;Chain=\"{}\";URI=urn:x,Chain={}",
        escape(&chain_pem(&attacker)),
        escape(&chain_pem(&victim))
    );
    let res = ask(injected, leaf_of(&attacker)).await;
    bad_request(&grpc_outcome(&res), "more than one element");
    // One element naming the victim's chain while the handshake saw the attacker's leaf.
    let swapped = format!("Hash=00;Chain=\"{}\"", escape(&chain_pem(&victim)));
    let res = ask(swapped.clone(), leaf_of(&attacker)).await;
    bad_request(&grpc_outcome(&res), "does not begin with the certificate");
    // The same chain with its own handshake leaf is admitted: the binding is what refused.
    let res = ask(swapped, leaf_of(&victim)).await;
    assert!(
        matches!(grpc_outcome(&res), Outcome::Admitted(_)),
        "{:?}",
        grpc_outcome(&res)
    );
}

async fn decisions_are_counted_and_timed(app: TestApp) {
    let az = super::setup(&app).await;
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let id = good_leaf(&ca);
    super::caught_up(&app, &az).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = listener.local_addr().unwrap();
    crate::helpers::serve_in_background(
        listener,
        az.authz.metrics_router(),
        certgate::runtime::ConnectionLimits::default(),
    );
    grpc_check(&az, check_request(Some(&id), Via::Xfcc, &[], &[])).await;
    grpc_check(&az, check_request(None, Via::Xfcc, &[], &[])).await;
    http_check(&az, Some(&escape(&chain_pem(&id))), &[]).await;
    http_check(&az, None, &[]).await;
    http_check(&az, None, &[]).await;
    let scrape = Scrape::of(metrics).await;
    let count = |transport: &str, outcome: &str| {
        scrape.value(
            "certgate_authz_decisions_total",
            &[("transport", transport), ("outcome", outcome)],
        )
    };
    assert_eq!(count("grpc", "admitted"), 1);
    assert_eq!(count("grpc", "client_certificate_required"), 1);
    assert_eq!(count("http", "admitted"), 1);
    assert_eq!(count("http", "client_certificate_required"), 2);
    let timed = |transport: &str| {
        scrape.value(
            "certgate_authz_decision_seconds_count",
            &[("transport", transport)],
        )
    };
    assert_eq!(timed("http"), 3);
    assert_eq!(timed("grpc"), 2);
    let ready = reqwest::get(format!("http://{metrics}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

/// `unix:/path` listeners: created mode 0660, answering as the TCP ones do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_listener_is_0660_and_answers() {
    let app = TestApp::spawn(crate::helpers::Db::Sqlite).await.unwrap();
    let az = super::setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authz.sock");
    let addr: ListenAddr = format!("unix:{}", path.display()).parse().unwrap();
    let bound = Bound::bind(&addr).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    tokio::spawn(certgate::authz::serve(
        az.authz.http_router(),
        bound,
        certgate::runtime::ConnectionLimits::default(),
        std::future::pending(),
    ));
    let io = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/")
        .header("host", "authz")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 401);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("client_certificate_required"));
    // A relative path is refused when parsed.
    assert!("unix:relative.sock".parse::<ListenAddr>().is_err());
}
