//! Certificate lists: pages, order, cursors, and their parameter errors.

use serde_json::Value;

use crate::api::ids;
use crate::helpers::{backend_tests, TestApp};
use crate::pki;

backend_tests!(
    list_pagination_and_order,
    cursor_survives_deletes,
    list_parameter_errors,
);

async fn list_pagination_and_order(app: TestApp) {
    // 25 certificates over 5 seconds: 5 per second, so ties on created_at are common.
    let mut created = Vec::new();
    for i in 0..25 {
        if i % 5 == 0 {
            app.clock.advance(1);
        }
        created.push(app.api.upload_new(&format!("Page {i}")).await);
    }
    let desc: Vec<String> = created.iter().rev().cloned().collect();
    let first = app.api.get("/organization/certificates").await;
    let page = first.ok();
    assert_eq!(page["object"], "list");
    assert_eq!(
        page["data"].as_array().unwrap().len(),
        20,
        "default limit 20"
    );
    assert_eq!(
        ids(page),
        desc[..20].iter().map(String::as_str).collect::<Vec<_>>(),
        "default order desc, ties stable"
    );
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], desc[0]);
    assert_eq!(page["last_id"], desc[19]);
    assert_eq!(page["data"][0]["object"], "organization.certificate");
    assert_eq!(page["data"][0]["active"], false);
    let next = app
        .api
        .get(&format!("/organization/certificates?after={}", desc[19]))
        .await;
    assert_eq!(
        ids(next.ok()),
        desc[20..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(next.ok()["has_more"], false);

    // Walk ascending, 7 at a time: every id once, in creation order; has_more exact.
    let mut walked = Vec::new();
    let mut after = String::new();
    loop {
        let q = if after.is_empty() {
            String::new()
        } else {
            format!("&after={after}")
        };
        let a = app
            .api
            .get(&format!("/organization/certificates?order=asc&limit=7{q}"))
            .await;
        let p = a.ok();
        walked.extend(ids(p).into_iter().map(str::to_owned));
        if p["has_more"] == false {
            break;
        }
        p["last_id"].as_str().unwrap().clone_into(&mut after);
    }
    assert_eq!(walked, created);
    // Exactly 25 with limit 25: has_more false.
    assert_eq!(
        app.api
            .get("/organization/certificates?limit=25")
            .await
            .ok()["has_more"],
        false
    );
    assert_eq!(
        app.api
            .get("/organization/certificates?limit=24")
            .await
            .ok()["has_more"],
        true
    );
}

async fn cursor_survives_deletes(app: TestApp) {
    let mut created = Vec::new();
    for i in 0..6 {
        created.push(app.api.upload_new(&format!("Cursor {i}")).await);
    }
    let page = app
        .api
        .get("/organization/certificates?order=asc&limit=2")
        .await;
    let last = page.ok()["last_id"].as_str().unwrap().to_owned();
    assert_eq!(last, created[1]);
    // Delete the cursor object and the next one; the walk continues from where they stood.
    app.api
        .delete(&format!("/organization/certificates/{}", created[1]))
        .await
        .ok();
    app.api
        .delete(&format!("/organization/certificates/{}", created[2]))
        .await
        .ok();
    let next = app
        .api
        .get(&format!(
            "/organization/certificates?order=asc&limit=2&after={last}"
        ))
        .await;
    assert_eq!(
        ids(next.ok()),
        vec![created[3].as_str(), created[4].as_str()]
    );
    // An empty list has null ids.
    let (_, other) = app.other_org().await;
    let empty = other.get("/organization/certificates").await;
    assert_eq!(empty.ok()["first_id"], Value::Null);
    assert_eq!(empty.ok()["last_id"], Value::Null);
    assert_eq!(empty.ok()["has_more"], false);
}

async fn list_parameter_errors(app: TestApp) {
    for q in [
        "limit=0",
        "limit=101",
        "limit=-5",
        "limit=abc",
        "limit=1e3",
        "limit=99999999999999999999",
    ] {
        app.api
            .get(&format!("/organization/certificates?{q}"))
            .await
            .err(400, None, Some("limit"));
    }
    app.api
        .get("/organization/certificates?order=sideways")
        .await
        .err(400, None, Some("order"));
    app.api
        .get("/organization/certificates?after=cert_neverissued")
        .await
        .err(400, None, Some("after"));
    let long = "x".repeat(5000);
    app.api
        .get(&format!("/organization/certificates?after={long}"))
        .await
        .err(400, None, Some("after"));
    // A cursor from another organization was never issued here.
    let (_, other) = app.other_org().await;
    let foreign_id = other.upload(&pki::ca("F").pem(), None).await.id();
    app.api
        .get(&format!("/organization/certificates?after={foreign_id}"))
        .await
        .err(400, None, Some("after"));
    app.api
        .get("/organization/certificates?limit=1&limit=100")
        .await
        .ok();
    let project = app.api.create_project("P").await;
    app.api
        .get(&format!(
            "/organization/projects/{project}/certificates?limit=0"
        ))
        .await
        .err(400, None, Some("limit"));
    app.api
        .get("/organization/certificates/cert_x?include[]=everything")
        .await
        .err(400, None, Some("include"));
}
