//! What the audit log holds: one event per change with its exact payload, actor and project;
//! nothing for a refused change; every event under concurrent writers; retention.

use std::collections::{HashMap, HashSet};

use certgate::domain::Clock;
use serde_json::{json, Value};

use super::{all_events, me, types};
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    every_change_writes_its_event,
    refused_changes_write_nothing,
    complete_under_concurrent_writers,
    retention_deletes_old_events,
);

async fn every_change_writes_its_event(app: TestApp) {
    let (key, owner) = me(&app).await;
    let actor = json!({"type": "api_key", "api_key": {"id": key, "type": "user", "user": {"id": owner, "email": null}}});
    // The organization was born with its Default project and first key (actor null).
    let born = all_events(&app.api, "").await;
    assert_eq!(types(&born), ["project.created", "api_key.created"]);
    let default_project = born[1]["project"].clone();
    assert_eq!(default_project["name"], "Default project");
    assert_eq!(
        born[1]["project.created"],
        json!({"id": default_project["id"], "data": {"name": "Default project", "title": "Default project"}})
    );
    assert_eq!(
        born[0]["api_key.created"],
        json!({"id": key, "data": {"scopes": []}})
    );
    for e in &born {
        assert_eq!(e["actor"], Value::Null, "{e}");
        assert!(e["id"].as_str().unwrap().starts_with("audit_log-"));
    }
    assert!(born[0].get("project").is_none(), "no project on key events");

    let pem = format!("\n{}\n", pki::ca("Audited").pem());
    let cert = app.api.upload(&pem, Some("Root")).await.id();
    app.api
        .post(
            &format!("/organization/certificates/{cert}"),
            json!({"name": "Renamed"}),
        )
        .await
        .ok();
    // A modify that changes nothing still writes one event.
    app.api
        .post(&format!("/organization/certificates/{cert}"), json!({}))
        .await
        .ok();
    let project = app.api.create_project("Payments").await;
    app.api
        .post(
            &format!("/organization/projects/{project}"),
            json!({"name": "Billing"}),
        )
        .await
        .ok();
    app.api.toggle_project(&project, "activate", &[&cert]).await;
    // A no-op toggle is still one event.
    app.api.toggle_org("deactivate", &[&cert]).await;
    app.api
        .post(
            &format!("/organization/projects/{project}/archive"),
            json!({}),
        )
        .await
        .ok();
    // Archiving again changes nothing and writes nothing; deactivating on the archived
    // project answers 200 and writes its event.
    app.api
        .post(
            &format!("/organization/projects/{project}/archive"),
            json!({}),
        )
        .await
        .ok();
    app.api
        .toggle_project(&project, "deactivate", &[&cert])
        .await;
    app.api
        .delete(&format!("/organization/certificates/{cert}"))
        .await
        .ok();
    let new_key = app
        .api
        .post("/organization/admin_api_keys", json!({"name": "k2"}))
        .await
        .id();
    app.api
        .delete(&format!("/organization/admin_api_keys/{new_key}"))
        .await
        .ok();

    let all = all_events(&app.api, "").await;
    let made = &all[..all.len() - 2];
    assert_eq!(
        types(made),
        [
            "certificate.created",
            "certificate.updated",
            "certificate.updated",
            "project.created",
            "project.updated",
            "certificates.activated",
            "certificates.deactivated",
            "project.archived",
            "certificates.deactivated",
            "certificate.deleted",
            "api_key.created",
            "api_key.deleted",
        ]
    );
    let by_age: Vec<&Value> = made.iter().rev().collect();
    for e in &by_age {
        assert_eq!(e["actor"], actor, "{e}");
        assert!(e["effective_at"].is_i64());
        let kind = e["type"].as_str().unwrap();
        assert!(e.get(kind).is_some(), "payload named like the type: {e}");
    }
    let cert_ref = |name: &str| json!({"id": cert, "name": name});
    assert_eq!(by_age[0]["certificate.created"], cert_ref("Root"));
    assert!(by_age[0].get("project").is_none());
    assert_eq!(by_age[1]["certificate.updated"], cert_ref("Renamed"));
    assert_eq!(by_age[2]["certificate.updated"], cert_ref("Renamed"));
    let payments = json!({"id": project, "name": "Payments"});
    let billing = json!({"id": project, "name": "Billing"});
    assert_eq!(by_age[3]["project"], payments);
    assert_eq!(
        by_age[3]["project.created"],
        json!({"id": project, "data": {"name": "Payments", "title": "Payments"}})
    );
    assert_eq!(by_age[4]["project"], billing);
    assert_eq!(
        by_age[4]["project.updated"],
        json!({"id": project, "changes_requested": {"title": "Billing"}})
    );
    assert_eq!(
        by_age[5]["project"], billing,
        "a project toggle names its project"
    );
    assert_eq!(
        by_age[5]["certificates.activated"],
        json!({"certificates": [cert_ref("Renamed")]})
    );
    assert!(
        by_age[6].get("project").is_none(),
        "an organization toggle has none"
    );
    assert_eq!(
        by_age[6]["certificates.deactivated"],
        json!({"certificates": [cert_ref("Renamed")]})
    );
    assert_eq!(by_age[7]["project.archived"], json!({"id": project}));
    assert_eq!(by_age[7]["project"], billing);
    assert_eq!(by_age[8]["project"], billing);
    assert_eq!(
        by_age[9]["certificate.deleted"],
        json!({"id": cert, "name": "Renamed", "certificate": pem}),
        "the PEM exactly as uploaded"
    );
    assert_eq!(
        by_age[10]["api_key.created"],
        json!({"id": new_key, "data": {"scopes": []}})
    );
    assert_eq!(by_age[11]["api_key.deleted"], json!({"id": new_key}));
}

async fn refused_changes_write_nothing(app: TestApp) {
    let cert = app.api.upload_new("Busy").await;
    let project = app.api.create_project("P").await;
    app.api.toggle_org("activate", &[&cert]).await;
    let before = all_events(&app.api, "").await;
    let default = app.api.get("/organization/projects?limit=1").await.ok()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = app.api.get("/organization/admin_api_keys").await.ok()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pem = app
        .api
        .get(&format!(
            "/organization/certificates/{cert}?include[]=content"
        ))
        .await
        .ok()["certificate_details"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let refusals = [
        app.api.upload(&pem, None).await.status,
        app.api
            .delete(&format!("/organization/certificates/{cert}"))
            .await
            .status,
        app.api
            .post(
                "/organization/certificates/activate",
                json!({"certificate_ids": [cert, "cert_nope"]}),
            )
            .await
            .status,
        app.api
            .post(
                &format!("/organization/projects/{default}"),
                json!({"name": "x"}),
            )
            .await
            .status,
        app.api
            .post(
                &format!("/organization/projects/{default}/archive"),
                json!({}),
            )
            .await
            .status,
        app.api
            .post(
                &format!("/organization/projects/{project}"),
                json!({"nme": "x"}),
            )
            .await
            .status,
        app.api
            .delete(&format!("/organization/admin_api_keys/{key}"))
            .await
            .status,
        app.api
            .post(
                "/organization/admin_api_keys",
                json!({"name": "x", "expires_in_seconds": 0}),
            )
            .await
            .status,
        app.api
            .anonymous()
            .upload(&pki::ca("Anon").pem(), None)
            .await
            .status,
    ];
    assert!(
        refusals.iter().all(reqwest::StatusCode::is_client_error),
        "{refusals:?}"
    );
    assert_eq!(all_events(&app.api, "").await, before);
}
async fn complete_under_concurrent_writers(app: TestApp) {
    let project = app.api.create_project("Shared").await;
    let certs: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(app.api.upload_new(&format!("Base {i}")).await);
        }
        v
    };
    let before = all_events(&app.api, "").await.len();
    // 30 writers at once: uploads, project creations and toggles, some refused.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (api, certs, project) = (app.api.clone(), certs.clone(), project.clone());
        tasks.push(tokio::spawn(async move {
            let a = match i % 4 {
                0 => api.upload(&pki::ca(&format!("Conc {i}")).pem(), None).await,
                1 => {
                    api.post("/organization/projects", json!({"name": format!("c{i}")}))
                        .await
                }
                2 => {
                    api.post(
                        &format!("/organization/projects/{project}/certificates/activate"),
                        json!({"certificate_ids": [certs[i % 4], certs[(i + 1) % 4]]}),
                    )
                    .await
                }
                _ => {
                    // Refused: one unknown id.
                    api.post(
                        "/organization/certificates/activate",
                        json!({"certificate_ids": [certs[i % 4], "cert_unknown"]}),
                    )
                    .await
                }
            };
            (i % 4, a.status.as_u16(), a.body)
        }));
    }
    let mut expected: HashMap<&str, usize> = HashMap::new();
    let mut created_ids = HashSet::new();
    for t in tasks {
        let (kind, status, body) = t.await.unwrap();
        match (kind, status) {
            (0, 200) => {
                *expected.entry("certificate.created").or_default() += 1;
                created_ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            (1, 200) => {
                *expected.entry("project.created").or_default() += 1;
                created_ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            (2, 200) => *expected.entry("certificates.activated").or_default() += 1,
            (3, 404) => {}
            other => panic!("unexpected {other:?}: {body}"),
        }
    }
    let all = all_events(&app.api, "").await;
    let fresh = &all[..all.len() - before];
    let mut counted: HashMap<&str, usize> = HashMap::new();
    for e in fresh {
        *counted.entry(e["type"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(
        counted, expected,
        "one event per acknowledged change, none for refusals"
    );
    for e in fresh {
        let kind = e["type"].as_str().unwrap();
        if kind != "certificates.activated" {
            assert!(created_ids.remove(e[kind]["id"].as_str().unwrap()), "{e}");
        }
    }
    assert!(
        created_ids.is_empty(),
        "every acknowledged creation has its event"
    );
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "distinct ids"
    );
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "strictly ordered, newest first"
    );
}

async fn retention_deletes_old_events(app: TestApp) {
    app.api.create_project("old").await;
    app.clock.advance(40 * 86_400);
    let recent = app.api.create_project("recent").await;
    let cutoff = app.clock.now() - 30 * 86_400;
    let deleted = app.store.purge_audit_events(cutoff).await.unwrap();
    assert_eq!(deleted, 3, "the two birth events and the old project's");
    let left = all_events(&app.api, "").await;
    assert_eq!(types(&left), ["project.created"]);
    assert_eq!(left[0]["project.created"]["id"], recent.as_str());
    // resource filters forget them too.
    assert!(all_events(&app.api, "event_types[]=api_key.created")
        .await
        .is_empty());
}
