//! The CA upload path, whole: `POST /organization/certificates` through the real Admin API
//! router (its body extractor, the name and client-filter rules, `x509::parse_ca_pem`'s rules,
//! then the store's duplicate and 50-certificate rules in the writing transaction) on a
//! temporary SQLite database. Input: `[flags][certificate]`: flag bit 0 says whether the rest
//! is DER (sent wrapped in a PEM block) or the PEM text itself; bits 1–2 pick the name (none,
//! ordinary, too long, with a NUL), bits 3–4 the client filter (none, valid, not CEL, over
//! 4 KiB).
//!
//! Properties beside no panic:
//! - a refusal never changes the database (every table but the admin keys', row for row),
//!   and is a 4xx in OpenAI's error shape; an upload that succeeds adds exactly one
//!   certificate;
//! - `parse_ca_pem` is deterministic; a PEM it accepts, printed again as a canonical PEM block,
//!   is accepted as the same certificate; what `include[]=details` shows can be made of it.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use certgate::domain::ManualClock;
use certgate::store::{Store, StoreOptions};
use certgate_fuzz::{runtime, NOW};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

struct App {
    router: Router,
    key: String,
    db: PathBuf,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("certgate-fuzz-upload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let db = dir.join("certgate.db");
        runtime().block_on(async {
            let options = StoreOptions::new(format!("sqlite://{}", db.display()));
            let store = Store::open(&options, ManualClock::new(NOW))
                .await
                .expect("the store");
            let (_, key) = store
                .create_organization("Fuzz Org")
                .await
                .expect("an organization");
            App {
                router: certgate::api::router(certgate::api::AppState::new(store)),
                key: key.value.expose().to_owned(),
                db,
            }
        })
    })
}

/// Every row of every table but the admin keys' (whose last use a request may record), read
/// on a connection of its own (each read is a new transaction: it sees every commit).
fn fingerprint(db: &PathBuf) -> (usize, Vec<String>) {
    static READER: OnceLock<std::sync::Mutex<rusqlite::Connection>> = OnceLock::new();
    let conn = READER
        .get_or_init(|| {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
            std::sync::Mutex::new(
                rusqlite::Connection::open_with_flags(db, flags).expect("read the database"),
            )
        })
        .lock()
        .expect("the reader");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'admin_keys' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("the tables");
    tables.retain(|t| !t.starts_with("sqlite_") && !t.starts_with("_sqlx"));
    let mut rows = Vec::new();
    let mut certificates = 0;
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let columns = stmt.column_count();
        let mut q = stmt.query([]).expect("query");
        while let Some(row) = q.next().expect("a row") {
            let values: Vec<String> = (0..columns)
                .map(|i| format!("{:?}", row.get_ref(i).expect("a value")))
                .collect();
            rows.push(format!("{table}: {}", values.join(", ")));
            if table == "certificates" {
                certificates += 1;
            }
        }
    }
    rows.sort_unstable();
    (certificates, rows)
}

fn post(body: serde_json::Value) -> (StatusCode, serde_json::Value) {
    let app = app();
    runtime().block_on(async {
        let req = Request::post("/v1/organization/certificates")
            .header("authorization", format!("Bearer {}", app.key))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("a request");
        let res = app.router.clone().oneshot(req).await.expect("an answer");
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("the body");
        (
            status,
            serde_json::from_slice(&bytes).expect("a JSON answer"),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = if flags & 1 == 0 {
        pem::encode(&pem::Pem::new("CERTIFICATE", rest.to_vec()))
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };

    let parsed = certgate::x509::parse_ca_pem(&text, NOW);
    assert_eq!(
        parsed,
        certgate::x509::parse_ca_pem(&text, NOW),
        "not deterministic"
    );
    if let Ok(ca) = &parsed {
        let der = pem::parse(&text)
            .expect("accepted, so one PEM block")
            .into_contents();
        let again = pem::encode(&pem::Pem::new("CERTIFICATE", der));
        assert_eq!(certgate::x509::parse_ca_pem(&again, NOW).as_ref(), Ok(ca));
        certgate::x509::certificate_details(&text).expect("the details of an accepted CA");
    }

    let mut body = serde_json::json!({ "certificate": text });
    match (flags >> 1) & 3 {
        0 => {}
        1 => body["name"] = "Fuzz CA".into(),
        2 => body["name"] = "n".repeat(300).into(),
        _ => body["name"] = "a\u{0}b".into(),
    }
    match (flags >> 3) & 3 {
        0 => {}
        1 => body["client_filter"] = r#"cert.subject_cn.startsWith("svc-")"#.into(),
        2 => body["client_filter"] = "cert.subject_cn ==".into(),
        _ => body["client_filter"] = format!("{}true", "true && ".repeat(600)).into(),
    }

    let db = &app().db;
    let before = fingerprint(db);
    let (status, answer) = post(body);
    let after = fingerprint(db);
    if status.is_success() {
        assert!(
            parsed.is_ok(),
            "stored a certificate parse_ca_pem refuses: {answer}"
        );
        assert_eq!(
            after.0,
            before.0 + 1,
            "a successful upload adds one certificate"
        );
    } else {
        assert!(status.is_client_error(), "{status}: {answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(before, after, "a refusal ({answer}) changed the database");
    }
});
