//! `GET /ws`: the binary WebSocket stream. On connect the client gets the
//! newest keyframe and the tick's delta, then every new frame by the
//! keyframe rule ([`super::to_send`]). It is expected to say nothing but
//! control frames; what it may send is capped.
//!
//! Frames go out without a copy: each is a small header written with the
//! shared `Bytes` body in one vectored write, so a connection holds no
//! write buffer at all (tungstenite would copy every body into a buffer of
//! its own per connection and keep its capacity). tungstenite still reads
//! what the client sends, through a read half whose writes go nowhere:
//! the few replies the protocol needs (pong, close) are written here.
//!
//! A client is dropped when a frame does not leave within the write
//! timeout (it stopped reading) or when it has not answered a ping for
//! [`SILENCE_LIMIT`] (it is gone). On shutdown every client is told
//! `1012 Service Restart`, and the page reconnects after a jittered pause.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body as HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::admission::{Refusal, Slot, Transport};
use super::listener::ClientAddr;
use super::serve::SocketHold;
use super::AppState;

/// A client never needs to send more than a small control message.
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
/// tungstenite reserves 128 KiB to read by default; a client sends only
/// pongs.
const READ_BUFFER: usize = 1024;
const PING_EVERY: Duration = Duration::from_secs(30);
/// A client that has said nothing (not even a pong) for this long is gone.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(75);
/// The close code that tells a client to reconnect (RFC 6455 registry).
const SERVICE_RESTART: u16 = 1012;

/// Frame opcodes (RFC 6455 §5.2) for what the server sends.
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    mut request: Request,
) -> Response {
    let accept = match accept_key(request.method(), request.headers()) {
        Ok(accept) => accept,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return (StatusCode::BAD_REQUEST, "connection cannot be upgraded").into_response();
    };
    if !state.admission.origin_allowed(request.headers()) {
        tracing::debug!(
            %peer,
            origin = ?request.headers().get(header::ORIGIN),
            "WebSocket refused: origin not allowed"
        );
        return Refusal::Origin.into_response();
    }
    // The socket's place under the caps: the HTTP connection gives the
    // socket up at the upgrade, and this task keeps it from then on.
    let hold = request.extensions_mut().remove::<SocketHold>();
    let slot = state.admission.track(Transport::Ws);
    tokio::spawn(async move {
        let _hold = hold;
        // A failed upgrade (the client left mid-handshake) frees the slot.
        if let Ok(upgraded) = on_upgrade.await {
            serve(TokioIo::new(upgraded), state, slot).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(HttpBody::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Checks an HTTP/1.1 WebSocket opening handshake (RFC 6455 §4.2.1) and
/// returns the `Sec-WebSocket-Accept` value, or why it is refused.
fn accept_key(method: &Method, headers: &HeaderMap) -> Result<String, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if method != Method::GET {
        return Err("a WebSocket handshake is a GET");
    }
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err("expected Connection: upgrade and Upgrade: websocket");
    }
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return Err("expected Sec-WebSocket-Version: 13");
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?;
    Ok(derive_accept_key(key.as_bytes()))
}

async fn serve<S>(io: S, state: AppState, slot: Slot)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read, write) = tokio::io::split(io);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE));
    let mut incoming =
        WebSocketStream::from_raw_socket(ReadOnly(read), Role::Server, Some(config)).await;
    let mut out = FrameWriter {
        io: write,
        timeout: state.write_timeout,
    };
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
                    match out.send(OP_BINARY, &body.raw).await {
                        Ok(()) => slot.stats().sent(body.raw.len()),
                        Err(Sent::Failed) => return,
                        Err(Sent::TimedOut) => return slow(),
                    }
                }
            }
            message = incoming.next() => match message {
                Some(Ok(Message::Ping(data))) => {
                    last_heard = Instant::now();
                    if out.send(OP_PONG, &data).await.is_err() {
                        return;
                    }
                }
                // A close is answered in kind; an error (an oversized
                // frame included) ends the connection.
                Some(Ok(Message::Close(_))) => {
                    let _ = out.send(OP_CLOSE, &Bytes::new()).await;
                    return;
                }
                Some(Err(_)) | None => return,
                // A pong or anything else shows the client is there.
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    return slow();
                }
                if out.send(OP_PING, &Bytes::new()).await.is_err() {
                    return slow();
                }
            }
            _ = state.shutdown.cancelled() => break,
        }
    }
    out.timeout = Duration::from_secs(1);
    let _ = out
        .send(
            OP_CLOSE,
            &close_payload(SERVICE_RESTART, "restarting, reconnect"),
        )
        .await;
}

enum Sent {
    Failed,
    TimedOut,
}

/// Writes whole server frames (unmasked, never fragmented) straight to the
/// socket.
struct FrameWriter<W> {
    io: W,
    timeout: Duration,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    async fn send(&mut self, opcode: u8, payload: &Bytes) -> Result<(), Sent> {
        let (head, len) = frame_header(opcode, payload.len());
        let mut frame = (&head[..len]).chain(payload.clone());
        let write = async {
            self.io.write_all_buf(&mut frame).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Sent::Failed),
            Err(_) => Err(Sent::TimedOut),
        }
    }
}

/// The header of a final, unmasked frame with `len` bytes of payload: the
/// bytes and how many of them are used.
fn frame_header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode;
    if len < 126 {
        head[1] = len as u8;
        (head, 2)
    } else if let Ok(len) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&len.to_be_bytes());
        (head, 4)
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (head, 10)
    }
}

fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload.into()
}

/// The read half of a connection, as tungstenite wants a whole stream:
/// what the library would write on its own (automatic pongs and close
/// replies) is discarded, because [`FrameWriter`] sends those.
struct ReadOnly<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for ReadOnly<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for ReadOnly<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        assert_eq!(
            frame_header(OP_BINARY, 0),
            ([0x82, 0, 0, 0, 0, 0, 0, 0, 0, 0], 2)
        );
        assert_eq!(frame_header(OP_PONG, 125).0[..2], [0x8A, 125]);
        assert_eq!(frame_header(OP_BINARY, 126).0[..4], [0x82, 126, 0, 126]);
        assert_eq!(
            frame_header(OP_BINARY, 65_535).0[..4],
            [0x82, 126, 0xFF, 0xFF]
        );
        let (head, len) = frame_header(OP_BINARY, 65_536);
        assert_eq!(len, 10);
        assert_eq!(head[..10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn handshakes_are_checked() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        assert!(accept_key(&Method::GET, &headers).is_err(), "no key");
        // The example of RFC 6455 §1.3.
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(
            accept_key(&Method::GET, &headers).as_deref(),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        assert!(accept_key(&Method::POST, &headers).is_err());
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert!(accept_key(&Method::GET, &headers).is_err());
    }
}
