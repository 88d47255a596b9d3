//! Starting a real server for a test, and waiting on conditions.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use livemap_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any condition may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Server logs for a failing test: `LIVEMAP_TEST_LOG=livemap_server=debug`.
/// Captured per test by the harness, so only a failure prints them.
fn init_logging() {
    if let Ok(filter) = std::env::var("LIVEMAP_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), livemap_server::ServerError>>>,
}

impl TestServer {
    /// Starts the server on 127.0.0.1:0 with the demo source at a test rate.
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> TestServer {
        init_logging();
        let mut config = Config {
            demo_rate: 5_000,
            demo_seed: 42,
            demo_backfill: Duration::ZERO,
            engine: livemap_engine::ingest::EngineConfig {
                seed: 42,
                ..Default::default()
            },
            ..Config::default()
        };
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let admin = admin_listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = livemap_server::Listeners {
            public: listener,
            admin: Some(admin_listener),
        };
        let handle = tokio::spawn(livemap_server::run(listeners, config, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            admin,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), livemap_server::ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = self.handle.take().expect("server handle");
        tokio::time::timeout(PATIENCE, handle)
            .await
            .expect("server stops in time")
            .expect("server task did not panic")
    }

    /// The admin listener's `/metrics` text; `None` while it does not answer.
    pub async fn metrics(&self) -> Option<String> {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    pub async fn snapshot(&self) -> serde_json::Value {
        let resp = reqwest::get(self.url("/api/snapshot"))
            .await
            .expect("GET /api/snapshot");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("snapshot is JSON")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Re-checks `probe` until it returns `Some`, failing the test after
/// [`PATIENCE`]. For conditions that no event signals to the test.
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(PATIENCE, what, probe).await
}

/// [`eventually`] with a patience of the caller's choosing.
pub async fn eventually_within<T, F, Fut>(patience: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next binary frame on a WebSocket, decoded (control frames skipped);
/// fails the test if none comes within [`PATIENCE`].
pub async fn next_snapshot<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) -> livemap_wire::Snapshot
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b)))) => {
                return livemap_wire::decode(&b).expect("a valid FlatBuffers snapshot")
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

/// What a raw HTTP/1.1 exchange on one socket got: the status of the
/// answer and its `Retry-After`.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
}

/// Reads one answer's head (and whatever of its body came with it) from
/// `stream`; fails the test if none comes within [`PATIENCE`].
pub async fn read_answer(stream: &mut TcpStream) -> Answer {
    tokio::time::timeout(PATIENCE, try_read_answer(stream))
        .await
        .expect("an answer in time")
        .expect("an answer")
}

/// Reads one answer's head from `stream`, or says why not (the socket
/// closed or failed first, or the head is not HTTP).
pub async fn try_read_answer(stream: &mut TcpStream) -> std::io::Result<Answer> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break String::from_utf8_lossy(&got[..end]).to_string();
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "closed before an answer: {:?}",
                    String::from_utf8_lossy(&got)
                ),
            ));
        }
        got.extend_from_slice(&buf[..n]);
    };
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, head.clone()))?;
    let retry_after = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, v)| v.trim().parse().ok());
    Ok(Answer {
        status,
        retry_after,
    })
}

/// Waits for the server to close `stream` (reading and dropping anything
/// else it sends) and says when it did.
pub async fn closed(stream: &mut TcpStream) -> Instant {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("the server closes the socket in time")
        {
            Ok(0) | Err(_) => return Instant::now(),
            Ok(_) => {}
        }
    }
}

/// `GET path` on a fresh socket to `addr`, asking the server to close it
/// after.
pub async fn get_once(addr: SocketAddr, path: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
        addr
    );
    // A refused socket may be closed before the request is written.
    let _ = stream.write_all(request.as_bytes()).await;
    read_answer(&mut stream).await
}

/// The public and admin addresses a `livemap` child announces on its first
/// line of output. The rest of its output is drained, so that the child
/// never blocks on a full pipe.
pub fn listening_addresses(child: &mut std::process::Child) -> (SocketAddr, SocketAddr) {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("first line");
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let mut addrs = line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("http://"))
        .map(|w| {
            w.trim_end_matches(')')
                .trim_end_matches('/')
                .parse::<SocketAddr>()
                .expect("an address in the listening line")
        });
    let public = addrs.next().expect("public address");
    let admin = addrs.next().expect("admin address");
    (public, admin)
}
