//! Admin API keys (OpenAI's shapes; decisions.md D15): create, retrieve, list, delete; expiry by
//! the replaceable clock; the last-key guard, also under concurrency; `last_used_at` without a
//! write per request.

use std::time::{Duration, Instant};

use certgate::domain::Clock;
use reqwest::Method;
use serde_json::{json, Value};

use crate::api::ids;
use crate::client::Api;
use crate::helpers::{backend_tests, TestApp};

backend_tests!(
    admin_keys_lifecycle,
    bad_key_input_changes_nothing,
    expiry_follows_the_clock,
    last_key_guard,
    last_key_guard_under_concurrency,
    last_used_at_without_a_write_per_request,
    keys_are_tenant_isolated,
);

const KEYS: &str = "/organization/admin_api_keys";

/// Creates a key as `api`; returns the whole answer.
async fn create_key(api: &Api, body: Value) -> Value {
    api.post(KEYS, body).await.ok().clone()
}

/// The ids of the keys `api` lists (all pages, oldest first).
async fn key_ids(api: &Api) -> Vec<String> {
    api.list_all(KEYS)
        .await
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The audit events of one type, newest first (a few: one page).
async fn events(api: &Api, kind: &str) -> Vec<Value> {
    let page = api
        .get(&format!(
            "/organization/audit_logs?limit=100&event_types[]={kind}"
        ))
        .await;
    assert_eq!(page.ok()["has_more"], false);
    page.ok()["data"].as_array().unwrap().clone()
}

#[track_caller]
fn assert_key_shape(k: &Value, org_id: &str) {
    assert_eq!(k["object"], "organization.admin_api_key", "{k}");
    assert!(k["id"].as_str().unwrap().starts_with("key_"), "{k}");
    assert!(k["redacted_value"]
        .as_str()
        .unwrap()
        .starts_with("sk-admin..."));
    assert_eq!(k["redacted_value"].as_str().unwrap().len(), 15, "{k}");
    assert!(k["created_at"].is_i64());
    assert!(
        k.get("expires_at").is_some() && k.get("last_used_at").is_some(),
        "{k}"
    );
    let owner = &k["owner"];
    assert_eq!(owner["type"], "user");
    assert_eq!(owner["object"], "organization.user");
    assert_eq!(owner["role"], "owner");
    assert_eq!(
        owner["id"],
        format!("user_{}", org_id.strip_prefix("org-").unwrap())
    );
    assert_eq!(owner["name"], "Test Org");
    assert!(owner["created_at"].is_i64());
    assert!(k.get("value").is_none(), "never the value: {k}");
}

async fn admin_keys_lifecycle(app: TestApp) {
    // The organization's first key.
    let listed = app.api.get(KEYS).await;
    let first = listed.ok()["data"][0].clone();
    assert_eq!(ids(listed.ok()).len(), 1);
    assert_key_shape(&first, &app.org_id);
    assert_eq!(first["name"], "Initial admin key");
    assert_eq!(first["expires_at"], Value::Null);
    assert!(app
        .key
        .ends_with(&first["redacted_value"].as_str().unwrap()[11..]));

    // Create: the value once, shaped like the rest.
    let now = app.clock.now();
    let created = create_key(&app.api, json!({"name": "CI", "expires_in_seconds": 3600})).await;
    let value = created["value"].as_str().unwrap().to_owned();
    let mut shown = created.clone();
    shown.as_object_mut().unwrap().remove("value");
    assert_key_shape(&shown, &app.org_id);
    assert!(value.starts_with("sk-admin-"));
    assert_eq!(
        created["redacted_value"],
        format!("sk-admin...{}", &value[value.len() - 4..])
    );
    assert_eq!(created["name"], "CI");
    assert_eq!(created["created_at"], now);
    assert_eq!(created["expires_at"], now + 3600);
    assert_eq!(created["last_used_at"], Value::Null);
    let id = created["id"].as_str().unwrap().to_owned();

    // Retrieve answers the same object, without the value.
    let got = app.api.get(&format!("{KEYS}/{id}")).await;
    assert_eq!(got.ok(), &shown);
    // The new key works, and manages the same organization's keys.
    let second = app.api.as_key(&value);
    assert_eq!(key_ids(&second).await, key_ids(&app.api).await);

    // List: ascending by default, `order=desc`, pages with `after`.
    let third = create_key(&app.api, json!({"name": "third"})).await;
    let third_id = third["id"].as_str().unwrap().to_owned();
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(
        key_ids(&app.api).await,
        [first_id.clone(), id.clone(), third_id.clone()]
    );
    let desc = app.api.get(&format!("{KEYS}?order=desc")).await;
    assert_eq!(ids(desc.ok()), [&third_id, &id, &first_id]);
    let page = app.api.get(&format!("{KEYS}?limit=1")).await;
    assert_eq!(page.ok()["has_more"], true);
    assert_eq!(page.ok()["first_id"], first_id.as_str());
    assert_eq!(page.ok()["last_id"], first_id.as_str());

    // Delete: the answer, then 401 for the key, 404 for its id, gone from the list...
    let deleted = app.api.delete(&format!("{KEYS}/{id}")).await;
    assert_eq!(
        deleted.ok(),
        &json!({"id": id, "object": "organization.admin_api_key.deleted", "deleted": true})
    );
    second
        .get(KEYS)
        .await
        .err(401, Some("invalid_api_key"), None);
    app.api
        .get(&format!("{KEYS}/{id}"))
        .await
        .err(404, None, None);
    app.api
        .delete(&format!("{KEYS}/{id}"))
        .await
        .err(404, None, None);
    assert_eq!(
        key_ids(&app.api).await,
        [first_id.clone(), third_id.clone()]
    );
    // ...but still a valid cursor: the list continues from where it stood.
    let after = app.api.get(&format!("{KEYS}?after={id}")).await;
    assert_eq!(ids(after.ok()), [third_id.as_str()]);
    let before = app.api.get(&format!("{KEYS}?after={id}&order=desc")).await;
    assert_eq!(ids(before.ok()), [first_id.as_str()]);

    // Unknown and malformed ids.
    for path in [
        format!("{KEYS}/key_doesnotexist"),
        format!("{KEYS}/nope"),
        format!("{KEYS}/{}", "k".repeat(5000)),
    ] {
        app.api.get(&path).await.err(404, None, None);
        app.api.delete(&path).await.err(404, None, None);
    }
}

async fn bad_key_input_changes_nothing(app: TestApp) {
    let long = "n".repeat(257);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": long}), "name"),
        (json!({"name": 7}), "name"),
        (
            json!({"name": "x", "expires_in_seconds": 0}),
            "expires_in_seconds",
        ),
        (
            json!({"name": "x", "expires_in_seconds": -5}),
            "expires_in_seconds",
        ),
        (
            json!({"name": "x", "expires_in_seconds": 31_536_001}),
            "expires_in_seconds",
        ),
        (
            json!({"name": "x", "expires_in_seconds": "60"}),
            "expires_in_seconds",
        ),
        (
            json!({"name": "x", "expires_in_seconds": 1.5}),
            "expires_in_seconds",
        ),
        (
            json!({"name": "x", "expires_in_seconds": true}),
            "expires_in_seconds",
        ),
        (
            json!({"name": "x", "expires_in_seconds": 1e30}),
            "expires_in_seconds",
        ),
        (json!({"name": "x", "scopes": ["all"]}), "scopes"),
    ];
    for (body, param) in cases {
        let a = app.api.post(KEYS, body.clone()).await;
        a.err(400, None, Some(param));
    }
    app.api
        .post_raw(KEYS, "{not json")
        .await
        .err(400, None, None);
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("order=sideways", "order"),
        ("after=key_neverissued", "after"),
        ("after=cert_abc", "after"),
    ] {
        app.api
            .get(&format!("{KEYS}?{query}"))
            .await
            .err(400, None, Some(param));
    }
    // The bounds themselves are accepted.
    create_key(
        &app.api,
        json!({"name": "x", "expires_in_seconds": 31_536_000}),
    )
    .await;
    let no_expiry = create_key(&app.api, json!({"name": "y", "expires_in_seconds": null})).await;
    assert_eq!(no_expiry["expires_at"], Value::Null);
    assert_eq!(key_ids(&app.api).await.len(), 3);
    assert_eq!(events(&app.api, "api_key.created").await.len(), 3);
}

async fn expiry_follows_the_clock(app: TestApp) {
    let created = create_key(&app.api, json!({"name": "short", "expires_in_seconds": 60})).await;
    let short = app.api.as_key(created["value"].as_str().unwrap());
    short.get(KEYS).await.ok();
    app.clock.advance(59);
    // Still valid one second before; the check above may have been cached (SQLite).
    short.get(KEYS).await.ok();
    short.get(KEYS).await.ok();
    app.clock.advance(1);
    short
        .get(KEYS)
        .await
        .err(401, Some("invalid_api_key"), None);
    short
        .post("/organization/projects", json!({"name": "late"}))
        .await
        .err(401, Some("invalid_api_key"), None);
    // Expired keys stay listed (with their expiry) until deleted.
    let id = created["id"].as_str().unwrap();
    let got = app.api.get(&format!("{KEYS}/{id}")).await;
    assert_eq!(got.ok()["expires_at"], created["expires_at"]);
    // An expired key does not count for the last-key guard: the initial key is now the last
    // unexpired one, while the expired one may go.
    let first = key_ids(&app.api).await[0].clone();
    app.api
        .delete(&format!("{KEYS}/{first}"))
        .await
        .err(409, Some("last_admin_key"), None);
    app.api.delete(&format!("{KEYS}/{id}")).await.ok();
}

async fn last_key_guard(app: TestApp) {
    let first = key_ids(&app.api).await[0].clone();
    let refused = app.api.delete(&format!("{KEYS}/{first}")).await;
    let msg = refused.err(409, Some("last_admin_key"), None);
    assert!(msg.contains(&first), "{msg}");
    // Nothing changed: the key works and no deletion was logged.
    assert_eq!(key_ids(&app.api).await, std::slice::from_ref(&first));
    assert!(events(&app.api, "api_key.deleted").await.is_empty());
    // With a second key, the first may go, even deleting itself.
    let second = create_key(&app.api, json!({"name": "second"})).await;
    app.api.delete(&format!("{KEYS}/{first}")).await.ok();
    app.api
        .get(KEYS)
        .await
        .err(401, Some("invalid_api_key"), None);
    let second = app.api.as_key(second["value"].as_str().unwrap());
    let id = second.get(KEYS).await.ok()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    second
        .delete(&format!("{KEYS}/{id}"))
        .await
        .err(409, Some("last_admin_key"), None);
}

async fn last_key_guard_under_concurrency(app: TestApp) {
    use certgate::domain::Actor;
    // Over HTTP: two keys delete each other at once. Never both.
    for round in 0..8 {
        let (_, a) = app.other_org().await;
        let b_key = create_key(&a, json!({"name": format!("b{round}")})).await;
        let b = a.as_key(b_key["value"].as_str().unwrap());
        let ids = key_ids(&a).await;
        let (ka, kb) = (ids[0].clone(), ids[1].clone());
        let (pa, pb) = (format!("{KEYS}/{ka}"), format!("{KEYS}/{kb}"));
        let (da, db) = tokio::join!(b.delete(&pa), a.delete(&pb));
        let statuses = [da.status.as_u16(), db.status.as_u16()];
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "exactly one delete wins: {statuses:?} {} {}",
            da.body,
            db.body
        );
        for answer in [&da, &db] {
            match answer.status.as_u16() {
                200 => {}
                409 => {
                    answer.err(409, Some("last_admin_key"), None);
                }
                // The loser's own key was deleted before its request was checked.
                401 => {
                    answer.err(401, Some("invalid_api_key"), None);
                }
                other => panic!("unexpected {other}: {}", answer.body),
            }
        }
        // `da` is b deleting a's key: when it won, b survives.
        let survivor = if da.status == 200 { &b } else { &a };
        assert_eq!(key_ids(survivor).await.len(), 1);
    }
    // In the store: two deletes of the last two keys, many times; one always stays.
    for _ in 0..8 {
        let (org, _) = app.store.create_organization("Race").await.unwrap();
        let second = app
            .store
            .create_admin_key(&org.id, "second", None, &Actor::System)
            .await
            .unwrap();
        let first = key_ids_in_store(&app, &org.id).await[0].clone();
        let (r1, r2) = tokio::join!(
            app.store
                .delete_admin_key(&org.id, &first, &Actor::System, false),
            app.store
                .delete_admin_key(&org.id, &second.key.id, &Actor::System, false)
        );
        assert_eq!(
            u8::from(r1.is_ok()) + u8::from(r2.is_ok()),
            1,
            "{r1:?} {r2:?}"
        );
        assert_eq!(key_ids_in_store(&app, &org.id).await.len(), 1);
    }
}

/// The ids of an organization's keys, as the store lists them (oldest first).
async fn key_ids_in_store(
    app: &TestApp,
    org: &certgate::domain::OrgId,
) -> Vec<certgate::domain::KeyId> {
    let page = certgate::domain::PageRequest {
        order: certgate::domain::Order::Asc,
        ..Default::default()
    };
    app.store
        .list_admin_keys(org, &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|k| k.id)
        .collect()
}

/// Polls the key's `last_used_at` until it equals `want` (at most `within`).
async fn wait_last_used(api: &Api, id: &str, want: i64, within: Duration) {
    let started = Instant::now();
    loop {
        let got = api.get(&format!("{KEYS}/{id}")).await;
        if got.ok()["last_used_at"] == want {
            return;
        }
        assert!(
            started.elapsed() < within,
            "last_used_at still {} after {within:?}, want {want}",
            got.body["last_used_at"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn last_used_at_without_a_write_per_request(app: TestApp) {
    // The interval (a minute by default) shortened, so both of its sides fit in a test.
    const INTERVAL: Duration = Duration::from_secs(3);
    app.store.set_key_usage_interval(INTERVAL);
    let created = create_key(&app.api, json!({"name": "used"})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let used = app.api.as_key(created["value"].as_str().unwrap());
    assert_eq!(created["last_used_at"], Value::Null);
    // A first use is written promptly, by the clock of the store.
    let t0 = app.clock.now();
    let first_use = Instant::now();
    used.get("/organization/certificates").await.ok();
    wait_last_used(&app.api, &id, t0, Duration::from_secs(10)).await;
    let first_seen = Instant::now();
    // Further uses within the interval are kept in memory: many requests, no write...
    app.clock.advance(5);
    let writes = app.store.key_usage_writes();
    for _ in 0..50 {
        used.get("/organization/certificates").await.ok();
    }
    // ...not before the interval since the first write (which came after the first use)...
    let before_due = first_use + INTERVAL.mul_f64(0.9);
    tokio::time::sleep_until(before_due.into()).await;
    if Instant::now() < first_use + INTERVAL {
        assert_eq!(
            app.api.get(&format!("{KEYS}/{id}")).await.ok()["last_used_at"],
            t0
        );
    }
    // Only the key the polling list uses may have been written meanwhile (its first use).
    assert!(app.store.key_usage_writes() <= writes + 1);
    // ...and the latest use is written once it has passed: not later than 1 s after.
    let due = first_seen + INTERVAL + crate::bounds::LATE;
    wait_last_used(&app.api, &id, t0 + 5, due - Instant::now()).await;
}

async fn keys_are_tenant_isolated(app: TestApp) {
    let (_, other) = app.other_org().await;
    let mine = key_ids(&app.api).await;
    let theirs = key_ids(&other).await;
    assert_eq!((mine.len(), theirs.len()), (1, 1));
    assert_ne!(mine, theirs);
    for (m, path) in [
        (Method::GET, format!("{KEYS}/{}", mine[0])),
        (Method::DELETE, format!("{KEYS}/{}", mine[0])),
    ] {
        other.call(m, &path, None).await.err(404, None, None);
    }
    other
        .get(&format!("{KEYS}?after={}", mine[0]))
        .await
        .err(400, None, Some("after"));
    assert_eq!(key_ids(&app.api).await, mine);
}
