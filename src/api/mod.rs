//! The Admin API's HTTP boundary (axum, JSON): handlers extract, call the store (which applies
//! the domain rules) or a use case shared with the CLI ([`crate::insight`]), and map results to
//! OpenAI's wire shapes. The gateway answers HTTP too (axum), but the two never call each other.

pub mod audit_logs;
pub mod cache;
pub mod certificates;
mod console;
pub mod dto;
pub mod error;
pub mod extract;
pub mod insight;
pub mod keys;
pub mod openapi;
pub mod projects;
pub mod requests;
pub mod revocations;

use axum::extract::State;
use axum::http::{HeaderName, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::store::Store;
use error::ApiError;

/// What every handler shares. Extractors clone it once or twice per request, so it is one
/// reference count: [`AppShared`] behind an `Arc`.
#[derive(Clone)]
pub struct AppState(std::sync::Arc<AppShared>);

pub struct AppShared {
    pub store: Store,
    pub pages: cache::PageCache,
    /// The check endpoint's trust index, kept while the trust generation is unchanged.
    pub trust: crate::insight::TrustCache,
}

impl std::ops::Deref for AppState {
    type Target = AppShared;

    fn deref(&self) -> &AppShared {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Store) -> Self {
        AppState::with_fetch_allow_private(store, false)
    }

    /// With `--fetch-allow-private`: the check endpoint's OCSP requests may reach
    /// non-public responders.
    pub fn with_fetch_allow_private(store: Store, allow_private: bool) -> Self {
        AppState(std::sync::Arc::new(AppShared {
            store,
            pages: cache::PageCache::default(),
            trust: crate::insight::TrustCache::new(allow_private),
        }))
    }
}

/// Every route `serve` answers, each registered with its OpenAPI description: `routes!`
/// takes a handler's `#[utoipa::path]` (method and path) along with the handler, so nothing is
/// served undescribed. A new endpoint is a handler with its `#[utoipa::path]` and one
/// `.routes(routes!(..))` line here.
fn routes() -> OpenApiRouter<AppState> {
    use certificates as certs;
    let v1 = OpenApiRouter::new()
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::get, keys::delete))
        .routes(routes!(audit_logs::list))
        .routes(routes!(certs::list, certs::upload))
        .routes(routes!(certs::activate))
        .routes(routes!(certs::deactivate))
        .routes(routes!(insight::check))
        .routes(routes!(insight::rotate))
        .routes(routes!(certs::get, certs::modify, certs::delete))
        .routes(routes!(
            revocations::get_crl,
            revocations::put_crl,
            revocations::delete_crl
        ))
        .routes(routes!(revocations::list, revocations::create))
        .routes(routes!(revocations::get, revocations::delete))
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::get, projects::modify))
        .routes(routes!(projects::archive))
        .routes(routes!(certs::list_for_project))
        .routes(routes!(certs::activate_for_project))
        .routes(routes!(certs::deactivate_for_project));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health_routes())
        .routes(routes!(openapi::document))
        .nest("/v1", v1)
}

/// The OpenAPI document of [`router`]: what `GET /openapi.json` serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().into_openapi();
    openapi::shared_responses(&mut doc);
    openapi::describe_details(&mut doc);
    doc
}

/// The whole Admin API. Tests and `certgate serve` build it through here.
pub fn router(state: AppState) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    let (router, _) = routes().split_for_parts();
    router
        .merge(console::router())
        .fallback(no_such_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            one_deadline,
        ))
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

/// Every request's waits for the database together end within one `--db-timeout`
/// (decisions.md D44): the key check and the read or write after it share one deadline.
async fn one_deadline(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    s.store.one_deadline(next.run(req)).await
}

/// `/healthz` and `/readyz`: on the API port, and on the metrics listener.
fn health_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// `health_routes` on their own, for the metrics listener.
pub fn health_router(state: AppState) -> Router {
    health_routes().split_for_parts().0.with_state(state)
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

/// The answer of `/healthz` and `/readyz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok` (alive), `ready`, or why not: `database_unavailable`.
    #[schema(schema_with = health_status)]
    status: &'static str,
}

fn health_status() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["ok", "ready", "database_unavailable"]))
        .build()
}

/// Liveness: the process answers. No key needed.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "Operations",
    operation_id = "healthz",
    responses((status = 200, description = "The process is alive.", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers. No key needed.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "Operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "The database answers.", body = Health),
        (status = 503, description = "The database does not answer.", body = Health)
    )
)]
async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(Health { status: "ready" }).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "database_unavailable",
            }),
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
