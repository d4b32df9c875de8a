//! The check endpoint against the real gateway (decisions.md D20): every accept and refuse case of
//! the gateway suite, run through both with the same client chain and scope, must give the
//! same outcome (admitted by the same CA, or refused with the same code and message). And a
//! rotation with traffic flowing: clients of a CA active before and after never see a
//! refusal.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use certgate::domain::Clock;
use rustls_pki_types::PrivateKeyDer;
use serde_json::{json, Value};

use super::{
    caught_up, connect, good_leaf, identity, once, setup, Endpoint, Gw, Identity, Reply, DAY,
};
use crate::authz::chain_pem;
use crate::client::Api;
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    check_agrees_with_the_gateway_on_trust,
    check_agrees_with_the_gateway_on_validity,
    check_agrees_with_the_gateway_on_projects,
    check_agrees_with_the_gateway_on_chain_shape,
    rotation_with_traffic_flowing,
);

/// One request to the gateway with `id` for `org` (and `project`) on a fresh connection, and
/// the same question to the check endpoint as `api` (an admin of `org`); asserts they agree
/// and returns the gateway's reply.
async fn agree(gw: &Gw, api: &Api, org: &str, id: &Identity, project: Option<&str>) -> Reply {
    let mut headers = vec![("openai-organization", org)];
    if let Some(p) = project {
        headers.push(("openai-project", p));
    }
    let reply = once(gw, Some(id), &headers).await;
    let mut body = json!({"certificate": chain_pem(id)});
    if let Some(p) = project {
        body["project_id"] = json!(p);
    }
    let checked = api.post("/organization/certificates/check", body).await;
    let context = format!(
        "gateway {} {}; check {}",
        reply.status, reply.body, checked.body
    );
    match reply.status {
        200 => {
            let c = checked.ok();
            assert_eq!(c["admitted"], true, "{context}");
            assert_eq!(
                c["certificate"]["id"],
                reply.admitted()["x-certgate-certificate-id"][0],
                "the same CA admits: {context}"
            );
            assert_eq!(c["code"], Value::Null);
        }
        403 => {
            let c = checked.ok();
            assert_eq!(c["admitted"], false, "{context}");
            assert_eq!(c["code"], reply.body["error"]["code"], "{context}");
            assert_eq!(c["message"], reply.body["error"]["message"], "{context}");
            assert_eq!(c["certificate"], Value::Null);
        }
        400 => {
            let code = reply.body["error"]["code"].as_str();
            checked.err(400, code, Some("project_id"));
            assert_eq!(
                checked.body["error"]["message"], reply.body["error"]["message"],
                "{context}"
            );
        }
        other => panic!("unexpected gateway status {other}: {context}"),
    }
    reply
}

async fn check_agrees_with_the_gateway_on_trust(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let org = app.org_id.as_str();
    let ours = pki::ca("Our CA");
    let ours_id = app.api.upload_active(&ours).await;
    let stranger = pki::ca("Stranger CA");
    let inactive = pki::ca("Inactive CA");
    app.api.upload(&inactive.pem(), None).await.ok();
    let impostor = pki::ca("Our CA");
    let (other_org, other) = app.other_org().await;
    let theirs = pki::ca("Their CA");
    let theirs_id = other.upload_active(&theirs).await;
    caught_up(&app, &gw).await;

    let r = agree(&gw, &app.api, org, &good_leaf(&ours), None).await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        ours_id.as_str()
    );
    for ca in [&stranger, &inactive, &impostor, &theirs] {
        agree(&gw, &app.api, org, &good_leaf(ca), None)
            .await
            .refused(403, "client_certificate_untrusted");
    }
    // Ours never into theirs, theirs into theirs (asked as their admin).
    agree(&gw, &other, &other_org, &good_leaf(&ours), None)
        .await
        .refused(403, "client_certificate_untrusted");
    let r = agree(&gw, &other, &other_org, &good_leaf(&theirs), None).await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        theirs_id.as_str()
    );
    // A self-signed client certificate.
    let selfsigned = pki::ca("Self");
    let me = Identity {
        chain: vec![selfsigned.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(selfsigned.key.serialize_der().into()),
        leaf_sha256: String::new(),
    };
    agree(&gw, &app.api, org, &me, None)
        .await
        .refused(403, "client_certificate_untrusted");

    // The same (public) CA uploaded by both organizations: each names its own object.
    let copy_id = other.upload_active(&ours).await;
    caught_up(&app, &gw).await;
    let r = agree(&gw, &app.api, org, &good_leaf(&ours), None).await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        ours_id.as_str()
    );
    let r = agree(&gw, &other, &other_org, &good_leaf(&ours), None).await;
    assert_eq!(
        r.admitted()["x-certgate-certificate-id"][0],
        copy_id.as_str()
    );
    // Deactivated here, still active there.
    app.api.toggle_org("deactivate", &[&ours_id]).await;
    caught_up(&app, &gw).await;
    agree(&gw, &app.api, org, &good_leaf(&ours), None)
        .await
        .refused(403, "client_certificate_untrusted");
    agree(&gw, &other, &other_org, &good_leaf(&ours), None)
        .await
        .admitted();
    // Deleted (inactive everywhere first): untrusted, whoever asks.
    app.api
        .delete(&format!("/organization/certificates/{ours_id}"))
        .await
        .ok();
    caught_up(&app, &gw).await;
    agree(&gw, &app.api, org, &good_leaf(&ours), None)
        .await
        .refused(403, "client_certificate_untrusted");
}

async fn check_agrees_with_the_gateway_on_validity(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let org = app.org_id.as_str();
    let now = app.clock.now();
    let ca = pki::ca("Org CA");
    app.api.upload_active(&ca).await;
    let short = pki::ca_valid("Short CA", now, now + 2 * DAY);
    app.api.upload_active(&short).await;
    let staged = pki::ca_valid("Staged CA", now + 3600, now + 365 * DAY);
    app.api.upload_active(&staged).await;
    caught_up(&app, &gw).await;

    // The leaf's own validity.
    let expired = identity(&pki::leaf(&ca, "old", now - 30 * DAY, now - DAY), &[]);
    let future = identity(&pki::leaf(&ca, "new", now + DAY, now + 30 * DAY), &[]);
    let stranger = pki::ca("Stranger");
    let stale = identity(&pki::leaf(&stranger, "old", now - 30 * DAY, now - DAY), &[]);
    for (id, code) in [
        (&expired, "client_certificate_expired"),
        (&future, "client_certificate_expired"),
        (&stale, "client_certificate_untrusted"),
    ] {
        agree(&gw, &app.api, org, id, None).await.refused(403, code);
    }
    // The anchors' validity, at their boundaries.
    let short_leaf = identity(&pki::leaf(&short, "c", now - DAY, now + 30 * DAY), &[]);
    let staged_leaf = identity(&pki::leaf(&staged, "s", now - DAY, now + 30 * DAY), &[]);
    agree(&gw, &app.api, org, &short_leaf, None)
        .await
        .admitted();
    agree(&gw, &app.api, org, &staged_leaf, None)
        .await
        .refused(403, "client_certificate_expired");
    app.clock.set(now + 3600);
    agree(&gw, &app.api, org, &staged_leaf, None)
        .await
        .admitted();
    app.clock.set(now + 2 * DAY);
    agree(&gw, &app.api, org, &short_leaf, None)
        .await
        .admitted();
    app.clock.set(now + 2 * DAY + 1);
    agree(&gw, &app.api, org, &short_leaf, None)
        .await
        .refused(403, "client_certificate_expired");
    // Time is the store's clock for both: in the future leaf's window it is admitted.
    agree(&gw, &app.api, org, &future, None).await.admitted();
}

async fn check_agrees_with_the_gateway_on_projects(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let org = app.org_id.as_str();
    let p1 = app.api.create_project("one").await;
    let p2 = app.api.create_project("two").await;
    let gone = app.api.create_project("gone").await;
    app.api
        .post(&format!("/organization/projects/{gone}/archive"), json!({}))
        .await
        .ok();
    let (_, other) = app.other_org().await;
    let theirs = other.create_project("theirs").await;
    let project_ca = pki::ca("Project CA");
    let pid = app.api.upload(&project_ca.pem(), None).await.id();
    app.api.toggle_project(&p1, "activate", &[&pid]).await;
    let org_wide = pki::ca("Org CA");
    let oid = app.api.upload_active(&org_wide).await;
    caught_up(&app, &gw).await;
    let pleaf = good_leaf(&project_ca);
    let oleaf = good_leaf(&org_wide);

    let r = agree(&gw, &app.api, org, &pleaf, Some(&p1)).await;
    assert_eq!(r.admitted()["x-certgate-certificate-id"][0], pid.as_str());
    for project in [None, Some(p2.as_str())] {
        agree(&gw, &app.api, org, &pleaf, project)
            .await
            .refused(403, "client_certificate_not_active_for_project");
    }
    for project in [None, Some(p1.as_str()), Some(p2.as_str())] {
        let r = agree(&gw, &app.api, org, &oleaf, project).await;
        assert_eq!(r.admitted()["x-certgate-certificate-id"][0], oid.as_str());
    }
    // Projects the gateway does not accept: refused before the certificate is looked at.
    for project in ["proj_doesnotexist", "nope", gone.as_str(), theirs.as_str()] {
        for leaf in [&pleaf, &oleaf] {
            agree(&gw, &app.api, org, leaf, Some(project))
                .await
                .refused(400, "unknown_project");
        }
    }
    // Archiving p1 ends the project CA's activation: the header is refused, and without it
    // the project CA admits nowhere.
    app.api
        .post(&format!("/organization/projects/{p1}/archive"), json!({}))
        .await
        .ok();
    caught_up(&app, &gw).await;
    agree(&gw, &app.api, org, &pleaf, Some(&p1))
        .await
        .refused(400, "unknown_project");
    agree(&gw, &app.api, org, &pleaf, None)
        .await
        .refused(403, "client_certificate_untrusted");
}

/// A crafted loop chain (decisions.md D34) naming `victim` as its issuer.
fn crafted(victim: &pki::Ca, intermediates: usize) -> Identity {
    let (chain, key) = pki::loop_chain(victim, intermediates);
    Identity {
        chain: chain.iter().map(|c| c.der().clone()).collect(),
        key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        leaf_sha256: String::new(),
    }
}

async fn check_agrees_with_the_gateway_on_chain_shape(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let org = app.org_id.as_str();
    let now = app.clock.now();
    let root = pki::ca("Root CA");
    app.api.upload_active(&root).await;
    caught_up(&app, &gw).await;
    let inter = pki::intermediate(&root, "Issuing CA", now - DAY, now + 100 * DAY);
    let leaf = pki::leaf(&inter, "c", now - DAY, now + 30 * DAY);
    agree(&gw, &app.api, org, &identity(&leaf, &[&inter]), None)
        .await
        .admitted();
    agree(&gw, &app.api, org, &identity(&leaf, &[]), None)
        .await
        .refused(403, "client_certificate_untrusted");
    // Usage: server-only, and no extended key usage at all.
    let server_only = identity(
        &pki::server_only_leaf(&root, "s", now - DAY, now + DAY),
        &[],
    );
    let no_eku = identity(
        &pki::leaf_without_eku(&root, "n", now - DAY, now + DAY),
        &[],
    );
    for id in [&server_only, &no_eku] {
        let r = agree(&gw, &app.api, org, id, None).await;
        r.refused(403, "client_certificate_untrusted");
    }
    // Too long, and a loop within the limit.
    for id in [crafted(&root, 5), crafted(&root, 4)] {
        agree(&gw, &app.api, org, &id, None)
            .await
            .refused(403, "client_certificate_untrusted");
    }
}

/// Requests with `id` for `headers` until `stop`, each on a fresh connection or all on one
/// connection kept open; counts replies other than 200 in `refused`, and every reply in `sent`.
fn traffic(
    ep: &Endpoint,
    id: Identity,
    headers: Vec<(&'static str, String)>,
    keep_open: bool,
    counters: (Arc<AtomicBool>, Arc<AtomicU32>, Arc<AtomicU32>),
) -> tokio::task::JoinHandle<()> {
    let ep = Endpoint {
        addr: ep.addr,
        server_ca: ep.server_ca.clone(),
    };
    let (stop, sent, refused) = counters;
    tokio::spawn(async move {
        let hdrs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut open = if keep_open {
            Some(connect(&ep, Some(&id), false).await)
        } else {
            None
        };
        while !stop.load(Ordering::SeqCst) {
            let r = match &mut open {
                Some(conn) => conn.get(&hdrs).await,
                None => once(&ep, Some(&id), &hdrs).await,
            };
            sent.fetch_add(1, Ordering::SeqCst);
            if r.status != 200 {
                refused.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
}

/// Traffic of several clients at once; [`Flows::stop`] ends it and returns (sent, refused).
struct Flows {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    refused: Arc<AtomicU32>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flows {
    /// For each client, one loop on fresh connections and one on a connection kept open.
    fn start(ep: &Endpoint, clients: Vec<(Identity, Vec<(&'static str, String)>)>) -> Flows {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let refused = Arc::new(AtomicU32::new(0));
        let counters = || (stop.clone(), sent.clone(), refused.clone());
        let mut tasks = Vec::new();
        for (id, headers) in clients {
            let twin = Identity {
                chain: id.chain.clone(),
                key: id.key.clone_key(),
                leaf_sha256: id.leaf_sha256.clone(),
            };
            tasks.push(traffic(ep, twin, headers.clone(), true, counters()));
            tasks.push(traffic(ep, id, headers, false, counters()));
        }
        Flows {
            stop,
            sent,
            refused,
            tasks,
        }
    }

    async fn stop(self) -> (u32, u32) {
        // Let some requests run on the state after the change, too.
        let floor = self.sent.load(Ordering::SeqCst) + 4;
        let started = std::time::Instant::now();
        while self.sent.load(Ordering::SeqCst) < floor {
            assert!(
                started.elapsed() < super::PROPAGATION,
                "the traffic stopped flowing"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("traffic task");
        }
        (
            self.sent.load(Ordering::SeqCst),
            self.refused.load(Ordering::SeqCst),
        )
    }
}

async fn rotation_with_traffic_flowing(app: TestApp) {
    let (gw, _up) = setup(&app).await;
    let org = app.org_id.clone();
    let project = app.api.create_project("payments").await;
    let old = pki::ca("Old CA");
    let old_id = app.api.upload(&old.pem(), None).await.id();
    let new = pki::ca("New CA");
    let new_id = app.api.upload(&new.pem(), None).await.id();
    // Active before and after, never part of the rotation.
    let keep = pki::ca("Kept CA");
    app.api.upload_active(&keep).await;
    app.api.toggle_org("activate", &[&old_id]).await;
    app.api
        .toggle_project(&project, "activate", &[&old_id])
        .await;
    caught_up(&app, &gw).await;
    let scopes = |with_project: bool| {
        let mut h = vec![("openai-organization", org.clone())];
        if with_project {
            h.push(("openai-project", project.clone()));
        }
        h
    };

    // Before: the new CA's client is refused, and the check says so before anything changes.
    for p in [None, Some(project.as_str())] {
        agree(&gw, &app.api, &org, &good_leaf(&new), p)
            .await
            .refused(403, "client_certificate_untrusted");
        agree(&gw, &app.api, &org, &good_leaf(&old), p)
            .await
            .admitted();
    }

    // Stage: the old CA stays active, so its clients (and the kept CA's) never see a refusal.
    let flows = Flows::start(
        &gw,
        vec![
            (good_leaf(&old), scopes(false)),
            (good_leaf(&old), scopes(true)),
            (good_leaf(&keep), scopes(false)),
            (good_leaf(&keep), scopes(true)),
        ],
    );
    let staged = app
        .api
        .post(
            "/organization/certificates/rotate",
            json!({"from": old_id, "to": new_id}),
        )
        .await;
    assert_eq!(staged.ok()["projects"], json!([project]));
    caught_up(&app, &gw).await;
    let (sent, refused) = flows.stop().await;
    assert!(sent > 0, "traffic flowed");
    assert_eq!(
        refused, 0,
        "no refusal of a CA active before and after ({sent} sent)"
    );
    for p in [None, Some(project.as_str())] {
        let r = agree(&gw, &app.api, &org, &good_leaf(&new), p).await;
        assert_eq!(
            r.admitted()["x-certgate-certificate-id"][0],
            new_id.as_str()
        );
    }

    // Retire: the new CA's clients and the kept CA's never see a refusal; the old CA's are
    // out.
    let flows = Flows::start(
        &gw,
        vec![
            (good_leaf(&new), scopes(false)),
            (good_leaf(&new), scopes(true)),
            (good_leaf(&keep), scopes(true)),
        ],
    );
    let retired = app
        .api
        .post(
            "/organization/certificates/rotate",
            json!({"from": old_id, "to": new_id, "retire_from": true}),
        )
        .await;
    assert_eq!(retired.ok()["retired"], true);
    caught_up(&app, &gw).await;
    let (sent, refused) = flows.stop().await;
    assert!(sent > 0, "traffic flowed");
    assert_eq!(
        refused, 0,
        "no refusal of a CA active before and after ({sent} sent)"
    );
    for p in [None, Some(project.as_str())] {
        agree(&gw, &app.api, &org, &good_leaf(&old), p)
            .await
            .refused(403, "client_certificate_untrusted");
        agree(&gw, &app.api, &org, &good_leaf(&new), p)
            .await
            .admitted();
    }

    // In one step: a third CA takes over from the new one, retiring it at once. The kept CA's
    // clients see nothing; the new CA's clients are out right after, the third's in.
    let third = pki::ca("Third CA");
    let third_id = app.api.upload(&third.pem(), None).await.id();
    let flows = Flows::start(&gw, vec![(good_leaf(&keep), scopes(true))]);
    app.api
        .post(
            "/organization/certificates/rotate",
            json!({"from": new_id, "to": third_id, "retire_from": true}),
        )
        .await
        .ok();
    caught_up(&app, &gw).await;
    let (_, refused) = flows.stop().await;
    assert_eq!(refused, 0);
    for p in [None, Some(project.as_str())] {
        agree(&gw, &app.api, &org, &good_leaf(&new), p)
            .await
            .refused(403, "client_certificate_untrusted");
        let r = agree(&gw, &app.api, &org, &good_leaf(&third), p).await;
        assert_eq!(
            r.admitted()["x-certgate-certificate-id"][0],
            third_id.as_str()
        );
    }
}
