//! `GET /ws`: the binary WebSocket stream. On connect the client gets the
//! newest keyframe and the tick's delta, then every new frame by the
//! keyframe rule ([`super::to_send`]). It is expected to say nothing but
//! control frames; what it may send is capped.
//!
//! A client is dropped when a frame does not leave within the write
//! timeout (it stopped reading) or when it has not answered a ping for
//! [`SILENCE_LIMIT`] (it is gone). On shutdown every client is told
//! `1012 Service Restart`, and the page reconnects after a jittered pause.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};

use super::admission::{Refusal, Slot, Transport};
use super::listener::ClientAddr;
use super::AppState;

/// A client never needs to send more than a small control message.
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
/// Buffers per connection. tungstenite reserves 128 KiB to read by
/// default; a client sends only pongs. Writes go straight to the socket
/// (no write buffer), and at most one keyframe may wait in the library.
const READ_BUFFER: usize = 1024;
const MAX_WRITE_BUFFER: usize = 64 * 1024;
const PING_EVERY: Duration = Duration::from_secs(30);
/// A client that has said nothing (not even a pong) for this long is gone.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(75);
/// The close code that tells a client to reconnect (RFC 6455 registry).
const SERVICE_RESTART: u16 = 1012;

pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !state.admission.origin_allowed(&headers) {
        return Refusal::Origin.into_response();
    }
    let slot = match state.admission.admit(peer.ip(), Transport::Ws) {
        Ok(slot) => slot,
        Err(refusal) => return refusal.into_response(),
    };
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve(socket, state, slot))
}

async fn serve(socket: WebSocket, state: AppState, slot: Slot) {
    let (mut sink, mut stream) = socket.split();
    let mut rx = state.frames.clone();
    rx.mark_changed();
    let mut have_keyframe = 0u64;
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let slow = || {
        slot.stats().dropped_slow.fetch_add(1, Ordering::Relaxed);
    };
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let frame = rx.borrow_and_update().clone();
                for body in super::to_send(&frame, &mut have_keyframe) {
                    let send = sink.send(Message::Binary(body.raw.clone()));
                    match tokio::time::timeout(state.write_timeout, send).await {
                        Ok(Ok(())) => slot.stats().sent(body.raw.len()),
                        Ok(Err(_)) => return,
                        Err(_) => return slow(),
                    }
                }
            }
            incoming = stream.next() => match incoming {
                // Pings are answered by the library; a pong or anything
                // else shows the client is there. A close or an error (an
                // oversized frame included) ends the connection.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    return slow();
                }
                let send = sink.send(Message::Ping(bytes::Bytes::new()));
                if !matches!(tokio::time::timeout(state.write_timeout, send).await, Ok(Ok(()))) {
                    return slow();
                }
            }
            _ = state.shutdown.cancelled() => break,
        }
    }
    let bye = Message::Close(Some(CloseFrame {
        code: SERVICE_RESTART,
        reason: "restarting, reconnect".into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(bye)).await;
}
