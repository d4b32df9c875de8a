//! Every organization's Default project (decisions.md D6): made with the organization (and by the
//! migration for organizations that existed before), listed like any project, never modified
//! or archived.

use serde_json::{json, Value};
use sqlx::Row;

use crate::helpers::{backend_tests, db_tests, TestApp, TestDb};

backend_tests!(default_project_is_fixed);
db_tests!(migration_gives_existing_organizations_their_default_project);

async fn default_project_is_fixed(app: TestApp) {
    let listed = app.api.get("/organization/projects").await;
    let data = listed.ok()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1, "{}", listed.body);
    let default = data[0].clone();
    assert_eq!(default["name"], "Default project");
    assert_eq!(default["status"], "active");
    assert_eq!(default["object"], "organization.project");
    let id = default["id"].as_str().unwrap();
    let path = format!("/organization/projects/{id}");
    assert_eq!(app.api.get(&path).await.ok(), &default);

    let msg = app
        .api
        .post(&path, json!({"name": "Renamed"}))
        .await
        .err(400, Some("default_project_update"), None)
        .to_owned();
    assert!(msg.contains("default project"), "{msg}");
    app.api
        .post(&path, json!({"external_key_id": "kms"}))
        .await
        .err(400, Some("default_project_update"), None);
    app.api
        .post(&format!("{path}/archive"), json!({}))
        .await
        .err(400, Some("default_project_archive"), None);
    // Bad input is still refused as such (and nothing changes either way).
    app.api
        .post(&path, json!({"bogus": 1}))
        .await
        .err(400, None, Some("bogus"));
    assert_eq!(app.api.get(&path).await.ok(), &default);

    // Certificates can be activated for it like for any project.
    let cert = app.api.upload_new("For default").await;
    app.api.toggle_project(id, "activate", &[&cert]).await;
    let certs = app
        .api
        .get(&format!("/organization/projects/{id}/certificates"))
        .await;
    assert_eq!(certs.ok()["data"][0]["active"], true);
    // A new organization gets its own.
    let (_, other) = app.other_org().await;
    let theirs = other.get("/organization/projects").await;
    assert_eq!(theirs.ok()["data"][0]["name"], "Default project");
    assert_ne!(theirs.ok()["data"][0]["id"], Value::from(id));
}

/// A database made by the first schema, with an organization, upgraded by `Store::open`: the
/// organization gains its Default project and the `project.created` event (actor null).
async fn migration_gives_existing_organizations_their_default_project(db: TestDb) {
    use certgate::store::{Store, StoreOptions};
    use std::sync::Arc;
    sqlx::any::install_default_drivers();
    let tree = if db.url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    // Only the first migration, run by sqlx's migrator so that it is recorded as applied.
    let dir = tempfile::tempdir().unwrap();
    let first = std::fs::read_dir(format!("{}/migrations/{tree}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("0001_")
        })
        .unwrap();
    std::fs::copy(&first, dir.path().join(first.file_name().unwrap())).unwrap();
    let url = if tree == "sqlite" {
        format!("{}?mode=rwc", db.url)
    } else {
        db.url.clone()
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(dir.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO organizations (id, name, created_at, seq) VALUES ('org-old', 'Old', 1000, 3)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO projects (id, org_id, name, created_at, seq) VALUES ('proj_old', 'org-old', 'Legacy', 1000, 2)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = Store::open(
        &StoreOptions::new(&db.url),
        Arc::new(certgate::domain::SystemClock),
    )
    .await
    .unwrap();
    let org = certgate::domain::OrgId::parse("org-old").unwrap();
    let page = certgate::domain::PageRequest::default();
    let projects = store.list_projects(&org, &page, true).await.unwrap().items;
    let names: Vec<&str> = projects.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Legacy", "Default project"]);
    let default = projects[1].id.clone();
    let query = certgate::store::AuditQuery {
        limit: 100,
        ..Default::default()
    };
    let events = store.list_audit_events(&org, &query).await.unwrap().items;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.kind, "project.created");
    assert_eq!(e.actor_key, None);
    assert!(
        e.id.starts_with("audit_log-") && e.id.len() == "audit_log-".len() + 34,
        "{}",
        e.id
    );
    assert_eq!(
        e.project,
        Some((default.to_string(), "Default project".to_owned()))
    );
    let payload: Value = serde_json::from_str(&e.payload).unwrap();
    assert_eq!(
        payload,
        json!({"id": default.as_str(), "data": {"name": "Default project", "title": "Default project"}})
    );
    // It is the Default project: fixed like one made with an organization.
    let refused = store
        .archive_project(&org, &default, &certgate::domain::Actor::System)
        .await;
    assert!(
        matches!(
            refused,
            Err(certgate::store::StoreError::Rule(
                certgate::domain::DomainError::DefaultProjectArchive
            ))
        ),
        "{refused:?}"
    );
    // The organization's counter moved past the migration's event, so later events follow it.
    let seq: i64 = sqlx::query("SELECT seq FROM organizations WHERE id = 'org-old'")
        .fetch_one(&sqlx::AnyPool::connect(&url).await.unwrap())
        .await
        .unwrap()
        .try_get("seq")
        .unwrap();
    assert_eq!(seq, 4);
    store.close().await;
}
