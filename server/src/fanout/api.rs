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

/// `GET /sse`: one `snapshot` event, the JSON document, per tick.
pub async fn sse(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = state.frames.clone();
    let shutdown = state.shutdown.clone();
    let stream = async_stream(move |yield_| async move {
        rx.mark_changed();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = rx.changed() => if changed.is_err() { break },
            }
            let frame = rx.borrow_and_update().clone();
            // The JSON is one line (serde_json writes no newlines), as an
            // SSE data field requires.
            let data = String::from_utf8_lossy(&frame.json).into_owned();
            let event = Event::default()
                .event("snapshot")
                .id(frame.version.to_string())
                .data(data);
            if yield_.send(Ok(event)).await.is_err() {
                break;
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A tiny generator-to-stream adapter over a bounded channel of one, so a
/// slow SSE client holds back the producer instead of queueing events.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(f(tx));
    tokio_stream_from(rx)
}

fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok\n"
}
