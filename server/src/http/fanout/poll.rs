//! `GET /api/poll?v=VERSION&k=KEYFRAME`: long-poll for browsers that cannot
//! hold a WebSocket, with the same frames. `v` is the last version the
//! client has, `k` the version of the last keyframe it has (both absent or
//! 0 for none).
//!
//! Answers at once when there is something new for the client: the newest
//! keyframe if `k` is not it, else this tick's delta if `v` is not it.
//! Otherwise it waits up to the configured timeout for the next tick and
//! answers `204` if none came. Bodies are gzipped once per tick for every
//! client that accepts it. A poll counts as a long-poll stream while it
//! waits.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::admission::{retry_after_secs, Transport};
use super::AppState;
use crate::encode::{Body, Frame};

#[derive(Debug, Deserialize)]
pub struct PollQuery {
    #[serde(default)]
    v: u64,
    #[serde(default)]
    k: u64,
    /// Optional shorter wait, in seconds (capped by the server's limit).
    timeout: Option<u64>,
}

pub async fn poll(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PollQuery>,
) -> Response {
    let slot = state.admission.track(Transport::LongPoll);
    let gzip = super::accepts_gzip(&headers);
    let mut rx = state.frames.clone();
    let wait = q.timeout.map_or(state.poll_timeout, |s| {
        Duration::from_secs(s).min(state.poll_timeout)
    });
    let current = rx.borrow_and_update().clone();
    let answer = |frame: &Frame| {
        let (body, version) = if q.k != frame.keyframe_version {
            (&frame.keyframe, frame.keyframe_version)
        } else {
            (&frame.delta, frame.version)
        };
        let response = binary(body, version, gzip);
        slot.stats().sent(if gzip {
            body.gzip.len()
        } else {
            body.raw.len()
        });
        response
    };
    if current.version != q.v || current.keyframe_version != q.k {
        return answer(&current);
    }
    tokio::select! {
        changed = rx.changed() => match changed {
            Ok(()) => answer(&rx.borrow_and_update().clone()),
            Err(_) => restarting(),
        },
        _ = tokio::time::sleep(wait) => StatusCode::NO_CONTENT.into_response(),
        _ = state.shutdown.cancelled() => restarting(),
    }
}

/// The server is going away: come back (here or elsewhere) after a
/// jittered pause, not all at once.
fn restarting() -> Response {
    let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs()));
    response
}

fn binary(body: &Body, version: u64, gzip: bool) -> Response {
    let bytes = if gzip {
        body.gzip.clone()
    } else {
        body.raw.clone()
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert("x-livemap-version", HeaderValue::from(version));
    response
}
