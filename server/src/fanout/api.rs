//! The JSON document and the Server-Sent Events stream.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::Stream;

use super::AppState;

/// `GET /api/snapshot`: the latest snapshot as JSON, already encoded.
pub async fn snapshot(State(state): State<AppState>) -> impl IntoResponse {
    let frame = state.frames.borrow().clone();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        frame.json.clone(),
    )
}

/// `GET /api/history`: the sale's per-minute history as JSON.
pub async fn history(State(state): State<AppState>) -> impl IntoResponse {
    let frame = state.frames.borrow().clone();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        frame.history.json(),
    )
}

/// `GET /sse`: one `snapshot` event, the JSON document, per tick: the
/// current one at once, then each new one. Like every transport it reads
/// the latest-value channel, so a slow client skips ahead.
pub async fn sse(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = state.frames.clone();
    rx.mark_changed();
    let stream =
        futures_util::stream::unfold((rx, state.shutdown), |(mut rx, shutdown)| async move {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                changed = rx.changed() => changed.ok()?,
            }
            let frame = rx.borrow_and_update().clone();
            // serde_json writes no newlines, so the JSON is one SSE data line.
            let data = String::from_utf8_lossy(&frame.json).into_owned();
            let event = Event::default()
                .event("snapshot")
                .id(frame.version.to_string())
                .data(data);
            Some((Ok(event), (rx, shutdown)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok\n"
}
