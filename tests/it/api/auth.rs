//! Who may call what: keys, tenant isolation on every endpoint, and inputs that must be
//! refused cleanly.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::api::ids;
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    tenant_isolation_on_every_endpoint,
    authentication,
    odd_inputs_never_500,
);

async fn tenant_isolation_on_every_endpoint(app: TestApp) {
    let a = app.api.upload_new("Mine").await;
    let project = app.api.create_project("Mine").await;
    app.api
        .post(
            "/organization/certificates/activate",
            json!({"certificate_ids": [a]}),
        )
        .await
        .ok();
    let (_, other) = app.other_org().await;
    let other_cert = other.upload(&pki::ca("Theirs").pem(), None).await.id();
    let ids_body = json!({"certificate_ids": [a]});
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/organization/certificates/{a}"), None),
        (
            Method::GET,
            format!("/organization/certificates/{a}?include[]=content"),
            None,
        ),
        (
            Method::POST,
            format!("/organization/certificates/{a}"),
            Some(json!({"name": "stolen"})),
        ),
        (
            Method::DELETE,
            format!("/organization/certificates/{a}"),
            None,
        ),
        (
            Method::POST,
            "/organization/certificates/activate".into(),
            Some(ids_body.clone()),
        ),
        (
            Method::POST,
            "/organization/certificates/deactivate".into(),
            Some(ids_body.clone()),
        ),
        (
            Method::GET,
            format!("/organization/projects/{project}"),
            None,
        ),
        (
            Method::POST,
            format!("/organization/projects/{project}"),
            Some(json!({"name": "stolen"})),
        ),
        (
            Method::POST,
            format!("/organization/projects/{project}/archive"),
            None,
        ),
        (
            Method::GET,
            format!("/organization/projects/{project}/certificates"),
            None,
        ),
        (
            Method::POST,
            format!("/organization/projects/{project}/certificates/activate"),
            Some(json!({"certificate_ids": [other_cert]})),
        ),
        (
            Method::POST,
            format!("/organization/projects/{project}/certificates/deactivate"),
            Some(json!({"certificate_ids": [other_cert]})),
        ),
    ];
    for (m, path, body) in cases {
        let a = other.call(m.clone(), &path, body).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{m} {path}: {}", a.body);
    }
    // Lists show only the caller's own objects.
    let theirs = other.get("/organization/certificates").await;
    assert_eq!(ids(theirs.ok()), vec![other_cert.as_str()]);
    let their_projects = other
        .get("/organization/projects?include_archived=true")
        .await;
    let theirs = their_projects.ok()["data"].as_array().unwrap();
    assert_eq!(
        theirs.len(),
        1,
        "only their own Default project: {theirs:?}"
    );
    assert_eq!(theirs[0]["name"], "Default project");
    assert_ne!(theirs[0]["id"], project.as_str());
    // And nothing of ours changed.
    let mine = app
        .api
        .get(&format!("/organization/certificates/{a}"))
        .await;
    assert_eq!(mine.ok()["name"], "Mine");
    assert_eq!(
        app.api.get("/organization/certificates").await.ok()["data"][0]["active"],
        true
    );
    assert_eq!(
        app.api
            .get(&format!("/organization/projects/{project}"))
            .await
            .ok()["status"],
        "active"
    );
}

async fn authentication(app: TestApp) {
    let anonymous = app.api.anonymous();
    anonymous
        .get("/organization/certificates")
        .await
        .err(401, Some("invalid_api_key"), None);
    let wrong = app
        .api
        .as_key("sk-admin-0000000000000000000000000000")
        .get("/organization/certificates")
        .await;
    let msg = wrong.err(401, Some("invalid_api_key"), None).to_owned();
    assert!(
        !msg.contains("0000000000000000000000000000"),
        "the presented key is redacted: {msg}"
    );
    // The right key in the wrong scheme, and a header that is not even text.
    for value in [
        format!("Basic {}", app.key).into_bytes(),
        b"Bearer \xff\xfe".to_vec(),
    ] {
        let req = anonymous
            .request(Method::GET, "/organization/certificates")
            .header("authorization", value);
        anonymous
            .send(req)
            .await
            .err(401, Some("invalid_api_key"), None);
    }
    // Writes without a key change nothing.
    let ca = pki::ca("Anon");
    anonymous
        .upload(&ca.pem(), None)
        .await
        .err(401, Some("invalid_api_key"), None);
    assert!(app.api.all_ids().await.is_empty());
    // Health needs no key; unknown routes and methods answer OpenAI's body.
    let health = app.api.probe("/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(health.header("x-request-id").is_some());
    let ready = app.api.probe("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    app.api
        .get("/organization/nothing")
        .await
        .err(404, None, None);
    app.api
        .call(Method::PUT, "/organization/certificates", None)
        .await
        .err(405, None, None);
}

async fn odd_inputs_never_500(app: TestApp) {
    let long = "c".repeat(10_000);
    app.api
        .get(&format!("/organization/certificates/{long}"))
        .await
        .err(404, None, None);
    app.api
        .delete(&format!("/organization/certificates/{long}"))
        .await
        .err(404, None, None);
    app.api
        .get(&format!("/organization/projects/{long}/certificates"))
        .await
        .err(404, None, None);
    let a = app.api.get("/organization/certificates/%FF%FE").await;
    assert!(a.status.is_client_error(), "{}", a.body);
    let a = app.api.get("/organization/certificates/cert_%00x").await;
    assert!(a.status.is_client_error(), "{}", a.body);
    app.api
        .post(
            "/organization/certificates/activate",
            json!({"certificate_ids": [long]}),
        )
        .await
        .err(404, None, Some("certificate_ids"));
    app.api
        .post(
            "/organization/certificates/activate",
            json!({"certificate_ids": [{"a": [1, 2, {"b": null}]}]}),
        )
        .await
        .err(400, None, Some("certificate_ids"));
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    app.api
        .post_raw("/organization/certificates", nested)
        .await
        .err(400, None, None);
    app.api
        .post("/organization/projects", json!({"name": "\u{0000} odd"}))
        .await
        .err(400, None, Some("name"));
    app.api
        .post(
            "/organization/projects",
            json!({"name": "\u{FFFF} odd \u{1F600}"}),
        )
        .await
        .ok();
    app.api
        .post(
            "/organization/certificates/activate",
            json!({"certificate_ids": ["cert_\u{0000}"]}),
        )
        .await
        .err(400, None, Some("certificate_ids"));
    app.api
        .get("/organization/certificates?after=cert_%00")
        .await
        .err(400, None, Some("after"));
    app.api
        .get("/organization/projects/proj_%00")
        .await
        .err(404, None, None);
    app.api
        .get("/organization/certificates?limit=%FF")
        .await
        .err(400, None, Some("limit"));
    app.api
        .get("/organization/certificates?after=%FF%FE")
        .await
        .err(400, None, Some("after"));
}
