//! Rotation: every scope where `from` is active, its audit events, its refusals (which change
//! nothing), and rotations racing other writes.

use certgate::domain::Clock;
use serde_json::{json, Value};

use super::{audit, get_details, item, rotate, CERTS, DAY};
use crate::client::Answer;
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    rotation_everywhere_from_is_active,
    rotation_refusals_change_nothing,
    concurrent_rotations_never_leave_a_scope_without_either,
);

/// Events of `kind` about certificate `id`, oldest first: (project id or null, payload ids).
fn scope_events(events: &[Value], kind: &str) -> Vec<(Value, Vec<String>)> {
    events
        .iter()
        .rev()
        .filter(|e| e["type"] == kind)
        .map(|e| {
            let ids = e[kind]["certificates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
                .collect();
            (
                e.get("project").map_or(Value::Null, |p| p["id"].clone()),
                ids,
            )
        })
        .collect()
}

async fn rotation_everywhere_from_is_active(app: TestApp) {
    let old = app
        .api
        .upload(&pki::ca("Old").pem(), Some("old"))
        .await
        .id();
    let new = app
        .api
        .upload(&pki::ca("New").pem(), Some("new"))
        .await
        .id();
    let p1 = app.api.create_project("one").await;
    let p2 = app.api.create_project("two").await;
    let p3 = app.api.create_project("three").await;
    let untouched = app.api.create_project("untouched").await;
    app.api.toggle_org("activate", &[&old]).await;
    for p in [&p2, &p1, &p3] {
        app.api.toggle_project(p, "activate", &[&old]).await;
    }
    // `new` already active in p2: still reported, activation is idempotent.
    app.api.toggle_project(&p2, "activate", &[&new]).await;
    app.api
        .post(&format!("/organization/projects/{p3}/archive"), json!({}))
        .await
        .ok();
    let before = audit(&app.api).await.len();

    // Stage: `new` joins `old` everywhere.
    let staged = rotate(&app.api, &old, &new, None).await;
    assert_eq!(
        staged.ok(),
        &json!({
            "object": "organization.certificate_rotation",
            "from": old, "to": new,
            "organization": true, "projects": [p1, p2],
            "retired": false,
        })
    );
    let both = json!({"organization": true, "projects": [p1, p2]});
    assert_eq!(get_details(&app.api, &new).await["activations"], both);
    assert_eq!(get_details(&app.api, &old).await["activations"], both);
    let events = audit(&app.api).await;
    let added = &events[..events.len() - before];
    assert_eq!(
        scope_events(added, "certificates.activated"),
        [
            (Value::Null, vec![new.clone()]),
            (json!(p1), vec![new.clone()]),
            (json!(p2), vec![new.clone()]),
        ]
    );
    assert!(scope_events(added, "certificates.deactivated").is_empty());
    let key = app.api.get("/organization/admin_api_keys").await.ok()["data"][0]["id"].clone();
    for e in added {
        assert_eq!(e["actor"]["api_key"]["id"], key, "{e}");
    }

    // Retire: `old` leaves every scope it was in, `new` stays.
    let before = events.len();
    let retired = rotate(&app.api, &old, &new, Some(true)).await;
    assert_eq!(retired.ok()["retired"], true);
    assert_eq!(retired.ok()["projects"], json!([p1, p2]));
    assert_eq!(
        get_details(&app.api, &old).await["activations"],
        json!({"organization": false, "projects": []})
    );
    assert_eq!(get_details(&app.api, &new).await["activations"], both);
    let events = audit(&app.api).await;
    let added = &events[..events.len() - before];
    let types: Vec<&str> = added
        .iter()
        .rev()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "certificates.activated",
            "certificates.deactivated",
            "certificates.activated",
            "certificates.deactivated",
            "certificates.activated",
            "certificates.deactivated",
        ]
    );
    assert_eq!(
        scope_events(added, "certificates.deactivated"),
        [
            (Value::Null, vec![old.clone()]),
            (json!(p1), vec![old.clone()]),
            (json!(p2), vec![old.clone()]),
        ]
    );
    // The project of a project event carries its name.
    let p1_event = added
        .iter()
        .find(|e| e.get("project").is_some_and(|p| p["id"] == p1.as_str()))
        .unwrap();
    assert_eq!(p1_event["project"]["name"], "one");
    // Nothing happened in the project `old` was never active for.
    let untouched_list = app
        .api
        .get(&format!("/organization/projects/{untouched}/certificates"))
        .await;
    assert_eq!(item(untouched_list.ok(), &new)["active"], false);
    // `old` is active nowhere now: it can be deleted, and rotating from it is refused.
    rotate(&app.api, &old, &new, None)
        .await
        .err(400, Some("certificate_not_active"), Some("from"));
    app.api.delete(&format!("{CERTS}/{old}")).await.ok();

    // A project-only rotation: the organization flag is left alone.
    let fourth = app.api.upload_new("Fourth").await;
    app.api.toggle_project(&p1, "activate", &[&fourth]).await;
    let fifth = app.api.upload_new("Fifth").await;
    let r = rotate(&app.api, &fourth, &fifth, Some(true)).await;
    assert_eq!(r.ok()["organization"], false);
    assert_eq!(r.ok()["projects"], json!([p1]));
    assert_eq!(
        get_details(&app.api, &fifth).await["activations"],
        json!({"organization": false, "projects": [p1]})
    );
}

async fn rotation_refusals_change_nothing(app: TestApp) {
    let now = app.clock.now();
    let from = app.api.upload_new("From").await;
    app.api.toggle_org("activate", &[&from]).await;
    let inactive = app.api.upload_new("Inactive").await;
    let to = app.api.upload_new("To").await;
    let staged = app
        .api
        .upload(
            &pki::ca_valid("Staged", now + 3600, now + 100 * DAY).pem(),
            None,
        )
        .await
        .id();
    let short = app
        .api
        .upload(
            &pki::ca_valid("Short", now - DAY, now + 2 * DAY).pem(),
            None,
        )
        .await
        .id();
    let deleted = app.api.upload_new("Deleted").await;
    app.api.delete(&format!("{CERTS}/{deleted}")).await.ok();
    let (_, other_api) = app.other_org().await;
    let theirs = other_api.upload_new("Theirs").await;
    // Time passes: `short` has expired.
    app.clock.set(now + 3 * DAY);
    let events = audit(&app.api).await.len();
    let generation = app.store.trust_generation().await.unwrap();

    let cases: Vec<(Value, u16, Option<&str>, Option<&str>)> = vec![
        (
            json!({"from": "cert_nope", "to": to}),
            404,
            None,
            Some("from"),
        ),
        (
            json!({"from": from, "to": "cert_nope"}),
            404,
            None,
            Some("to"),
        ),
        (
            json!({"from": "garbage", "to": to}),
            404,
            None,
            Some("from"),
        ),
        (json!({"from": from, "to": deleted}), 404, None, Some("to")),
        (json!({"from": theirs, "to": to}), 404, None, Some("from")),
        (json!({"from": from, "to": theirs}), 404, None, Some("to")),
        (json!({"from": from, "to": from}), 400, None, Some("to")),
        (
            json!({"from": inactive, "to": to}),
            400,
            Some("certificate_not_active"),
            Some("from"),
        ),
        (
            json!({"from": from, "to": short}),
            400,
            Some("invalid_certificate"),
            Some("to"),
        ),
        (
            json!({"from": from, "to": short, "retire_from": true}),
            400,
            Some("invalid_certificate"),
            Some("to"),
        ),
        (json!({"to": to}), 400, None, Some("from")),
        (json!({"from": from}), 400, None, Some("to")),
        (json!({"from": from, "to": 7}), 400, None, Some("to")),
        (
            json!({"from": from, "to": to, "retire_from": "yes"}),
            400,
            None,
            Some("retire_from"),
        ),
        (
            json!({"from": from, "to": to, "also": 1}),
            400,
            None,
            Some("also"),
        ),
    ];
    for (body, status, code, param) in cases {
        let shown = body.to_string();
        let r = app.api.post(&format!("{CERTS}/rotate"), body).await;
        let message = r.err(status, code, param);
        assert!(!message.is_empty(), "{shown}");
    }
    app.clock.set(now);
    // Retiring in favour of a CA not valid yet would lock clients out.
    let msg = rotate(&app.api, &from, &staged, Some(true))
        .await
        .err(400, Some("certificate_not_yet_valid"), Some("to"))
        .to_owned();
    assert!(msg.contains(&staged), "{msg}");
    assert_eq!(
        audit(&app.api).await.len(),
        events,
        "refusals write nothing"
    );
    assert_eq!(app.store.trust_generation().await.unwrap(), generation);
    assert_eq!(
        get_details(&app.api, &from).await["activations"],
        json!({"organization": true, "projects": []})
    );
    for id in [&to, &staged, &short, &inactive] {
        assert_eq!(
            get_details(&app.api, id).await["activations"]["organization"],
            false
        );
    }
    // Staging it without retiring is fine (both stay active; it admits from its valid_at).
    rotate(&app.api, &from, &staged, Some(false)).await.ok();
    assert_eq!(
        get_details(&app.api, &staged).await["activations"]["organization"],
        true
    );
}

/// Rotations racing toggles, deletes, an archive and rotations the other way: every answer
/// is a 200 or a refusal (never a 5xx), and no committed state (read as the gateway reads it)
/// ever has a scope where either CA was active with neither active. Nothing here deactivates
/// except rotations, so any such state would be a rotation's fault.
async fn concurrent_rotations_never_leave_a_scope_without_either(app: TestApp) {
    let a = app.api.upload_new("A").await;
    let b = app.api.upload_new("B").await;
    let projects = [
        app.api.create_project("one").await,
        app.api.create_project("two").await,
        app.api.create_project("three").await,
    ];
    app.api.toggle_org("activate", &[&a]).await;
    for p in &projects {
        app.api.toggle_project(p, "activate", &[&a]).await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer = {
        let (store, org, stop) = (app.store.clone(), app.org_id.clone(), stop.clone());
        let (a, b, projects) = (a.clone(), b.clone(), projects.clone());
        tokio::spawn(async move {
            let mut seen = 0u32;
            loop {
                let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                let snap = store
                    .trust_snapshot(&std::collections::HashSet::new())
                    .await
                    .expect("snapshot");
                let ours = |id: &str| snap.anchors.iter().find(|x| x.certificate_id == id);
                let covers = |id: &str, p: Option<&str>| {
                    ours(id).is_some_and(|x| match p {
                        None => x.org_wide,
                        Some(p) => x.projects.iter().any(|q| q == p),
                    })
                };
                assert!(
                    covers(&a, None) || covers(&b, None),
                    "organization left with neither CA at generation {}",
                    snap.generation
                );
                for p in &projects {
                    let live = snap.projects.contains(&(org.clone(), p.clone()));
                    assert!(
                        !live || covers(&a, Some(p)) || covers(&b, Some(p)),
                        "project {p} left with neither CA at generation {}",
                        snap.generation
                    );
                }
                seen += 1;
                if done {
                    return seen;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    let allowed = |r: &Answer, what: &str| {
        let s = r.status.as_u16();
        assert!(matches!(s, 200 | 400 | 404 | 409), "{what}: {s} {}", r.body);
        if s != 200 {
            r.err(
                s,
                r.body["error"]["code"].as_str(),
                r.body["error"]["param"].as_str(),
            );
        }
        s
    };
    let mut writers = Vec::new();
    for (i, (from, to)) in [(&a, &b), (&b, &a), (&a, &b)].into_iter().enumerate() {
        let (api, from, to) = (app.api.clone(), from.clone(), to.clone());
        writers.push(tokio::spawn(async move {
            let mut ok = 0;
            for round in 0..12 {
                let retire = (round + i) % 2 == 0;
                let r = rotate(&api, &from, &to, Some(retire)).await;
                if allowed(&r, "rotate") == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    {
        let (api, a, b, projects) = (app.api.clone(), a.clone(), b.clone(), projects.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..12usize {
                let id = if round % 2 == 0 { &a } else { &b };
                let p = &projects[round % projects.len()];
                let r = api
                    .post(
                        &format!("/organization/projects/{p}/certificates/activate"),
                        json!({"certificate_ids": [id]}),
                    )
                    .await;
                allowed(&r, "activate");
                let r = api.delete(&format!("{CERTS}/{id}")).await;
                allowed(&r, "delete");
                if round == 6 {
                    let r = api
                        .post(
                            &format!("/organization/projects/{}/archive", projects[2]),
                            json!({}),
                        )
                        .await;
                    allowed(&r, "archive");
                }
            }
            0
        }));
    }
    let mut rotated = 0;
    for w in writers {
        rotated += w.await.expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = observer
        .await
        .expect("the invariant held in every observed state");
    assert!(
        rotated > 0,
        "some rotations went through (else this tests nothing)"
    );
    assert!(seen > 1, "the observer saw states while writers ran");
}
