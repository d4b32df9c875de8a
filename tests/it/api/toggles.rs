//! Activating and deactivating certificates for the organization and for projects, and the
//! delete guard that activations impose.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::api::ids;
use crate::helpers::{backend_tests, TestApp};

backend_tests!(
    organization_toggles,
    toggle_errors_are_atomic,
    project_scope_is_independent,
    delete_guard,
    concurrent_toggles_are_all_or_nothing,
    delete_racing_activate,
    trust_generation_moves_only_with_a_change,
);

async fn organization_toggles(app: TestApp) {
    let a = app.api.upload_new("A").await;
    let b = app.api.upload_new("B").await;
    let c = app.api.upload_new("C").await;
    let on = app
        .api
        .post(
            "/organization/certificates/activate",
            json!({"certificate_ids": [c, a]}),
        )
        .await;
    let body = on.ok();
    assert_eq!(body["object"], "organization.certificate.activation");
    assert_eq!(
        ids(body),
        vec![c.as_str(), a.as_str()],
        "items in request order"
    );
    for item in body["data"].as_array().unwrap() {
        assert_eq!(item["object"], "organization.certificate");
        assert_eq!(item["active"], true);
    }
    assert!(body.get("has_more").is_none());
    // Idempotent.
    app.api
        .post(
            "/organization/certificates/activate",
            json!({"certificate_ids": [a]}),
        )
        .await
        .ok();
    let list = app.api.get("/organization/certificates").await;
    let active: Vec<(String, bool)> = list.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap().to_owned(),
                x["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        active,
        vec![(c.clone(), true), (b.clone(), false), (a.clone(), true)]
    );
    // `data` is the 2025 docs' name for the same list.
    let off = app
        .api
        .post(
            "/organization/certificates/deactivate",
            json!({"data": [a, b]}),
        )
        .await;
    assert_eq!(off.ok()["object"], "organization.certificate.deactivation");
    // `all` holds for an empty list too: first make sure both items are there.
    assert_eq!(ids(off.ok()), vec![a.as_str(), b.as_str()]);
    assert!(off.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["active"] == false));
    app.api
        .post(
            "/organization/certificates/deactivate",
            json!({"certificate_ids": [a]}),
        )
        .await
        .ok();
    let after: Vec<bool> = app.api.get("/organization/certificates").await.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["active"].as_bool().unwrap())
        .collect();
    assert_eq!(after, vec![true, false, false]);
}

async fn toggle_errors_are_atomic(app: TestApp) {
    let a = app.api.upload_new("A").await;
    let path = "/organization/certificates/activate";
    let msg = app
        .api
        .post(path, json!({"certificate_ids": [a, "cert_missing"]}))
        .await
        .err(404, None, Some("certificate_ids"))
        .to_owned();
    assert!(msg.contains("cert_missing"), "{msg}");
    assert_eq!(
        app.api.get("/organization/certificates").await.ok()["data"][0]["active"],
        false,
        "nothing changed"
    );
    app.api
        .post(path, json!({"certificate_ids": []}))
        .await
        .err(400, None, Some("certificate_ids"));
    let eleven: Vec<String> = (0..11).map(|i| format!("cert_{i}")).collect();
    app.api
        .post(path, json!({"certificate_ids": eleven}))
        .await
        .err(400, None, Some("certificate_ids"));
    app.api
        .post(path, json!({"certificate_ids": [a, a]}))
        .await
        .err(400, None, Some("certificate_ids"));
    app.api
        .post(path, json!({}))
        .await
        .err(400, None, Some("certificate_ids"));
    app.api
        .post(path, json!({"certificate_ids": "cert_x"}))
        .await
        .err(400, None, Some("certificate_ids"));
    app.api
        .post(path, json!({"certificate_ids": [1, 2]}))
        .await
        .err(400, None, Some("certificate_ids"));
    app.api
        .post(path, json!({"certificate_ids": [a], "extra": true}))
        .await
        .err(400, None, Some("extra"));
    // A deleted certificate is unknown.
    let b = app.api.upload_new("B").await;
    app.api
        .delete(&format!("/organization/certificates/{b}"))
        .await
        .ok();
    app.api
        .post(path, json!({"certificate_ids": [a, b]}))
        .await
        .err(404, None, Some("certificate_ids"));
    assert_eq!(
        app.api.get("/organization/certificates").await.ok()["data"][0]["active"],
        false
    );
    // Project toggles are atomic too.
    let project = app.api.create_project("P").await;
    let ppath = format!("/organization/projects/{project}/certificates/activate");
    app.api
        .post(&ppath, json!({"certificate_ids": [a, "cert_nope"]}))
        .await
        .err(404, None, Some("certificate_ids"));
    let plist = app
        .api
        .get(&format!("/organization/projects/{project}/certificates"))
        .await;
    assert_eq!(plist.ok()["data"][0]["active"], false);
}

async fn project_scope_is_independent(app: TestApp) {
    let a = app.api.upload_new("A").await;
    let b = app.api.upload_new("B").await;
    let p1 = app.api.create_project("One").await;
    let p2 = app.api.create_project("Two").await;
    let list = |p: String| {
        let app = &app;
        async move {
            app.api
                .get(&format!("/organization/projects/{p}/certificates"))
                .await
                .ok()["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| {
                    assert_eq!(x["object"], "organization.project.certificate");
                    (
                        x["id"].as_str().unwrap().to_owned(),
                        x["active"].as_bool().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(p1.clone()).await,
        vec![(b.clone(), false), (a.clone(), false)],
        "every org certificate is listed"
    );
    let on = app
        .api
        .post(
            &format!("/organization/projects/{p1}/certificates/activate"),
            json!({"certificate_ids": [a]}),
        )
        .await;
    assert_eq!(
        on.ok()["object"],
        "organization.project.certificate.activation"
    );
    assert_eq!(
        on.ok()["data"][0]["object"],
        "organization.project.certificate"
    );
    assert_eq!(on.ok()["data"][0]["active"], true);
    assert_eq!(
        list(p1.clone()).await,
        vec![(b.clone(), false), (a.clone(), true)]
    );
    assert_eq!(
        list(p2.clone()).await,
        vec![(b.clone(), false), (a.clone(), false)]
    );
    // Organization scope is untouched by project scope, and the other way round.
    assert_eq!(
        app.api.get("/organization/certificates").await.ok()["data"][1]["active"],
        false
    );
    app.api
        .post(
            "/organization/certificates/activate",
            json!({"certificate_ids": [b]}),
        )
        .await
        .ok();
    assert_eq!(
        list(p1.clone()).await,
        vec![(b.clone(), false), (a.clone(), true)]
    );
    let off = app
        .api
        .post(
            &format!("/organization/projects/{p1}/certificates/deactivate"),
            json!({"certificate_ids": [a, b]}),
        )
        .await;
    assert_eq!(
        off.ok()["object"],
        "organization.project.certificate.deactivation"
    );
    assert_eq!(
        list(p1.clone()).await,
        vec![(b.clone(), false), (a.clone(), false)]
    );
    assert_eq!(
        app.api.get("/organization/certificates").await.ok()["data"][0]["active"],
        true
    );
    // Pagination on the project list.
    let page = app
        .api
        .get(&format!(
            "/organization/projects/{p1}/certificates?limit=1&order=asc"
        ))
        .await;
    assert_eq!(ids(page.ok()), vec![a.as_str()]);
    assert_eq!(page.ok()["has_more"], true);
    let page2 = app
        .api
        .get(&format!(
            "/organization/projects/{p1}/certificates?limit=1&order=asc&after={a}"
        ))
        .await;
    assert_eq!(ids(page2.ok()), vec![b.as_str()]);
    assert_eq!(page2.ok()["has_more"], false);
    // Unknown projects are 404 on every project route.
    for (m, p) in [
        (Method::GET, "/organization/projects/proj_nope/certificates"),
        (
            Method::POST,
            "/organization/projects/proj_nope/certificates/activate",
        ),
        (
            Method::POST,
            "/organization/projects/proj_nope/certificates/deactivate",
        ),
    ] {
        let body = (m == Method::POST).then(|| json!({"certificate_ids": [a]}));
        app.api.call(m, p, body).await.err(404, None, None);
    }
}

async fn delete_guard(app: TestApp) {
    let a = app.api.upload_new("A").await;
    let project = app.api.create_project("P").await;
    app.api
        .post(
            "/organization/certificates/activate",
            json!({"certificate_ids": [a]}),
        )
        .await
        .ok();
    app.api
        .post(
            &format!("/organization/projects/{project}/certificates/activate"),
            json!({"certificate_ids": [a]}),
        )
        .await
        .ok();
    let path = format!("/organization/certificates/{a}");
    let msg = app
        .api
        .delete(&path)
        .await
        .err(409, Some("certificate_in_use"), None)
        .to_owned();
    assert!(msg.contains(&app.org_id) && msg.contains(&project), "{msg}");
    app.api
        .post(
            "/organization/certificates/deactivate",
            json!({"certificate_ids": [a]}),
        )
        .await
        .ok();
    let msg = app
        .api
        .delete(&path)
        .await
        .err(409, Some("certificate_in_use"), None)
        .to_owned();
    assert!(
        !msg.contains(&app.org_id) && msg.contains(&project),
        "{msg}"
    );
    assert_eq!(
        app.api.get(&path).await.ok()["id"],
        a,
        "a refused delete leaves it in place"
    );
    app.api
        .post(
            &format!("/organization/projects/{project}/certificates/deactivate"),
            json!({"certificate_ids": [a]}),
        )
        .await
        .ok();
    let gone = app.api.delete(&path).await;
    assert_eq!(
        gone.ok(),
        &json!({"object": "certificate.deleted", "id": a})
    );
    app.api.get(&path).await.err(404, None, None);
    app.api.delete(&path).await.err(404, None, None);
    assert!(app.api.all_ids().await.is_empty());
}

async fn concurrent_toggles_are_all_or_nothing(app: TestApp) {
    let mut ten = Vec::new();
    for i in 0..10 {
        ten.push(app.api.upload_new(&format!("T{i}")).await);
    }
    let mut tasks = Vec::new();
    for i in 0..40 {
        let api = app.api.clone();
        let mut ids = ten.clone();
        ids.rotate_left(i % 10);
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                "/organization/certificates/activate"
            } else {
                "/organization/certificates/deactivate"
            };
            api.post(path, json!({"certificate_ids": ids})).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let states: Vec<bool> = app.api.get("/organization/certificates").await.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["active"].as_bool().unwrap())
        .collect();
    assert_eq!(states.len(), 10);
    assert!(
        states.iter().all(|s| *s == states[0]),
        "all ten end in one state: {states:?}"
    );
}

async fn delete_racing_activate(app: TestApp) {
    for round in 0..10 {
        let id = app.api.upload_new(&format!("Race {round}")).await;
        let path = format!("/organization/certificates/{id}");
        let (d, a) = tokio::join!(
            app.api.delete(&path),
            app.api.post(
                "/organization/certificates/activate",
                json!({"certificate_ids": [id]})
            ),
        );
        let (d, a) = (d.status.as_u16(), a.status.as_u16());
        assert!(
            !(d == 200 && a == 200),
            "delete and activate both succeeded"
        );
        match (d, a) {
            (200, 404) => {
                app.api
                    .get(&format!("/organization/certificates/{id}"))
                    .await
                    .err(404, None, None);
            }
            (409, 200) => {
                assert_eq!(
                    app.api
                        .get(&format!("/organization/certificates/{id}"))
                        .await
                        .ok()["id"],
                    id
                );
                app.api
                    .post(
                        "/organization/certificates/deactivate",
                        json!({"certificate_ids": [id]}),
                    )
                    .await
                    .ok();
                app.api
                    .delete(&format!("/organization/certificates/{id}"))
                    .await
                    .ok();
            }
            other => panic!("unexpected pair {other:?}"),
        }
    }
}

/// Gateways reload when the trust generation moves. A toggle moves it exactly when it changed
/// who may connect: a no-op (already active, already inactive) leaves it where it was, in
/// either scope (on SQLite the bump is a statement conditioned on the change's row count).
async fn trust_generation_moves_only_with_a_change(app: TestApp) {
    let a = app.api.upload_new("A").await;
    let project = app.api.create_project("Generation").await;
    let generation = || async { app.store.trust_generation().await.unwrap() };
    let toggle = |path: String, on: bool| {
        let api = app.api.clone();
        let a = a.clone();
        async move {
            let verb = if on { "activate" } else { "deactivate" };
            api.post(&format!("{path}/{verb}"), json!({"certificate_ids": [a]}))
                .await
                .ok();
        }
    };
    for path in [
        "/organization/certificates".to_owned(),
        format!("/organization/projects/{project}/certificates"),
    ] {
        for (on, moves) in [(true, true), (true, false), (false, true), (false, false)] {
            let before = generation().await;
            toggle(path.clone(), on).await;
            let after = generation().await;
            assert_eq!(
                after > before,
                moves,
                "{path} {}: generation {before} -> {after}",
                if on { "activate" } else { "deactivate" }
            );
        }
    }
}
