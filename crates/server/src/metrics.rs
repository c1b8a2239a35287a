//! `GET /metrics`: the service's registry in the Prometheus text format, and the HTTP
//! instruments (requests and latency by route template and status, event-stream clients).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use twinledger_ledger::Scope;

use crate::auth::{MaybeCaller, check};
use crate::{ApiError, AppState};

/// The route label of a request no route matched: raw paths would give every scanner's probe
/// its own time series.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The registry a service exports, with the HTTP instruments in it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    sse_clients: Gauge,
}

impl Default for Metrics {
    /// A registry of its own holding only the HTTP instruments.
    fn default() -> Self {
        Self::new(Registry::default())
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 65 s: a read to a write waiting for its anchor on a slow chain.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    /// Registers the HTTP instruments into `registry` (which the program filled with the
    /// ledger's and the ingestion's) and holds it for `/metrics`.
    pub fn new(mut registry: Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let sse_clients = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to its headers, for event streams), by method, \
             route template and status",
            latency.clone(),
        );
        registry.register(
            "sse_clients",
            "Clients connected to the event stream (/v1/events)",
            sse_clients.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            sse_clients,
        }
    }

    /// The page Prometheus scrapes.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut page = String::new();
        prometheus_text::encode(&mut page, &self.registry)?;
        Ok(page)
    }

    /// Counts and times one answered request.
    pub(crate) fn observe(
        &self,
        method: &'static str,
        route: String,
        status: u16,
        took: std::time::Duration,
    ) {
        let labels = RequestLabels {
            method,
            route,
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts an event-stream client until the guard is dropped.
    pub(crate) fn sse_client(&self) -> SseClient {
        self.sse_clients.inc();
        SseClient(self.sse_clients.clone())
    }
}

/// One connected event-stream client.
pub(crate) struct SseClient(Gauge);

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// The service's metrics in the Prometheus text format (docs/operations.md). Served here, or
/// only on `metrics.listen` when that is set; the same keys and access rules as reads.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain", body = String),
    )
)]
pub(crate) async fn scrape(
    State(app): State<AppState>,
    caller: MaybeCaller,
) -> Result<Response, ApiError> {
    check(&caller, Scope::Read, None)?;
    let metrics = app.config.metrics.clone();
    // Legacy mode counts its pending records in the database while encoding.
    let page = tokio::task::spawn_blocking(move || metrics.encode())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        page,
    )
        .into_response())
}

/// The method as a label: the usual ones by name, any other as `other`.
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        // Arbitrary methods would be unbounded label values.
        _ => "other",
    }
}
