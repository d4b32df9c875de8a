//! `GET /console`: the web console (decisions.md D43), a single page of plain JavaScript modules
//! that talks only to `/v1` with the admin key the person types in (kept in `sessionStorage`).
//!
//! The assets are compiled into the binary (no CDN, nothing read from disk at run time) and
//! sent with a strict Content-Security-Policy: scripts, styles and images only from this
//! origin's files, no inline code, fetches only to this origin, never framed. The page carries
//! no data: everything it shows comes from API calls made with the key, so loading it needs no
//! key and reveals nothing.
//!
//! These routes are not part of the Admin API, so they stay out of `/openapi.json`: they are a
//! plain axum router merged beside the described one.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;

/// Only this origin's files; fetches only to this origin; no inline script or style (the page
/// has none); no `<form action>` anywhere else; never framed. `require-trusted-types-for`
/// makes any HTML-string sink (`innerHTML`) an error: the page builds its DOM node by node.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; manifest-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'; require-trusted-types-for 'script'";

/// One embedded file: its name under `/console/`, its content type, its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../console/", $name)),
        }
    };
}

/// Every file of `console/` (the integration test requests each file of the directory, so a
/// file added there and not here fails it).
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("certificates.js", JS),
    asset!("projects.js", JS),
    asset!("rotate.js", JS),
    asset!("check.js", JS),
    asset!("revocations.js", JS),
    asset!("audit.js", JS),
    asset!("keys.js", JS),
];

/// The console's routes, for [`super::router`] to merge beside the Admin API.
pub(super) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(|| async { asset("index.html") }))
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route("/console/{file}", get(file))
        // Browsers ask for it on their own; the page names its icon, but other tools do not.
        .route("/favicon.ico", get(|| async { asset("favicon.svg") }))
}

async fn file(Path(name): Path<String>) -> Response {
    // The page itself is `/console`; `index.html` is not a second address for it.
    if name == "index.html" {
        return not_found(&name);
    }
    asset(&name)
}

fn asset(name: &str) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return not_found(name);
    };
    let mut res = a.body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    // Small files, served from memory: always revalidated, so an upgrade is seen at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(res)
}

fn not_found(name: &str) -> Response {
    secure(
        ApiError::NoSuchRoute {
            method: "GET".to_owned(),
            path: format!("/console/{}", name.chars().take(64).collect::<String>()),
        }
        .into_response(),
    )
}

/// The headers every console answer carries, the 404 included.
fn secure(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}
