//! The public listener: every accepted socket gets `TCP_NODELAY` (frames
//! are small and latency matters), a fixed send buffer of
//! [`SEND_BUFFER`] instead of the kernel's autotuning (which lets one slow
//! client hold megabytes), and a write timeout at the socket, so a client
//! that stops reading is cut off after a bounded time whichever transport
//! it uses, and costs at most its socket buffers until then. What is done
//! with an accepted socket (the caps, HTTP) is in `serve.rs`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// The client's address, as handlers take it (`ConnectInfo<ClientAddr>`):
/// the accept loop puts it in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Kernel send buffer per client socket (Linux doubles it for its own
/// bookkeeping): a few seconds of frames, a hundred keyframes.
pub const SEND_BUFFER: usize = 32 * 1024;

#[derive(Debug)]
pub struct PublicListener {
    inner: TcpListener,
}

impl PublicListener {
    pub fn new(inner: TcpListener) -> Self {
        PublicListener { inner }
    }

    /// The next client socket, set up for streaming: `TCP_NODELAY` and the
    /// fixed send buffer.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
                    return (stream, addr);
                }
                Err(e) => {
                    // Per-connection errors: next. Out of file descriptors
                    // (the caps keep client sockets below the limit, so
                    // something else holds them): wait a little rather
                    // than spin; the kernel's backlog holds the rest.
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionRefused
                    ) {
                        continue;
                    }
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A TCP stream whose writes fail once they have been blocked for longer
/// than the timeout (the peer's receive window stayed full).
#[derive(Debug)]
pub struct TimeoutIo {
    stream: TcpStream,
    timeout: Duration,
    timeouts: Arc<AtomicU64>,
    /// Armed while a write is blocked; allocated only then.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl TimeoutIo {
    pub fn new(stream: TcpStream, timeout: Duration, timeouts: Arc<AtomicU64>) -> Self {
        TimeoutIo {
            stream,
            timeout,
            timeouts,
            stalled: None,
        }
    }

    /// Called when a write would block: pending until the timer fires,
    /// then an error, which ends the connection.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client stopped reading",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        done: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match done {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.stall(cx),
        }
    }
}

impl AsyncRead for TimeoutIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TimeoutIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.progress(done, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.progress(done, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.stream).poll_flush(cx);
        this.progress(done, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
