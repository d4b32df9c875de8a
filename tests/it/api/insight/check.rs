//! The check endpoint's answers and refusals, on the API alone.

use certgate::domain::Clock;
use serde_json::{json, Value};

use super::{audit, check, keys, set, CERTS, DAY};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(check_answers_and_refusals);

async fn check_answers_and_refusals(app: TestApp) {
    let now = app.clock.now();
    let ca = pki::ca("Client CA");
    let ca_id = app.api.upload(&ca.pem(), Some("Clients")).await.id();
    let leaf = pki::leaf(&ca, "c", now - DAY, now + 30 * DAY);
    let pem = leaf.cert.pem();

    // Inactive: refused with the gateway's code and message.
    let refused = check(&app.api, &pem, None).await;
    assert_eq!(
        refused.ok(),
        &json!({
            "object": "organization.certificate_check",
            "admitted": false,
            "code": "client_certificate_untrusted",
            "message": "The client certificate does not chain to a CA certificate active for this organization.",
            "certificate": null,
        })
    );
    app.api.toggle_org("activate", &[&ca_id]).await;
    let admitted = check(&app.api, &pem, None).await;
    let a = admitted.ok();
    assert_eq!(
        keys(a),
        set(&["object", "admitted", "code", "message", "certificate"])
    );
    assert_eq!(a["admitted"], true);
    assert_eq!(a["code"], Value::Null);
    assert_eq!(a["certificate"], json!({"id": ca_id, "name": "Clients"}));
    assert!(a["message"].as_str().unwrap().contains(&ca_id), "{a}");
    // The project is read like the OpenAI-Project header: blank is none.
    for blank in ["", "  "] {
        assert_eq!(
            check(&app.api, &pem, Some(blank)).await.ok()["admitted"],
            true
        );
    }
    let null_project = app
        .api
        .post(
            &format!("{CERTS}/check"),
            json!({"certificate": pem, "project_id": null}),
        )
        .await;
    assert_eq!(null_project.ok()["admitted"], true);
    let project = app.api.create_project("p").await;
    assert_eq!(
        check(&app.api, &pem, Some(&project)).await.ok()["admitted"],
        true
    );

    // A project the gateway would not accept in OpenAI-Project: unknown, malformed, archived,
    // another organization's.
    let archived = app.api.create_project("gone").await;
    app.api
        .post(
            &format!("/organization/projects/{archived}/archive"),
            json!({}),
        )
        .await
        .ok();
    let (_, other_api) = app.other_org().await;
    let theirs = other_api.create_project("theirs").await;
    let events_before = audit(&app.api).await.len();
    let generation = app.store.trust_generation().await.unwrap();
    for p in [
        "proj_doesnotexist",
        "nope",
        archived.as_str(),
        theirs.as_str(),
    ] {
        check(&app.api, &pem, Some(p))
            .await
            .err(400, Some("unknown_project"), Some("project_id"));
    }
    // Bad bodies.
    let post = |body: Value| {
        let api = app.api.clone();
        async move { api.post(&format!("{CERTS}/check"), body).await }
    };
    post(json!({})).await.err(400, None, Some("certificate"));
    post(json!({"certificate": 5}))
        .await
        .err(400, None, Some("certificate"));
    post(json!({"certificate": pem, "project_id": 5}))
        .await
        .err(400, None, Some("project_id"));
    post(json!({"certificate": pem, "extra": 1}))
        .await
        .err(400, None, Some("extra"));
    let key_pem = leaf.key.serialize_pem();
    check(&app.api, &format!("{pem}{key_pem}"), None).await.err(
        400,
        Some("private_key_not_allowed"),
        Some("certificate"),
    );
    // Key material without its PEM armour is a private key all the same.
    let bare: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n");
    check(&app.api, &format!("{pem}\n{bare}\n"), None)
        .await
        .err(400, Some("private_key_not_allowed"), Some("certificate"));
    for not_a_certificate in [
        "hello".to_owned(),
        leaf.key.public_key_pem(),
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n".to_owned(),
    ] {
        check(&app.api, &not_a_certificate, None).await.err(
            400,
            Some("invalid_certificate"),
            Some("certificate"),
        );
    }
    // A check changes nothing.
    assert_eq!(audit(&app.api).await.len(), events_before);
    assert_eq!(app.store.trust_generation().await.unwrap(), generation);
}
