//! Trust changes reach authz's answers: a proxy asking again on the same connection (gRPC's
//! one HTTP/2 connection, forward auth's keep-alive one) is answered afresh within the
//! propagation bound; and with the database gone, the last state still decides (never open,
//! never closed).

use std::time::Duration;

use bytes::Bytes;
use certgate::domain::Clock;
use certgate::store::{Store, StoreOptions};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use super::{chain_pem, check_request, escape, grpc_client, grpc_outcome, Az, Outcome, Via};
use crate::gateway::{eventually, good_leaf, identity, DAY};
use crate::helpers::{backend_tests, Db, TestApp};
use crate::pki;
use crate::process::CuttableProxy;

backend_tests!(
    a_deactivation_reaches_the_next_question_on_an_open_connection,
    a_remembered_admission_answers_only_the_same_question_under_the_same_state,
);

/// One forward-auth question on an open HTTP/1.1 connection; the status.
async fn ask(send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, cert: &str) -> u16 {
    ask_with(send, cert, &[]).await
}

async fn ask_with(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    cert: &str,
    headers: &[(&str, &str)],
) -> u16 {
    send.ready().await.unwrap();
    let mut req = hyper::Request::get("/auth")
        .header("host", "authz")
        .header("x-ssl-client-cert", cert);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    send.send_request(req).await.unwrap().status().as_u16()
}

async fn keep_alive(az: &Az) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let io = tokio::net::TcpStream::connect(az.http).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn a_deactivation_reaches_the_next_question_on_an_open_connection(app: TestApp) {
    let az = super::setup(&app).await;
    let ca = pki::ca("Org CA");
    let ca_id = app.api.upload_active(&ca).await;
    let id = good_leaf(&ca);
    super::caught_up(&app, &az).await;
    let cert = escape(&chain_pem(&id));
    let mut http = keep_alive(&az).await;
    let mut grpc = grpc_client(&az).await;
    let question = check_request(Some(&id), Via::Xfcc, &[], &[]);
    assert_eq!(ask(&mut http, &cert).await, 200);
    let first = grpc.check(question.clone()).await.unwrap().into_inner();
    assert_eq!(grpc_outcome(&first), Outcome::Admitted(ca_id.clone()));

    app.api.toggle_org("deactivate", &[&ca_id]).await;
    eventually!(
        "forward auth refuses on the open connection",
        ask(&mut http, &cert).await == 403
    );
    eventually!(
        "gRPC refuses on the open channel",
        grpc_outcome(&grpc.check(question.clone()).await.unwrap().into_inner()).code()
            == Some("client_certificate_untrusted")
    );
    // And back.
    app.api.toggle_org("activate", &[&ca_id]).await;
    eventually!(
        "forward auth admits again on the open connection",
        ask(&mut http, &cert).await == 200
    );
}

/// PostgreSQL goes away: authz keeps answering from the state it loaded (admits the
/// admitted, refuses the rest, drops an anchor at its expiry), reports not-ready, and catches
/// up when the database returns. (SQLite cannot be cut off from its process.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_gone_the_last_state_still_decides() {
    // Without PostgreSQL (outside CI) this says "skipped" and ends; in CI it fails.
    let Some(app) = TestApp::spawn(Db::Postgres).await else {
        return;
    };
    let (proxy, url) = CuttableProxy::in_front_of(&app.db.url).await;
    let mut options = StoreOptions::new(url);
    options.timeout = Duration::from_millis(500);
    options.max_connections = 2;
    let store = Store::connect(&options, app.clock.clone()).await.unwrap();
    let org = app.org_id.clone();
    let az = super::authz(store, |o| o.default_organization = Some(org)).await;
    let trust = az.authz.trust();
    let now = app.clock.now();
    let ca = pki::ca_valid("Org CA", now - DAY, now + 2 * DAY);
    let ca_id = app.api.upload_active(&ca).await;
    let later = pki::ca("Later CA");
    let later_id = app.api.upload(&later.pem(), None).await.id();
    super::caught_up(&app, &az).await;
    assert!(trust.readiness().ready);
    let id = identity(&pki::leaf(&ca, "c", now - DAY, now + 30 * DAY), &[]);
    let later_leaf = good_leaf(&later);
    let mut grpc = grpc_client(&az).await;
    proxy.cut();
    eventually!("readiness reports the outage", !trust.readiness().ready);
    assert_eq!(
        outcome(&az, &mut grpc, &id).await,
        Outcome::Admitted(ca_id.clone())
    );
    assert_eq!(
        outcome(&az, &mut grpc, &later_leaf).await.code(),
        Some("client_certificate_untrusted")
    );
    // Changes made meanwhile (through the Admin API, which still reaches the database) are
    // not seen: the last state decides.
    app.api.toggle_org("deactivate", &[&ca_id]).await;
    app.api.toggle_org("activate", &[&later_id]).await;
    assert_eq!(
        outcome(&az, &mut grpc, &id).await,
        Outcome::Admitted(ca_id.clone())
    );
    // Expiry needs no database.
    app.clock.set(now + 2 * DAY + 1);
    assert_eq!(
        outcome(&az, &mut grpc, &id).await.code(),
        Some("client_certificate_expired")
    );
    app.clock.set(now);

    proxy.restore();
    eventually!("catches up after the outage", trust.readiness().ready);
    super::caught_up(&app, &az).await;
    assert_eq!(
        outcome(&az, &mut grpc, &later_leaf).await,
        Outcome::Admitted(later_id)
    );
    assert_eq!(
        outcome(&az, &mut grpc, &id).await.code(),
        Some("client_certificate_untrusted")
    );
}

/// The same question over both transports, which must agree.
async fn outcome(
    az: &Az,
    grpc: &mut envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<
        tonic::transport::Channel,
    >,
    who: &crate::gateway::Identity,
) -> Outcome {
    let g = grpc_outcome(
        &grpc
            .check(check_request(Some(who), Via::Xfcc, &[], &[]))
            .await
            .unwrap()
            .into_inner(),
    );
    let h = super::http_check(az, Some(&escape(&chain_pem(who))), &[])
        .await
        .outcome();
    assert_eq!(g, h, "both transports agree");
    g
}

/// The fast path of a repeated question (decisions.md D82): the same chain, scope, second and
/// trust index is answered from the chain's remembered admission, with no chain work; any
/// other question is decided afresh: a new chain (its chain work runs), another scope, the
/// next second, and, above all, the first question after a trust change, which is refused at
/// once (not "eventually") on the same keep-alive connection.
async fn a_remembered_admission_answers_only_the_same_question_under_the_same_state(app: TestApp) {
    let az = super::setup(&app).await;
    let ca = pki::ca("Project CA");
    let ca_id = app.api.upload(&ca.pem(), None).await.id();
    let project = app.api.create_project("Payments").await;
    let elsewhere = app.api.create_project("Elsewhere").await;
    app.api
        .toggle_project(&project, "activate", &[&ca_id])
        .await;
    let id = good_leaf(&ca);
    super::caught_up(&app, &az).await;
    let cert = escape(&chain_pem(&id));
    let mut http = keep_alive(&az).await;
    let remembered = || az.authz.decisions_remembered();
    let checks = || az.authz.chain_checks_run();
    let scope = [("openai-project", project.as_str())];

    assert_eq!(ask_with(&mut http, &cert, &scope).await, 200);
    let (r0, c0) = (remembered(), checks());
    assert_eq!(c0, 1, "the first question did the chain work");
    assert_eq!(ask_with(&mut http, &cert, &scope).await, 200);
    assert_eq!(ask_with(&mut http, &cert, &scope).await, 200);
    assert_eq!(
        remembered(),
        r0 + 2,
        "the same question again is remembered"
    );
    assert_eq!(checks(), c0);

    // A new chain of the same CA: decided, with its own chain work.
    let other = escape(&chain_pem(&good_leaf(&ca)));
    assert_eq!(ask_with(&mut http, &other, &scope).await, 200);
    assert_eq!((remembered(), checks()), (r0 + 2, c0 + 1));

    // Another scope, the same chain: the CA is active for neither, so both are refused.
    assert_eq!(ask(&mut http, &cert).await, 403, "no project");
    let elsewhere = [("openai-project", elsewhere.as_str())];
    assert_eq!(ask_with(&mut http, &cert, &elsewhere).await, 403);
    assert_eq!(remembered(), r0 + 2);

    // The next second: decided again (validity is judged at the second), then remembered.
    app.clock.set(app.clock.now() + 1);
    assert_eq!(ask_with(&mut http, &cert, &scope).await, 200);
    assert_eq!(remembered(), r0 + 2);
    assert_eq!(ask_with(&mut http, &cert, &scope).await, 200);
    assert_eq!(remembered(), r0 + 3);

    // A deactivation: the first question once the new index is in force is refused.
    app.api
        .toggle_project(&project, "deactivate", &[&ca_id])
        .await;
    super::caught_up(&app, &az).await;
    assert_eq!(ask_with(&mut http, &cert, &scope).await, 403);
    // A refusal is never remembered; the activation is seen at once too.
    assert_eq!(ask_with(&mut http, &cert, &scope).await, 403);
    assert_eq!(remembered(), r0 + 3);
    app.api
        .toggle_project(&project, "activate", &[&ca_id])
        .await;
    super::caught_up(&app, &az).await;
    assert_eq!(ask_with(&mut http, &cert, &scope).await, 200);
    assert_eq!(remembered(), r0 + 3);
}
