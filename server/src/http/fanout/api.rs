//! The JSON documents and the Server-Sent Events stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::admission::{Slot, Transport};
use super::AppState;

/// An SSE comment line every so often keeps proxies from closing a quiet
/// stream (there is always a tick, but a stale source may slow them).
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

/// `GET /api/snapshot`: the latest snapshot as JSON, encoded (and gzipped)
/// once per tick. Its `ETag` is the version, so a client that polls gets
/// `304 Not Modified` until the next tick.
pub async fn snapshot(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let frame = state.frames.borrow().clone();
    let etag = format!("\"{}\"", frame.version);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else if super::accepts_gzip(&headers) {
        let mut r = frame.json.gzip.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        frame.json.raw.clone().into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
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

/// `GET /sse`: the binary stream as Server-Sent Events: `keyframe` and
/// `delta` events whose data is the FlatBuffers frame in base64, by the
/// same keyframe rule as the WebSocket, each event encoded once per tick
/// for every client. On shutdown a `reconnect` event says to come back
/// after a pause.
pub async fn sse(State(state): State<AppState>) -> Response {
    let slot = state.admission.track(Transport::Sse);
    let mut rx = state.frames.clone();
    rx.mark_changed();
    let client = SseClient {
        rx,
        shutdown: state.shutdown,
        have_keyframe: 0,
        queued: Vec::new(),
        slot,
        done: false,
    };
    let stream = futures_util::stream::unfold(client, |mut c| async move {
        let next = c.next().await?;
        Some((Ok::<Bytes, Infallible>(next), c))
    });
    let mut response = HttpBody::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

struct SseClient {
    rx: tokio::sync::watch::Receiver<std::sync::Arc<crate::encode::Frame>>,
    shutdown: tokio_util::sync::CancellationToken,
    have_keyframe: u64,
    /// Events of the current tick not yet handed to the connection, last
    /// first.
    queued: Vec<Bytes>,
    slot: Slot,
    done: bool,
}

impl SseClient {
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(event) = self.queued.pop() {
            self.slot.stats().sent(event.len());
            return Some(event);
        }
        if self.done {
            return None;
        }
        tokio::select! {
            changed = self.rx.changed() => {
                if changed.is_err() {
                    return self.bye();
                }
                let frame = self.rx.borrow_and_update().clone();
                let mut events: Vec<Bytes> = super::to_send(&frame, &mut self.have_keyframe)
                    .map(|b| b.sse.clone())
                    .collect();
                events.reverse();
                self.queued = events;
                let first = self.queued.pop()?;
                self.slot.stats().sent(first.len());
                Some(first)
            }
            _ = tokio::time::sleep(SSE_KEEPALIVE) => Some(Bytes::from_static(b": keep-alive\n\n")),
            _ = self.shutdown.cancelled() => self.bye(),
        }
    }

    fn bye(&mut self) -> Option<Bytes> {
        self.done = true;
        let pause = super::admission::retry_after_secs() * 1000;
        Some(Bytes::from(format!(
            "event: reconnect\nretry: {pause}\ndata: restarting\n\n"
        )))
    }
}

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok\n"
}
