//! The audit log (spec §6, §12.2): one event per change, written with it; exact payloads,
//! actors and projects; every filter; `after`/`before`; completeness under concurrent writers;
//! retention.

use std::collections::{HashMap, HashSet};

use certgate::domain::Clock;
use serde_json::{json, Value};

use crate::api::ids;
use crate::client::Api;
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    every_change_writes_its_event,
    refused_changes_write_nothing,
    filters,
    cursors_and_order,
    bad_audit_queries,
    complete_under_concurrent_writers,
    retention_deletes_old_events,
);

const LOGS: &str = "/organization/audit_logs";

/// Every event `api` can see, newest first, all pages (following `last_id`, like the SDK).
async fn all_events(api: &Api, query: &str) -> Vec<Value> {
    let sep = if query.is_empty() { "" } else { "&" };
    let mut items = Vec::new();
    let mut after = String::new();
    loop {
        let page = api
            .get(&format!("{LOGS}?limit=100{sep}{query}{after}"))
            .await;
        let page = page.ok();
        items.extend(page["data"].as_array().expect("data").iter().cloned());
        if page["has_more"] != true {
            return items;
        }
        after = format!("&after={}", page["last_id"].as_str().expect("last_id"));
    }
}

/// The types of `events`, oldest first.
fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .rev()
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}

/// The key id of the API's caller, and the organization owner's user id.
async fn me(app: &TestApp) -> (String, String) {
    let keys = app.api.get("/organization/admin_api_keys").await;
    let key = keys.ok()["data"][0]["id"].as_str().unwrap().to_owned();
    let owner = format!("user_{}", app.org_id.strip_prefix("org-").unwrap());
    (key, owner)
}

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

async fn filters(app: TestApp) {
    let (key, owner) = me(&app).await;
    let t0 = app.clock.now();
    let a = app.api.upload_new("A").await;
    app.clock.advance(10);
    let b = app.api.upload_new("B").await;
    let project = app.api.create_project("P").await;
    app.api
        .toggle_project(&project, "activate", &[&a, &b])
        .await;
    app.clock.advance(10);
    let other_key = app
        .api
        .post("/organization/admin_api_keys", json!({"name": "second"}))
        .await;
    let second = app.api.as_key(other_key.ok()["value"].as_str().unwrap());
    let second_id = other_key.id();
    second.toggle_org("activate", &[&b]).await;
    let all = all_events(&app.api, "").await;
    assert_eq!(all.len(), 8);
    let kinds = |q: &str| {
        let app = &app;
        let q = q.to_owned();
        async move {
            let events = all_events(&app.api, &q).await;
            types(&events)
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>()
        }
    };
    // event_types[]: OR within the filter.
    assert_eq!(
        kinds("event_types[]=certificate.created&event_types[]=api_key.created").await,
        [
            "api_key.created",
            "certificate.created",
            "certificate.created",
            "api_key.created"
        ]
    );
    assert_eq!(kinds("event_types=project.created").await.len(), 2);
    assert!(kinds("event_types[]=login.succeeded").await.is_empty());
    // project_ids[]: the project acted on.
    assert_eq!(
        kinds(&format!("project_ids[]={project}")).await,
        ["project.created", "certificates.activated"]
    );
    // resource_ids[]: a toggle matches each certificate it names; `project.*` their project.
    assert_eq!(
        kinds(&format!("resource_ids[]={a}")).await,
        ["certificate.created", "certificates.activated"]
    );
    assert_eq!(
        kinds(&format!("resource_ids[]={b}")).await,
        [
            "certificate.created",
            "certificates.activated",
            "certificates.activated"
        ]
    );
    assert_eq!(
        kinds(&format!("resource_ids[]={project}")).await,
        ["project.created"]
    );
    assert_eq!(
        kinds(&format!("resource_ids[]={second_id}")).await,
        ["api_key.created"]
    );
    // actor_ids[]: a key id, or the owner's user id for every key-made event.
    assert_eq!(
        kinds(&format!("actor_ids[]={second_id}")).await,
        ["certificates.activated"]
    );
    assert_eq!(kinds(&format!("actor_ids[]={key}")).await.len(), 5);
    assert_eq!(kinds(&format!("actor_ids[]={owner}")).await.len(), 6);
    assert_eq!(
        kinds(&format!("actor_ids[]={key}&actor_ids[]={second_id}"))
            .await
            .len(),
        6
    );
    assert!(kinds("actor_ids[]=user_someoneelse").await.is_empty());
    // actor_emails[] matches nothing (no actor has an email); tenant_only=true neither.
    assert!(kinds("actor_emails[]=a@example.com").await.is_empty());
    assert!(kinds("tenant_only=true").await.is_empty());
    assert_eq!(kinds("tenant_only=false").await.len(), 8);
    // effective_at: each bound, and together.
    assert_eq!(kinds(&format!("effective_at[gt]={t0}")).await.len(), 5);
    assert_eq!(kinds(&format!("effective_at[gte]={t0}")).await.len(), 8);
    assert_eq!(
        kinds(&format!("effective_at[lt]={}", t0 + 10)).await.len(),
        3
    );
    assert_eq!(
        kinds(&format!("effective_at[lte]={}", t0 + 10)).await.len(),
        6
    );
    assert_eq!(
        kinds(&format!(
            "effective_at[gt]={t0}&effective_at[lt]={}",
            t0 + 20
        ))
        .await,
        [
            "certificate.created",
            "project.created",
            "certificates.activated"
        ]
    );
    // Filters combine with AND.
    assert_eq!(
        kinds(&format!(
            "event_types[]=certificates.activated&actor_ids[]={key}&resource_ids[]={b}"
        ))
        .await,
        ["certificates.activated"]
    );
    assert!(kinds(&format!(
        "project_ids[]={project}&event_types[]=api_key.created"
    ))
    .await
    .is_empty());
}

async fn cursors_and_order(app: TestApp) {
    for i in 0..7 {
        app.api.create_project(&format!("p{i}")).await;
        if i % 3 == 0 {
            app.clock.advance(1);
        }
    }
    let all = all_events(&app.api, "").await;
    let all_ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(all_ids.len(), 9);
    // Newest first; ids sort by time, so the list is in descending id order.
    let mut sorted = all_ids.clone();
    sorted.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(all_ids, sorted);
    assert_eq!(all_ids.iter().collect::<HashSet<_>>().len(), 9, "distinct");
    let at: Vec<i64> = all
        .iter()
        .map(|e| e["effective_at"].as_i64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] >= w[1]));

    // after=ID: the `limit` events just older.
    let page = app
        .api
        .get(&format!("{LOGS}?limit=3&after={}", all_ids[2]))
        .await;
    assert_eq!(ids(page.ok()), &all_ids[3..6]);
    assert_eq!(page.ok()["has_more"], true);
    assert_eq!(page.ok()["first_id"], all_ids[3]);
    assert_eq!(page.ok()["last_id"], all_ids[5]);
    let end = app
        .api
        .get(&format!("{LOGS}?limit=3&after={}", all_ids[5]))
        .await;
    assert_eq!(ids(end.ok()), &all_ids[6..]);
    assert_eq!(end.ok()["has_more"], false);
    // before=ID: the nearest newer ones, still newest first; has_more says if even newer exist.
    let page = app
        .api
        .get(&format!("{LOGS}?limit=3&before={}", all_ids[6]))
        .await;
    assert_eq!(ids(page.ok()), &all_ids[3..6]);
    assert_eq!(page.ok()["has_more"], true);
    let top = app
        .api
        .get(&format!("{LOGS}?limit=3&before={}", all_ids[3]))
        .await;
    assert_eq!(ids(top.ok()), &all_ids[..3]);
    assert_eq!(top.ok()["has_more"], false);
    let none = app.api.get(&format!("{LOGS}?before={}", all_ids[0])).await;
    assert!(ids(none.ok()).is_empty());
    assert_eq!(none.ok()["first_id"], Value::Null);
    assert_eq!(none.ok()["last_id"], Value::Null);
    // Both: the window between them.
    let window = app
        .api
        .get(&format!(
            "{LOGS}?after={}&before={}",
            all_ids[1], all_ids[5]
        ))
        .await;
    assert_eq!(ids(window.ok()), &all_ids[2..5]);
    // Default limit 20, and the cursor may name an event a filter leaves out.
    let filtered = app
        .api
        .get(&format!(
            "{LOGS}?event_types[]=api_key.created&after={}",
            all_ids[0]
        ))
        .await;
    // (The organization's birth wrote its Default project's event, then its key's.)
    assert_eq!(ids(filtered.ok()), [all_ids[7]]);
}

async fn bad_audit_queries(app: TestApp) {
    let (_, other) = app.other_org().await;
    let theirs = all_events(&other, "").await;
    let their_id = theirs[0]["id"].as_str().unwrap();
    // Each organization sees only its own events.
    let mine = all_events(&app.api, "").await;
    assert!(mine.iter().all(|e| e["id"] != their_id));
    assert_eq!(mine.len(), 2);
    for (query, param) in [
        (
            "effective_at[gte]=yesterday".to_owned(),
            "effective_at[gte]",
        ),
        ("effective_at[gt]=1.5".to_owned(), "effective_at[gt]"),
        ("effective_at[lt]=".to_owned(), "effective_at[lt]"),
        (
            "effective_at[lte]=99999999999999999999".to_owned(),
            "effective_at[lte]",
        ),
        ("effective_at=5".to_owned(), "effective_at"),
        ("limit=0".to_owned(), "limit"),
        ("limit=101".to_owned(), "limit"),
        ("tenant_only=maybe".to_owned(), "tenant_only"),
        // Found by schemathesis: refused even beside a filter that already matches nothing.
        (
            "actor_emails[]=a@example.com&tenant_only=2.5".to_owned(),
            "tenant_only",
        ),
        ("after=audit_log-nope".to_owned(), "after"),
        ("after=proj_abc".to_owned(), "after"),
        (format!("after={their_id}"), "after"),
        (format!("before={their_id}"), "before"),
        ("before=audit_log-%00".to_owned(), "before"),
        (
            (0..101)
                .map(|i| format!("event_types[]=t{i}"))
                .collect::<Vec<_>>()
                .join("&"),
            "event_types",
        ),
    ] {
        app.api
            .get(&format!("{LOGS}?{query}"))
            .await
            .err(400, None, Some(param));
    }
    app.api
        .anonymous()
        .get(LOGS)
        .await
        .err(401, Some("invalid_api_key"), None);
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
