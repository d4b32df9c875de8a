//! Client filters on certificates (spec §12.6): set on upload or modify, cleared with null,
//! refused with the reason when they cannot work, shown only when set.

use serde_json::json;

use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    filters_are_set_shown_and_cleared,
    bad_filters_change_nothing
);

const SPIFFE: &str = r#"cert.san_uri.exists(u, u.startsWith("spiffe://prod.example.com/"))"#;

async fn filters_are_set_shown_and_cleared(app: TestApp) {
    // Without a filter the answer keeps OpenAI's shape: no `client_filter` key at all.
    let plain = app.api.upload(&pki::ca("Plain").pem(), None).await;
    assert!(plain.ok().get("client_filter").is_none(), "{}", plain.ok());
    let up = app
        .api
        .post(
            "/organization/certificates",
            json!({"certificate": pki::ca("Filtered").pem(), "client_filter": SPIFFE}),
        )
        .await;
    assert_eq!(up.ok()["client_filter"], SPIFFE);
    let id = up.id();
    let path = format!("/organization/certificates/{id}");
    assert_eq!(app.api.get(&path).await.ok()["client_filter"], SPIFFE);
    let listed = app.api.list_all("/organization/certificates").await;
    let item = listed.iter().find(|c| c["id"] == id.as_str()).unwrap();
    assert_eq!(item["client_filter"], SPIFFE);
    // Renaming leaves it; a new one replaces it; null clears it.
    let renamed = app.api.post(&path, json!({"name": "renamed"})).await;
    assert_eq!(renamed.ok()["client_filter"], SPIFFE);
    let cn = r#"cert.subject_cn == "svc-billing""#;
    assert_eq!(
        app.api.post(&path, json!({"client_filter": cn})).await.ok()["client_filter"],
        cn
    );
    let cleared = app.api.post(&path, json!({"client_filter": null})).await;
    assert!(cleared.ok().get("client_filter").is_none());
    // certificate.updated carries the filter after the change when there is one, and null
    // when the call cleared it (spec §13.5: clearing widens trust, so it must show).
    let events = app
        .api
        .get(&format!(
            "/organization/audit_logs?event_types[]=certificate.updated&resource_ids[]={id}"
        ))
        .await;
    let events = events.ok()["data"].as_array().unwrap().clone();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[0]["certificate.updated"],
        json!({"id": id, "name": "renamed", "client_filter": null})
    );
    assert_eq!(events[1]["certificate.updated"]["client_filter"], cn);
    assert_eq!(
        events[2]["certificate.updated"],
        json!({"id": id, "name": "renamed", "client_filter": SPIFFE})
    );
    // A rename of a certificate without a filter says nothing of filters.
    let plain_id = plain.id();
    app.api
        .post(
            &format!("/organization/certificates/{plain_id}"),
            json!({"name": "plain"}),
        )
        .await
        .ok();
    // certificate.created carries the filter set at upload, and only then.
    let created = app
        .api
        .get("/organization/audit_logs?event_types[]=certificate.created&event_types[]=certificate.updated")
        .await;
    let created = created.ok()["data"].as_array().unwrap().clone();
    let payload = |kind: &str, of: &str| {
        created
            .iter()
            .find(|e| e["type"] == kind && e[kind]["id"] == of)
            .map(|e| e[kind].clone())
            .unwrap()
    };
    assert_eq!(
        payload("certificate.created", &id),
        json!({"id": id, "name": null, "client_filter": SPIFFE})
    );
    assert_eq!(
        payload("certificate.created", &plain_id),
        json!({"id": plain_id, "name": null})
    );
    assert_eq!(
        payload("certificate.updated", &plain_id),
        json!({"id": plain_id, "name": "plain"})
    );
}

async fn bad_filters_change_nothing(app: TestApp) {
    let id = app.api.upload_new("Org CA").await;
    let path = format!("/organization/certificates/{id}");
    for (filter, says) in [
        ("cert.san_uri.exists(u,", "parse"),
        ("cert.nope == 1", "evaluate"),
        ("unknown == 1", "evaluate"),
        ("cert.subject_cn", "boolean"),
        (
            &*format!("cert.subject_cn == \"{}\"", "x".repeat(4100)),
            "4096",
        ),
    ] {
        let message = app
            .api
            .post(&path, json!({"client_filter": filter}))
            .await
            .err(400, Some("invalid_client_filter"), Some("client_filter"))
            .to_owned();
        assert!(message.contains(says), "{filter}: {message}");
        app.api
            .post(
                "/organization/certificates",
                json!({"certificate": pki::ca("New").pem(), "client_filter": filter}),
            )
            .await
            .err(400, Some("invalid_client_filter"), Some("client_filter"));
    }
    app.api
        .post(&path, json!({"client_filter": 7}))
        .await
        .err(400, None, Some("client_filter"));
    assert!(app.api.get(&path).await.ok().get("client_filter").is_none());
    assert_eq!(
        app.api.all_ids().await.len(),
        1,
        "no refused upload was stored"
    );
}
