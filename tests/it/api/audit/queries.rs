//! Reading the audit log: every filter, `after`/`before` and order, and refused queries.

use std::collections::HashSet;

use certgate::domain::Clock;
use serde_json::{json, Value};

use super::{all_events, me, types, LOGS};
use crate::api::ids;
use crate::helpers::{backend_tests, TestApp};

backend_tests!(filters, cursors_and_order, bad_audit_queries);

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
