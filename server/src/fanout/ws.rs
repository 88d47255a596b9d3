//! `GET /ws`: the binary WebSocket stream. The server sends the current
//! snapshot on connect and then every new one; it expects nothing from the
//! client but control frames, and caps what a client may send.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

use super::AppState;

/// A client never needs to send more than a small control message.
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
/// A client whose socket does not take a frame within this is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        // tungstenite's default buffers are 128 KiB per connection; a
        // snapshot frame is a few KiB.
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .on_upgrade(move |socket| serve(socket, state))
}

async fn serve(socket: WebSocket, state: AppState) {
    let (mut sink, mut stream) = socket.split();
    let mut rx = state.frames.clone();
    rx.mark_changed();
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let bytes = rx.borrow_and_update().binary.clone();
                match tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Binary(bytes))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return,
                }
            }
            incoming = stream.next() => match incoming {
                // Pings are answered by the library; anything else a client
                // says is ignored, and a close or an error ends the stream.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = state.shutdown.cancelled() => break,
        }
    }
    let _ = sink.send(Message::Close(None)).await;
}
