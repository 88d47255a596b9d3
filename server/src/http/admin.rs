//! The admin listener, apart from the public one: `/metrics` for
//! Prometheus, `/healthz` (the process serves), `/readyz` (restored and
//! caught up within the lag limit), `/anomalies` (the operators' signals,
//! as JSON).

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
        .route("/anomalies", get(anomalies))
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

/// The operators' signals as the last closed minute judged them: what
/// the sale's history expects of each, what came, and whether it is
/// flagged (docs/OPERATIONS.md). Never on the public listener.
async fn anomalies(State(admin): State<Admin>) -> impl IntoResponse {
    let minute_ms = livemap_engine::aggregate::MINUTE_MS;
    let signals: Vec<serde_json::Value> = admin
        .sources
        .ticks
        .anomalies
        .lock()
        .iter()
        .map(|s| {
            serde_json::json!({
                "signal": s.kind.as_str(),
                "minute_start_ms": s.minute * minute_ms,
                "observed_per_minute": s.observed,
                "expected_per_minute": s.expected,
                "ratio": s.ratio(),
                "flagged": s.flagged,
                "since_ms": s.since_minute.map(|m| m * minute_ms),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "signals": signals }))
}
