//! The Admin API's HTTP boundary: the only module that knows axum and JSON. Handlers extract,
//! call the store (which applies the domain rules), and map results to OpenAI's wire shapes.

pub mod audit_logs;
pub mod cache;
pub mod certificates;
pub mod dto;
pub mod error;
pub mod extract;
pub mod keys;
pub mod projects;

use axum::extract::State;
use axum::http::{HeaderName, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::store::Store;
use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub pages: std::sync::Arc<cache::PageCache>,
}

impl AppState {
    pub fn new(store: Store) -> Self {
        AppState {
            store,
            pages: std::sync::Arc::default(),
        }
    }
}

/// The whole Admin API. Tests and `certgate serve` build it through here.
pub fn router(state: AppState) -> Router {
    use certificates as certs;
    let v1 = Router::new()
        .route(
            "/organization/admin_api_keys",
            get(keys::list).post(keys::create),
        )
        .route(
            "/organization/admin_api_keys/{key_id}",
            get(keys::get).delete(keys::delete),
        )
        .route("/organization/audit_logs", get(audit_logs::list))
        .route(
            "/organization/certificates",
            get(certs::list).post(certs::upload),
        )
        .route("/organization/certificates/activate", post(certs::activate))
        .route(
            "/organization/certificates/deactivate",
            post(certs::deactivate),
        )
        .route(
            "/organization/certificates/{certificate_id}",
            get(certs::get).post(certs::modify).delete(certs::delete),
        )
        .route(
            "/organization/projects",
            get(projects::list).post(projects::create),
        )
        .route(
            "/organization/projects/{project_id}",
            get(projects::get).post(projects::modify),
        )
        .route(
            "/organization/projects/{project_id}/archive",
            post(projects::archive),
        )
        .route(
            "/organization/projects/{project_id}/certificates",
            get(certs::list_for_project),
        )
        .route(
            "/organization/projects/{project_id}/certificates/activate",
            post(certs::activate_for_project),
        )
        .route(
            "/organization/projects/{project_id}/certificates/deactivate",
            post(certs::deactivate_for_project),
        );
    let x_request_id = HeaderName::from_static("x-request-id");
    health_routes()
        .nest("/v1", v1)
        .fallback(no_such_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(x_request_id.clone(), RequestIds))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    // Path only: never headers (they carry keys) and never bodies.
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(x_request_id)),
        )
}

/// `/healthz` and `/readyz`: on the API port, and on the metrics listener.
fn health_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// [`health_routes`] on their own, for the metrics listener.
pub fn health_router(state: AppState) -> Router {
    health_routes().with_state(state)
}

/// `req_` + 32 hex digits, like OpenAI's request ids.
#[derive(Clone, Copy)]
struct RequestIds;

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _req: &Request<B>) -> Option<RequestId> {
        // A thread-local CSPRNG: no system call per request, unlike a v4 UUID.
        let id = format!("req_{:032x}", rand::random::<u128>());
        Some(RequestId::new(id.parse().ok()?))
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the database answers.
async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "database_unavailable"})),
        )
            .into_response(),
    }
}

async fn no_such_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoSuchRoute {
        method: method.to_string(),
        path: uri.path().chars().take(200).collect(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().chars().take(200).collect(),
    }
}
