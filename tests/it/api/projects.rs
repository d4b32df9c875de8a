//! Projects: their lifecycle, and what archiving one does to its activations.

use serde_json::{json, Value};

use crate::api::ids;
use crate::helpers::{backend_tests, TestApp};

backend_tests!(projects_lifecycle, archived_projects,);

async fn projects_lifecycle(app: TestApp) {
    let p = app
        .api
        .post(
            "/organization/projects",
            json!({"name": "Alpha", "external_key_id": "kms-1"}),
        )
        .await;
    let proj = p.ok().clone();
    assert_eq!(proj["object"], "organization.project");
    assert!(proj["id"].as_str().unwrap().starts_with("proj_"));
    assert_eq!(proj["status"], "active");
    assert_eq!(proj["archived_at"], Value::Null);
    assert_eq!(proj["external_key_id"], "kms-1");
    let id = proj["id"].as_str().unwrap();
    assert_eq!(
        app.api
            .get(&format!("/organization/projects/{id}"))
            .await
            .ok(),
        &proj
    );
    let renamed = app
        .api
        .post(
            &format!("/organization/projects/{id}"),
            json!({"name": "Beta"}),
        )
        .await;
    assert_eq!(renamed.ok()["name"], "Beta");
    let with_res = app
        .api
        .post(
            "/organization/projects",
            json!({"name": "EU", "residency": "EU_STORAGE_PROCESSING"}),
        )
        .await;
    assert_eq!(with_res.ok()["residency"], "EU_STORAGE_PROCESSING");
    app.api
        .post(
            "/organization/projects",
            json!({"name": "X", "residency": "MARS"}),
        )
        .await
        .err(400, None, Some("residency"));
    app.api
        .post("/organization/projects", json!({}))
        .await
        .err(400, None, Some("name"));
    app.api
        .post("/organization/projects", json!({"name": ""}))
        .await
        .err(400, None, Some("name"));
    app.api
        .post("/organization/projects", json!({"name": "x", "bogus": 1}))
        .await
        .err(400, None, Some("bogus"));
    let third = app.api.create_project("Gamma").await;
    // The organization's Default project, made with it, is the oldest.
    let default = app.api.get("/organization/projects?limit=1").await;
    assert_eq!(default.ok()["data"][0]["name"], "Default project");
    let default = default.ok()["data"][0]["id"].as_str().unwrap().to_owned();
    let list = app
        .api
        .get(&format!("/organization/projects?limit=2&after={default}"))
        .await;
    assert_eq!(list.ok()["object"], "list");
    assert_eq!(
        ids(list.ok()),
        vec![id, with_res.ok()["id"].as_str().unwrap()],
        "oldest first"
    );
    assert_eq!(list.ok()["has_more"], true);
    let rest = app
        .api
        .get(&format!(
            "/organization/projects?limit=2&after={}",
            list.ok()["last_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ids(rest.ok()), vec![third.as_str()]);
    app.api
        .get("/organization/projects?after=proj_never")
        .await
        .err(400, None, Some("after"));
    app.api
        .get("/organization/projects?include_archived=maybe")
        .await
        .err(400, None, Some("include_archived"));
    app.api
        .get("/organization/projects/proj_nope")
        .await
        .err(404, None, None);
}

async fn archived_projects(app: TestApp) {
    let a = app.api.upload_new("A").await;
    let project = app.api.create_project("Old").await;
    app.api
        .post(
            &format!("/organization/projects/{project}/certificates/activate"),
            json!({"certificate_ids": [a]}),
        )
        .await
        .ok();
    let archived = app
        .api
        .post(
            &format!("/organization/projects/{project}/archive"),
            json!({}),
        )
        .await;
    assert_eq!(archived.ok()["status"], "archived");
    assert!(archived.ok()["archived_at"].as_i64().is_some());
    // Archiving again is a no-op that answers the same project.
    let again = app
        .api
        .post(
            &format!("/organization/projects/{project}/archive"),
            json!({}),
        )
        .await;
    assert_eq!(again.ok()["archived_at"], archived.ok()["archived_at"]);
    // Its activations ended: they no longer block a delete, and the list shows them inactive.
    let plist = app
        .api
        .get(&format!("/organization/projects/{project}/certificates"))
        .await;
    assert_eq!(plist.ok()["data"][0]["active"], false);
    app.api
        .post(
            &format!("/organization/projects/{project}/certificates/activate"),
            json!({"certificate_ids": [a]}),
        )
        .await
        .err(400, Some("project_archived"), None);
    let off = app
        .api
        .post(
            &format!("/organization/projects/{project}/certificates/deactivate"),
            json!({"certificate_ids": [a]}),
        )
        .await;
    assert_eq!(off.ok()["data"][0]["active"], false);
    app.api
        .post(
            &format!("/organization/projects/{project}"),
            json!({"name": "New"}),
        )
        .await
        .err(400, Some("project_archived"), None);
    assert_eq!(
        app.api
            .get(&format!("/organization/projects/{project}"))
            .await
            .ok()["name"],
        "Old"
    );
    // Hidden from the list unless asked for (the Default project stays).
    let listed = app.api.get("/organization/projects").await;
    let default = ids(listed.ok());
    assert_eq!(default.len(), 1, "{}", listed.body);
    assert_eq!(listed.ok()["data"][0]["name"], "Default project");
    let all = app
        .api
        .get("/organization/projects?include_archived=true")
        .await;
    assert_eq!(ids(all.ok()), vec![default[0], project.as_str()]);
    app.api
        .delete(&format!("/organization/certificates/{a}"))
        .await
        .ok();
}
