//! `GET /api/poll?v=VERSION`: long-poll for browsers that cannot hold a
//! WebSocket. Answers at once with the latest snapshot when the client's
//! version differs from it (behind, or from before a restart), otherwise
//! waits up to the configured timeout for the next one and answers `204`
//! if none came.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;

#[derive(Debug, Deserialize)]
pub struct PollQuery {
    /// The last version the client has; absent or 0 for none.
    #[serde(default)]
    v: u64,
    /// Optional shorter wait, in seconds (capped by the server's limit).
    timeout: Option<u64>,
}

pub async fn poll(State(state): State<AppState>, Query(q): Query<PollQuery>) -> Response {
    let mut rx = state.frames.clone();
    let wait = q.timeout.map_or(state.poll_timeout, |s| {
        Duration::from_secs(s).min(state.poll_timeout)
    });
    let current = rx.borrow_and_update().clone();
    if current.version != q.v {
        return binary(&current);
    }
    tokio::select! {
        changed = rx.changed() => match changed {
            Ok(()) => binary(&rx.borrow_and_update().clone()),
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        },
        _ = tokio::time::sleep(wait) => StatusCode::NO_CONTENT.into_response(),
        _ = state.shutdown.cancelled() => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

fn binary(frame: &crate::encode::Frame) -> Response {
    let mut response = frame.binary.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-livemap-version", HeaderValue::from(frame.version));
    response
}
