//! The web console (decisions.md D43) through the real router on a real socket: the page and every
//! file of `console/` served from the binary with the right type and a strict CSP, its own
//! favicon, 404s for anything else, and nothing under `/console` that depends on who asks.
//!
//! SQLite only: the console's routes never touch the store, so a second backend would test
//! nothing more.

use reqwest::StatusCode;

use crate::helpers::{Db, TestApp};

async fn app() -> TestApp {
    TestApp::spawn(Db::Sqlite).await.expect("SQLite")
}

async fn get(url: &str, key: Option<&str>) -> reqwest::Response {
    let req = reqwest::Client::new().get(url);
    let req = match key {
        Some(k) => req.bearer_auth(k),
        None => req,
    };
    req.send().await.expect("GET")
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} on {}", res.url()))
        .to_str()
        .expect("ASCII header")
}

/// The policy every console answer carries: only this origin's files, no inline code, never
/// framed.
#[track_caller]
fn assert_strict_csp(res: &reqwest::Response) {
    let csp = header(res, "content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    for loose in [
        "unsafe-inline",
        "unsafe-eval",
        "http:",
        "https:",
        "*",
        "data:",
    ] {
        assert!(!csp.contains(loose), "{loose} in {csp}");
    }
    assert_eq!(header(res, "x-content-type-options"), "nosniff");
    assert_eq!(header(res, "x-frame-options"), "DENY");
}

/// The files of `console/`, as the repository has them.
fn console_files() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("console/")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    files.sort();
    files
}

fn content_type_of(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        other => panic!("console/{name}: no content type known for {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_page_needs_no_key_and_has_a_strict_csp() {
    let app = app().await;
    let res = get(&format!("{}/console", app.api.origin()), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
    assert_strict_csp(&res);
    let html = res.text().await.expect("body");
    // The accessible names decisions.md D43 promises, for the sign-in form (the views are built by
    // the script).
    assert!(html.contains(">Admin key</label>"), "{html}");
    assert!(html.contains("type=\"password\""), "{html}");
    assert!(html.contains(">Sign in</button>"), "{html}");
    assert!(html.contains("<script type=\"module\" src=\"/console/app.js\"></script>"));
    assert!(html.contains("rel=\"icon\" href=\"/console/favicon.svg\""));
    // Nothing the CSP would refuse: every script has a src, no style element or attribute.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script type=\"module\" src=").count()
    );
    assert!(!html.contains("<style") && !html.contains(" style=") && !html.contains("javascript:"));

    // `/console/` is the same page, by a redirect (relative URLs then resolve alike).
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{}/console/", app.api.origin()))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&res, "location"), "/console");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_serves_every_asset_from_the_binary_with_its_type() {
    let app = app().await;
    let files = console_files();
    assert!(files.iter().any(|(n, _)| n == "app.js"), "{files:?}");
    for (name, bytes) in &files {
        // The page itself answers at /console only.
        let url = if name == "index.html" {
            format!("{}/console", app.api.origin())
        } else {
            format!("{}/console/{name}", app.api.origin())
        };
        let res = get(&url, None).await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{url}: is console/{name} embedded?"
        );
        assert_eq!(header(&res, "content-type"), content_type_of(name), "{url}");
        assert_strict_csp(&res);
        let body = res.bytes().await.expect("body");
        assert_eq!(
            &body[..],
            &bytes[..],
            "{url} differs from console/{name}: rebuild?"
        );
        if std::path::Path::new(name)
            .extension()
            .is_some_and(|e| e == "js")
        {
            let text = String::from_utf8_lossy(bytes);
            // The key lives in sessionStorage only, and nothing is logged or parsed as HTML.
            for banned in [
                "localStorage",
                "document.cookie",
                "console.log",
                "console.info",
                "console.warn",
                "console.error",
                "console.debug",
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "new Function",
                "http://",
                "https://",
            ] {
                assert!(!text.contains(banned), "console/{name} uses {banned}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_favicon_is_served() {
    let app = app().await;
    for path in ["/console/favicon.svg", "/favicon.ico"] {
        let res = get(&format!("{}{path}", app.api.origin()), None).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&res, "content-type"), "image/svg+xml", "{path}");
        let body = res.text().await.expect("body");
        assert!(body.starts_with("<svg"), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_unknown_assets_are_404() {
    let app = app().await;
    for path in [
        "/console/nope.js",
        "/console/index.html",
        "/console/APP.JS",
        "/console/%2e%2e%2fCargo.toml",
        "/console/..%2fsrc%2fmain.rs",
        "/console/app.js%00",
    ] {
        let res = get(&format!("{}{path}", app.api.origin()), None).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert_strict_csp(&res);
        let body: serde_json::Value = res.json().await.expect("OpenAI error body");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }
    // Deeper paths are no route at all: the Admin API's own 404.
    let res = get(&format!("{}/console/a/app.js", app.api.origin()), None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_answers_leak_no_data_and_ignore_the_caller() {
    let app = app().await;
    let ca = app.api.upload_new("Console secret CA").await;
    let project = app.api.create_project("Console secret project").await;
    let origin = app.api.origin().to_owned();
    let mut paths = vec!["/console".to_owned(), "/favicon.ico".to_owned()];
    paths.extend(
        console_files()
            .into_iter()
            .filter(|(n, _)| n != "index.html")
            .map(|(n, _)| format!("/console/{n}")),
    );
    paths.push("/console/nope.js".to_owned());
    for path in &paths {
        let anonymous = get(&format!("{origin}{path}"), None).await;
        let status = anonymous.status();
        let anonymous = anonymous.bytes().await.expect("body");
        let keyed = get(&format!("{origin}{path}"), Some(&app.key)).await;
        assert_eq!(keyed.status(), status, "{path}");
        assert_eq!(
            keyed.bytes().await.expect("body"),
            anonymous,
            "{path} depends on the caller"
        );
        let text = String::from_utf8_lossy(&anonymous);
        for secret in [
            app.key.as_str(),
            app.org_id.as_str(),
            ca.as_str(),
            project.as_str(),
            "Console secret",
        ] {
            assert!(!text.contains(secret), "{path} shows {secret}");
        }
    }
    // A wrong key changes nothing either: the page is the same for everyone.
    let res = get(&format!("{origin}/console"), Some("sk-admin-wrong")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_routes_are_not_in_the_openapi_document() {
    let app = app().await;
    let doc: serde_json::Value = get(&format!("{}/openapi.json", app.api.origin()), None)
        .await
        .json()
        .await
        .expect("openapi.json");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(
        paths
            .keys()
            .all(|p| !p.starts_with("/console") && p != "/favicon.ico"),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
}
