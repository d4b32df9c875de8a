//! Revocation sources on certificates (spec §13.4, decisions.md D58): `crl_url` and `ocsp` set
//! on upload or modify, refused with the reason when unusable (nothing changed), shown only
//! when set, and in the audit log.

use serde_json::json;

use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    sources_are_set_shown_and_cleared,
    bad_sources_change_nothing,
    sources_are_audited,
);

const URL: &str = "http://ca.example.com/root.crl";

async fn sources_are_set_shown_and_cleared(app: TestApp) {
    // Unset: OpenAI's shape exactly, no `crl_url` or `ocsp` key at all.
    let plain = app.api.upload(&pki::ca("Plain").pem(), None).await;
    assert!(plain.ok().get("crl_url").is_none(), "{}", plain.ok());
    assert!(plain.ok().get("ocsp").is_none(), "{}", plain.ok());
    let up = app
        .api
        .post(
            "/organization/certificates",
            json!({"certificate": pki::ca("Sourced").pem(), "crl_url": URL, "ocsp": "hard_fail"}),
        )
        .await;
    assert_eq!(up.ok()["crl_url"], URL);
    assert_eq!(up.ok()["ocsp"], "hard_fail");
    let id = up.id();
    let path = format!("/organization/certificates/{id}");
    let got = app.api.get(&path).await;
    assert_eq!(got.ok()["crl_url"], URL);
    assert_eq!(got.ok()["ocsp"], "hard_fail");
    let listed = app.api.list_all("/organization/certificates").await;
    let item = listed.iter().find(|c| c["id"] == id.as_str()).unwrap();
    assert_eq!(item["crl_url"], URL);
    assert_eq!(item["ocsp"], "hard_fail");
    // A rename keeps both; each can change alone.
    let renamed = app.api.post(&path, json!({"name": "renamed"})).await;
    assert_eq!(renamed.ok()["crl_url"], URL);
    assert_eq!(renamed.ok()["ocsp"], "hard_fail");
    let soft = app.api.post(&path, json!({"ocsp": "soft_fail"})).await;
    assert_eq!(soft.ok()["ocsp"], "soft_fail");
    assert_eq!(soft.ok()["crl_url"], URL);
    let other = "https://pki.example.net/ca.crl?v=2";
    let moved = app.api.post(&path, json!({"crl_url": other})).await;
    assert_eq!(moved.ok()["crl_url"], other);
    // Off and null take the keys away again: the shape of a CA that never set them.
    let off = app
        .api
        .post(&path, json!({"ocsp": "off", "crl_url": null}))
        .await;
    assert!(off.ok().get("ocsp").is_none(), "{}", off.ok());
    assert!(off.ok().get("crl_url").is_none(), "{}", off.ok());
    let got = app.api.get(&path).await;
    assert!(got.ok().get("ocsp").is_none() && got.ok().get("crl_url").is_none());
    // `null` for ocsp is absence: it keeps the mode.
    app.api.post(&path, json!({"ocsp": "hard_fail"})).await.ok();
    let kept = app.api.post(&path, json!({"ocsp": null})).await;
    assert_eq!(kept.ok()["ocsp"], "hard_fail");
}

async fn bad_sources_change_nothing(app: TestApp) {
    let up = app
        .api
        .post(
            "/organization/certificates",
            json!({"certificate": pki::ca("Org CA").pem(), "crl_url": URL}),
        )
        .await;
    let id = up.id();
    let path = format!("/organization/certificates/{id}");
    for (url, says) in [
        ("ftp://ca.example.com/root.crl", "only http:// and https://"),
        ("file:///etc/passwd", "only http:// and https://"),
        (
            "http://user:secret@ca.example.com/x.crl",
            "user name or password",
        ),
        ("http://ca.example.com/x.crl#part", "fragment"),
        ("ca.example.com/x.crl", "not an absolute URL"),
        (
            &*format!("http://ca.example.com/{}", "a".repeat(2100)),
            "2048 bytes",
        ),
    ] {
        let message = app
            .api
            .post(&path, json!({"crl_url": url, "name": "changed"}))
            .await
            .err(400, None, Some("crl_url"))
            .to_owned();
        assert!(message.contains(says), "{url}: {message}");
        assert!(
            !message.contains("secret"),
            "a password is never echoed: {message}"
        );
        app.api
            .post(
                "/organization/certificates",
                json!({"certificate": pki::ca("New").pem(), "crl_url": url}),
            )
            .await
            .err(400, None, Some("crl_url"));
    }
    for bad in [json!("HARD_FAIL"), json!("on"), json!(1)] {
        let message = app
            .api
            .post(&path, json!({"ocsp": bad, "name": "changed"}))
            .await
            .err(400, None, Some("ocsp"))
            .to_owned();
        assert!(message.contains("soft_fail"), "{bad}: {message}");
    }
    app.api
        .post(&path, json!({"crl_url": 7}))
        .await
        .err(400, None, Some("crl_url"));
    // Nothing changed: not the URL, not the name, and only the upload certificate exists.
    let got = app.api.get(&path).await;
    assert_eq!(got.ok()["crl_url"], URL);
    assert!(got.ok()["name"].is_null());
    assert_eq!(app.api.all_ids().await, vec![id]);
}

async fn sources_are_audited(app: TestApp) {
    let up = app
        .api
        .post(
            "/organization/certificates",
            json!({"certificate": pki::ca("Audited").pem(), "crl_url": URL, "ocsp": "soft_fail"}),
        )
        .await;
    let id = up.id();
    let path = format!("/organization/certificates/{id}");
    app.api.post(&path, json!({"name": "n"})).await.ok();
    app.api.post(&path, json!({"crl_url": null})).await.ok();
    app.api.post(&path, json!({"ocsp": "off"})).await.ok();
    let events = app
        .api
        .get(&format!(
            "/organization/audit_logs?event_types[]=certificate.created&event_types[]=certificate.updated&resource_ids[]={id}"
        ))
        .await;
    let events = events.ok()["data"].as_array().unwrap().clone();
    let payloads: Vec<_> = events
        .iter()
        .rev()
        .map(|e| e[e["type"].as_str().unwrap()].clone())
        .collect();
    assert_eq!(
        payloads,
        [
            json!({"id": id, "name": null, "crl_url": URL, "ocsp": "soft_fail"}),
            json!({"id": id, "name": "n"}),
            json!({"id": id, "name": "n", "crl_url": null}),
            json!({"id": id, "name": "n", "ocsp": "off"}),
        ]
    );
}
