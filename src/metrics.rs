//! Prometheus metrics (decisions.md D40): one [`Metrics`] per `serve` or `gateway` instance, its
//! HTTP middleware, and the plain-HTTP listener that serves `/metrics` beside `/healthz` and
//! `/readyz`.
//!
//! Each instance owns its registry (prometheus-client): nothing is global, so tests run several
//! servers and gateways in one process and each scrape shows only its own traffic. The registry
//! is fixed once built; the role adds its own families while building it (see
//! [`Metrics::new`]), so a new family is a field and one `register` line in the role's struct
//! (`serve::ServeMetrics`, `gateway::metrics::GatewayMetrics`).
//!
//! Values that live elsewhere (database up, expiry of every CA, the trust generation) are read
//! when scraped, by the `refresh` the role hands to [`listener_router`].
//!
//! Invariant: label values are bounded sets. `route` is a route template (never a raw path),
//! `method` one of the standard methods or `other`, `status` a status code.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::runtime::{ConnectionLimits, ConnectionSlots, TcpIncoming};

/// The `route` of a request no route matched (the API's 404 fallback).
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds of the request-duration buckets, in seconds (`+Inf` is implicit).
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Longest a scrape waits for the database; past it the values read last are shown.
const SCRAPE_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Which process the metrics belong to: the `role` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Serve,
    Gateway,
    Authz,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Gateway => "gateway",
            Role::Authz => "authz",
        }
    }
}

/// Where a request's `route` label comes from.
#[derive(Debug, Clone, Copy)]
pub enum RouteLabel {
    /// The template of the route that matched (axum's `MatchedPath`), else [`UNMATCHED`].
    Matched,
    /// The same value for every request (the gateway's `proxy`).
    Fixed(&'static str),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    role: &'static str,
    route: RouteName,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    role: &'static str,
    route: RouteName,
    method: &'static str,
}

/// A `route` label value without a copy per request: axum's `MatchedPath` (a shared string)
/// or a fixed name.
#[derive(Debug, Clone)]
enum RouteName {
    Matched(MatchedPath),
    Fixed(&'static str),
}

impl RouteName {
    fn as_str(&self) -> &str {
        match self {
            RouteName::Matched(path) => path.as_str(),
            RouteName::Fixed(name) => name,
        }
    }
}

impl PartialEq for RouteName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteName {}

impl std::hash::Hash for RouteName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl prometheus_client::encoding::EncodeLabelValue for RouteName {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        prometheus_client::encoding::EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// One process's metrics: the registry, the HTTP families both roles have, and
/// `certgate_database_up`.
pub struct Metrics {
    registry: Registry,
    role: Role,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    database_up: Gauge,
    /// One scrape at a time: a refresh replaces whole families before they are encoded.
    scrape: tokio::sync::Mutex<()>,
}

impl Metrics {
    /// The metrics of one `role` process. `register` adds the role's own families to the same
    /// registry (prefixed `certgate_`) and returns the handles the role records with.
    pub fn new<T>(role: Role, register: impl FnOnce(&mut Registry) -> T) -> (Arc<Metrics>, T) {
        let mut registry = Registry::with_prefix("certgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let durations =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response head, by route template and method",
            durations.clone(),
        );
        let database_up = Gauge::default();
        registry.register(
            "database_up",
            "1 when the database answered at the last look, else 0",
            database_up.clone(),
        );
        let extra = register(&mut registry);
        let metrics = Metrics {
            registry,
            role,
            requests,
            durations,
            database_up,
            scrape: tokio::sync::Mutex::new(()),
        };
        (Arc::new(metrics), extra)
    }

    /// `router` with every request it answers counted and timed. The layer wraps each route
    /// (and the fallback), so it sees the template of the route that matched.
    pub fn instrument(self: &Arc<Self>, router: Router, route: RouteLabel) -> Router {
        router.layer(Record {
            metrics: self.clone(),
            route,
        })
    }

    pub fn set_database_up(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }

    /// The registry in Prometheus' text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    fn observe(&self, route: RouteName, method: &'static str, status: StatusCode, took: Duration) {
        let role = self.role.label();
        self.durations
            .get_or_create(&DurationLabels {
                role,
                route: route.clone(),
                method,
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                role,
                route,
                method,
                status: status.as_u16(),
            })
            .inc();
    }
}

/// The layer [`Metrics::instrument`] adds: a plain tower layer (no boxing, no copies), since it
/// runs on every request.
#[derive(Clone)]
struct Record {
    metrics: Arc<Metrics>,
    route: RouteLabel,
}

impl<S> tower::Layer<S> for Record {
    type Service = RecordService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
struct RecordService<S> {
    inner: S,
    layer: Record,
}

impl<S> tower::Service<Request> for RecordService<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Recorded<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = match self.layer.route {
            RouteLabel::Matched => req
                .extensions()
                .get::<MatchedPath>()
                .map_or(RouteName::Fixed(UNMATCHED), |p| {
                    RouteName::Matched(p.clone())
                }),
            RouteLabel::Fixed(label) => RouteName::Fixed(label),
        };
        let method = method_label(req.method());
        Recorded {
            started: Instant::now(),
            inner: self.inner.call(req),
            pending: Some((self.layer.metrics.clone(), route, method)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response on its way: observed when its head is ready.
    struct Recorded<F> {
        #[pin]
        inner: F,
        pending: Option<(Arc<Metrics>, RouteName, &'static str)>,
        started: Instant,
    }
}

impl<F, E> Future for Recorded<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some((metrics, route, method))) = (&result, this.pending.take()) {
            metrics.observe(route, method, response.status(), this.started.elapsed());
        }
        std::task::Poll::Ready(result)
    }
}
/// The standard methods by name; anything else (a client may send any token) is `other`, so
/// clients cannot make new series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The metrics listener's routes: `health` (the role's `/healthz` and `/readyz`) plus
/// `/metrics`, which first awaits `refresh` (bounded; it updates the values read at scrape
/// time) and then encodes. No authentication: bind it where only the scraper reaches.
pub fn listener_router<F, Fut>(metrics: Arc<Metrics>, health: Router, refresh: F) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    health.route(
        "/metrics",
        get(move || {
            let (metrics, refresh) = (metrics.clone(), refresh.clone());
            async move {
                let _one_at_a_time = metrics.scrape.lock().await;
                if tokio::time::timeout(SCRAPE_READ_TIMEOUT, refresh())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "metrics scrape: reading current values timed out; showing the last ones"
                    );
                }
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.encode(),
                )
                    .into_response()
            }
        }),
    )
}

/// Bounds of the metrics listener: a scraper and a health checker, not the public.
fn listener_limits() -> ConnectionLimits {
    ConnectionLimits {
        max_connections: 64,
        ..ConnectionLimits::default()
    }
}

/// Binds `addr` now (so a taken port stops the start) and serves `router` on it in the
/// background, through the same bounded connection loop as the main listener, until
/// `shutdown` resolves.
pub async fn spawn_listener(
    addr: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?;
    let bound = listener.local_addr()?;
    let limits = listener_limits();
    tokio::spawn(crate::runtime::serve(
        TcpIncoming::new(listener, ConnectionSlots::new(limits.max_connections)),
        router,
        |_, _| None,
        limits,
        shutdown,
    ));
    tracing::info!(listen = %bound, "certgate metrics listening");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_follow_the_spec() {
        let (m, ()) = Metrics::new(Role::Serve, |_| ());
        m.observe(
            RouteName::Fixed("/v1/organization/certificates/{certificate_id}"),
            "GET",
            StatusCode::OK,
            Duration::from_millis(3),
        );
        m.set_database_up(true);
        let text = m.encode();
        assert!(
            text.contains(r#"certgate_http_requests_total{role="serve",route="/v1/organization/certificates/{certificate_id}",method="GET",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"certgate_http_request_duration_seconds_bucket{role="serve",route="/v1/organization/certificates/{certificate_id}",method="GET",le="0.005"} 1"#),
            "{text}"
        );
        assert!(text.contains("certgate_database_up 1"), "{text}");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "other");
    }
}
