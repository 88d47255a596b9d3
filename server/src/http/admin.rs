//! The admin listener, apart from the public one: `/metrics` for
//! Prometheus, `/healthz` (the process serves), `/readyz` (restored and
//! caught up within the lag limit).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::http::metrics::{Metrics, MetricsSources};

#[derive(Clone)]
struct Admin {
    sources: MetricsSources,
    metrics: Arc<Metrics>,
}

pub fn router(sources: MetricsSources) -> Router {
    let metrics = Arc::new(Metrics::new(&sources));
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Admin { sources, metrics })
}

async fn metrics_text(State(admin): State<Admin>) -> Response {
    match admin.metrics.render() {
        Ok(text) => (
            [(header::CONTENT_TYPE, crate::http::metrics::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        // Writing to a String does not fail, so this is a collector that
        // gave up; a scrape error is better than a silently partial page.
        Err(std::fmt::Error) => {
            tracing::error!("encoding /metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn readyz(State(Admin { sources: s, .. }): State<Admin>) -> impl IntoResponse {
    if let Some(why) = s.router.as_ref().and_then(|r| r.blocked_reason()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: routing stopped: {why}\n"),
        );
    }
    if s.health.ready() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: restoring or catching up\n".to_owned(),
        )
    }
}
