//! The admin listener, apart from the public one: `/metrics` for
//! Prometheus, `/healthz` (the process serves), `/readyz` (restored and
//! caught up within the lag limit).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::MetricsSources;

pub fn router(sources: MetricsSources) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(sources)
}

async fn metrics(State(s): State<MetricsSources>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.render(),
    )
}

async fn readyz(State(s): State<MetricsSources>) -> impl IntoResponse {
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
