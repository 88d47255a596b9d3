//! The public accept loop. Every socket counts against the caps from the
//! moment it is accepted, before a byte of it is read: a socket past a cap
//! is answered `503` (or `429`) and closed at once, and an admitted one
//! holds its [`SocketPermit`] for as long as it lives, through a WebSocket
//! upgrade too (the permit travels in the request's extensions, and the
//! WebSocket's task keeps it). So no socket, however idle or slow, is held
//! outside the caps, and the caps sit below the open-file limit: a flood
//! of sockets fills the caps, not the descriptor table, and the admin
//! listener keeps answering.
//!
//! HTTP is hyper's HTTP/1.1 with bounds a hostile client cannot stretch: a
//! socket's first byte must come within the header timeout of its accept,
//! and a request's whole head within the header timeout of its first byte
//! (or of the previous response, so a keep-alive socket idle between
//! requests is closed after it too); a head is at most [`MAX_HEAD`] bytes.
//! Until its first byte a socket costs no more than its task: hyper, which
//! takes 16 KiB of buffers per connection up front, gets it only then.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::admission::{retry_after_secs, Admission, Refusal, SocketPermit};
use super::listener::{ClientAddr, PublicListener, TimeoutIo};

/// Most bytes of a request head (and of hyper's read buffer). The page's
/// requests are a few hundred bytes; hyper's default would let each of
/// thousands of sockets hold 400 KiB. hyper's minimum is 8 KiB.
pub const MAX_HEAD: usize = 16 * 1024;

/// Refused sockets that may linger at once, reading what the client sent
/// so that the close is a clean FIN rather than a reset that could destroy
/// the `503` before the client reads it. Past this many (a flood), refused
/// sockets are closed at once. Each holds a descriptor for up to
/// [`LINGER`]: these come out of the descriptors kept back from clients.
const REFUSALS_LINGERING: usize = 64;
/// Longest a refused socket lingers.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read (and dropped) from a refused socket.
const LINGER_BYTES: usize = 16 * 1024;

/// Descriptors kept back from client sockets for everything else: the
/// admin listener's requests, the Kafka client's sockets, the state
/// directory, threads, and refused sockets that linger.
pub const FILES_KEPT_BACK: u64 = 256;

/// How many client sockets fit under an open-file limit of `open_files`
/// beside [`FILES_KEPT_BACK`]: at most `max_connections`. Under a tiny
/// limit, half of it.
pub fn sockets_within(max_connections: usize, open_files: u64) -> usize {
    let usable = if open_files > 2 * FILES_KEPT_BACK {
        open_files - FILES_KEPT_BACK
    } else {
        open_files / 2
    };
    usize::try_from(usable)
        .unwrap_or(usize::MAX)
        .min(max_connections)
}

/// What the accept loop needs besides the listener and the app.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// A socket's first byte must come within this of its accept, and a
    /// request's whole head within this of its first byte or of the
    /// previous response.
    pub header_timeout: Duration,
    /// A socket whose writes are blocked for this long is cut off (see
    /// `listener.rs`).
    pub write_timeout: Duration,
    /// On shutdown, the longest the loop waits for connections to end
    /// before it drops them.
    pub drain: Duration,
}

/// Holds an admitted socket's place under the caps; every request on the
/// socket carries a clone in its extensions, so that a handler that takes
/// the socket over (a WebSocket upgrade) keeps the place for as long as it
/// uses the socket.
#[derive(Debug, Clone)]
pub struct SocketHold {
    _permit: Arc<SocketPermit>,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops
/// accepting, tells every connection to finish its request and close (the
/// app's streams end on their own cancel token), and waits for them at
/// most `config.drain`.
pub async fn serve(
    mut listener: PublicListener,
    app: Router,
    admission: Arc<Admission>,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(MAX_HEAD);
    let draining = CancellationToken::new();
    let lingering = Arc::new(Semaphore::new(REFUSALS_LINGERING));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reaps finished connections, so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        match admission.admit_socket(peer.ip()) {
            Ok(permit) => {
                let connection = Connection {
                    http: http.clone(),
                    header_timeout: config.header_timeout,
                    app: app.clone(),
                    admission: admission.clone(),
                    write_timeout: config.write_timeout,
                    draining: draining.clone(),
                };
                connections.spawn(connection.run(stream, peer, permit));
            }
            Err(refusal) => refuse(stream, refusal, &lingering),
        }
    }
    // New sockets are refused by the kernel from here on.
    drop(listener);
    draining.cancel();
    let drained = tokio::time::timeout(config.drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            drain = ?config.drain,
            "connections still open after the drain: closing them"
        );
        connections.shutdown().await;
    }
}

/// What one admitted socket's task needs.
struct Connection {
    http: http1::Builder,
    header_timeout: Duration,
    app: Router,
    admission: Arc<Admission>,
    write_timeout: Duration,
    draining: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr, permit: SocketPermit) {
        // Peeking waits for a byte that is really there (`readable` says yes
        // to every new socket at first); an end of stream or an error ends
        // the wait too, and hyper then sees it.
        let mut first_byte = [0u8; 1];
        tokio::select! {
            first = tokio::time::timeout(self.header_timeout, stream.peek(&mut first_byte)) => {
                if first.is_err() {
                    self.header_timed_out();
                    return;
                }
            }
            () = self.draining.cancelled() => return,
        }
        let hold = SocketHold {
            _permit: Arc::new(permit),
        };
        let io = TokioIo::new(TimeoutIo::new(
            stream,
            self.write_timeout,
            self.admission.socket_timeouts.clone(),
        ));
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let extensions = request.extensions_mut();
            extensions.insert(ConnectInfo(ClientAddr(peer)));
            extensions.insert(hold.clone());
            // A router is always ready, and a clone is a reference count.
            let mut app = app.clone();
            async move { app.call(request).await }
        });
        // Boxed, so that the task of a socket still waiting for its first
        // byte is small.
        let mut connection = Box::pin(self.http.serve_connection(io, service).with_upgrades());
        let served = tokio::select! {
            served = connection.as_mut() => served,
            () = self.draining.cancelled() => {
                // Finishes the request in flight (a stream ends on the
                // app's cancel token), then closes; an idle socket closes
                // at once.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = served {
            if e.is_timeout() {
                self.header_timed_out();
            } else {
                tracing::trace!(%peer, error = %e, "connection ended with an error");
            }
        }
    }

    fn header_timed_out(&self) {
        self.admission
            .sockets()
            .header_timeouts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Answers a socket past a cap and closes it, without waiting on it: the
/// answer is a few hundred bytes into an empty send buffer. Up to
/// [`REFUSALS_LINGERING`] refused sockets linger to close cleanly.
fn refuse(stream: TcpStream, refusal: Refusal, lingering: &Arc<Semaphore>) {
    // What the client has sent already is read (and dropped) first, so that
    // even a socket closed at once is closed with a FIN, not a reset.
    let mut buf = [0u8; 1024];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match stream.try_read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    let _ = stream.try_write(&refusal.raw_response(retry_after_secs()));
    if let Ok(place) = lingering.clone().try_acquire_owned() {
        tokio::spawn(async move {
            let _place = place;
            linger(stream).await;
        });
    }
}

/// Says it is done writing, then reads (and drops) what the client sends
/// until it closes, for at most [`LINGER`] and [`LINGER_BYTES`]: closing a
/// socket with unread data in it sends a reset, which can make the client
/// lose the answer it has not read yet.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut buf = [0u8; 1024];
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while read < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(sockets_within(150_000, 1_024), 768);
        assert_eq!(sockets_within(150_000, 20_000), 19_744);
        assert_eq!(sockets_within(500, 20_000), 500);
        assert_eq!(sockets_within(150_000, 300), 150);
        assert_eq!(sockets_within(150_000, u64::MAX), 150_000);
    }
}
