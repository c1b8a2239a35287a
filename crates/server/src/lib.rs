//! The HTTP API of twinledger (axum).
//!
//! [`router`] builds the routes over a [`twinledger_ledger::Ledger`]; [`serve`] runs them until a
//! shutdown future completes. The seed's two endpoints keep their paths and JSON shapes; every
//! error is a 4xx or 5xx status with `{"error": "..."}`.

mod auth;
mod body;
mod congruence;
mod dashboard;
mod error;
mod events;
mod metrics;
mod observe;
mod openapi;
mod routes;
mod v1;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use twinledger_core::json::Limits;
use twinledger_ledger::Ledger;

pub use auth::AuthPolicy;
pub use error::ApiError;
pub use metrics::{Metrics, UNMATCHED_ROUTE};
pub use observe::RequestId;
pub use openapi::{ErrorBody, document, document_json};

/// HTTP limits.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Bounds on the JSON documents accepted.
    pub json_limits: Limits,
    /// How long a write waits for its anchor before answering 503 (the record stays pending).
    pub anchor_wait: Duration,
    /// When API keys are required.
    pub auth: AuthPolicy,
    /// Key of the MAC on pagination cursors (kept per data directory, so cursors survive restarts).
    pub cursor_key: [u8; 32],
    /// Serve `POST /bench/noop`, which reads the body and does nothing else: the HTTP ceiling
    /// `twinledger bench` compares the real write path with.
    pub noop_route: bool,
    /// The registry `/metrics` shows, and the HTTP instruments.
    pub metrics: Metrics,
    /// Serve `/metrics` with the API (false when [`metrics_router`] serves it elsewhere).
    pub metrics_route: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            json_limits: Limits::default(),
            anchor_wait: Duration::from_secs(60),
            auth: AuthPolicy::default(),
            cursor_key: [0; 32],
            noop_route: false,
            metrics: Metrics::default(),
            metrics_route: true,
        }
    }
}

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    /// The ledger.
    pub ledger: Ledger,
    /// HTTP limits.
    pub config: std::sync::Arc<HttpConfig>,
    /// Turns true when the service stops: ends the event streams, which would otherwise keep
    /// the graceful shutdown waiting forever.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// The OpenAPI document, serialized once.
    pub document: axum::body::Bytes,
}

/// The routes, with body limit and request tracing; `closing` turns true when the service
/// stops.
pub fn router(
    ledger: Ledger,
    config: HttpConfig,
    closing: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let body_limit = config.body_limit;
    let (routes, doc) = routes::documented();
    let state = AppState {
        ledger,
        config: std::sync::Arc::new(config),
        closing,
        // Serializing the document cannot fail (it is built from plain maps and strings); an
        // empty object is served if it ever did, and the drift test would catch it.
        document: openapi::pretty(&doc)
            .map(axum::body::Bytes::from)
            .unwrap_or_else(|_| axum::body::Bytes::from_static(b"{}")),
    };
    let ui = utoipa_swagger_ui::SwaggerUi::new(openapi::UI_PATH).config(
        utoipa_swagger_ui::Config::from(openapi::DOCUMENT_PATH)
            // The default validator badge loads from validator.swagger.io.
            .validator_url("none")
            .try_it_out_enabled(true)
            .persist_authorization(true),
    );
    let mut routes = routes
        .merge(Router::from(ui))
        .merge(dashboard::routes())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed);
    if state.config.noop_route {
        routes = routes.route("/bench/noop", axum::routing::post(routes::noop));
    }
    if state.config.metrics_route {
        routes = routes.merge(metrics::routes());
    }
    routes
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // Outside the authentication, so refused requests are counted and logged too.
        .layer(observe::ObserveLayer::new(state.config.metrics.clone()))
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
}

/// `/metrics` alone, for a listener of its own: same keys and access rules as on the API.
pub fn metrics_router(
    ledger: Ledger,
    config: HttpConfig,
    closing: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let state = AppState {
        ledger,
        config: std::sync::Arc::new(config),
        closing,
        document: axum::body::Bytes::new(),
    };
    let observe = observe::ObserveLayer::new(state.config.metrics.clone());
    metrics::routes()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(observe)
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
