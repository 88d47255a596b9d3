//! `clients`: plays browsers. Opens N connections over one transport,
//! verifies and times every frame they receive, and reports what a crowd
//! of viewers would see.
//!
//! One machine has about 28,000 ephemeral ports per source address, so
//! connections are spread over source addresses 127.0.0.1, 127.0.0.2, ...
//! (`--per-source` each); the server must listen on a loopback or
//! wildcard address for that to work.
//!
//! Latency is the time from a frame's creation (`generated_at_ms`, the
//! server's clock) to its receipt (this process's clock): meaningful on
//! one machine, or between machines with synchronised clocks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ws,
    Sse,
    Longpoll,
}

#[derive(Debug, clap::Args)]
pub struct ClientsArgs {
    /// The server's public URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    transport: Transport,
    /// Clients to open.
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Seconds to keep going once every client has been started.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds over which the clients are started (a reconnect storm is a
    /// short ramp).
    #[arg(long, default_value_t = 10.0)]
    ramp: f64,
    /// Clients per source address (127.0.0.1, 127.0.0.2, ...).
    #[arg(long, default_value_t = 500)]
    per_source: usize,
    /// Of the clients, how many connect and then never read (WebSocket
    /// only): to measure what slow clients cost the others.
    #[arg(long, default_value_t = 0)]
    never_read: usize,
    /// Write the final report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Counters shared by every client.
#[derive(Default)]
struct Stats {
    connected: AtomicU64,
    connect_errors: AtomicU64,
    /// Connections that ended before the run did (server close or error).
    dropped: AtomicU64,
    /// Frames that did not verify.
    bad_frames: AtomicU64,
    frames: AtomicU64,
    keyframes: AtomicU64,
    bytes: AtomicU64,
    /// Ticks a client never saw (a jump of more than one in version).
    gaps: AtomicU64,
    /// Latency histograms, sharded to keep threads off each other's lock.
    latency: Vec<Mutex<Histogram<u64>>>,
}

const SHARDS: usize = 64;

impl Stats {
    fn new() -> anyhow::Result<Stats> {
        let latency = (0..SHARDS)
            .map(|_| Histogram::new_with_bounds(1, 600_000, 3).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Stats {
            latency,
            ..Stats::default()
        })
    }

    /// Records one received frame for client `id`.
    fn frame(&self, id: usize, bytes: &[u8], wire_len: usize, cursor: &mut Cursor) {
        let header = match livemap_wire::peek(bytes) {
            Ok(h) => h,
            Err(_) => {
                self.bad_frames.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(wire_len as u64, Ordering::Relaxed);
        if header.keyframe {
            self.keyframes.fetch_add(1, Ordering::Relaxed);
        }
        // On connect a client gets the newest keyframe (up to a few seconds
        // old) and then the tick's delta: the keyframe's age is not a
        // delivery delay, and the versions between the two are not ticks
        // the client missed. After that, every version skipped is a tick
        // the client did not see, and every frame's age is its latency.
        let first = cursor.last == 0;
        if header.version > cursor.last {
            if !first && !cursor.joined_on_keyframe && header.version > cursor.last + 1 {
                self.gaps
                    .fetch_add(header.version - cursor.last - 1, Ordering::Relaxed);
            }
            cursor.joined_on_keyframe = first && header.keyframe;
            cursor.last = header.version;
            if !(first && header.keyframe) {
                let latency = now_ms().saturating_sub(header.generated_at_ms).max(1);
                let _ = self.latency[id % SHARDS]
                    .lock()
                    .record(u64::try_from(latency).unwrap_or(1));
            }
        }
    }

    fn latency(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, 600_000, 3).unwrap_or_else(|_| unreachable!());
        for shard in &self.latency {
            let _ = all.add(&*shard.lock());
        }
        all
    }
}

/// Where one client is in the stream.
#[derive(Default)]
struct Cursor {
    /// The newest version it has (0: none yet).
    last: u64,
    /// Its first frame was a (catch-up) keyframe and its second has not
    /// come yet.
    joined_on_keyframe: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where the clients go.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: String,
}

pub fn run(args: ClientsArgs) -> anyhow::Result<()> {
    raise_fd_limit(args.connections);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    builder.enable_all().build()?.block_on(run_async(args))
}

/// Two descriptors per client would be plenty; ask for what the run needs
/// (the hard limit caps it, and root may raise that).
pub(crate) fn raise_fd_limit(connections: usize) {
    let want = (connections as u64) * 2 + 1_024;
    if let Err(e) = rlimit::increase_nofile_limit(want) {
        eprintln!("could not raise the open-file limit: {e}");
    }
    if let Ok((soft, _)) = rlimit::Resource::NOFILE.get() {
        if soft < want {
            eprintln!(
                "open-file limit is {soft}, the run needs about {want}: raise it (ulimit -n) or expect connect errors"
            );
        }
    }
}

async fn run_async(args: ClientsArgs) -> anyhow::Result<()> {
    let url = url::Url::parse(&args.url).context("--url")?;
    let host = url.host_str().context("--url has no host")?.to_owned();
    let port = url.port_or_known_default().context("--url has no port")?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .context("--url does not resolve")?;
    let target = Target {
        addr,
        host: format!("{host}:{port}"),
    };
    let stats = Arc::new(Stats::new()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let ramp = Duration::from_secs_f64(args.ramp.max(0.0));
    let mut tasks = tokio::task::JoinSet::new();
    let progress = tokio::spawn(progress(stats.clone(), stop.clone(), args.connections));
    for id in 0..args.connections {
        // Spread the starts evenly over the ramp.
        let due = ramp.mul_f64(id as f64 / args.connections.max(1) as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let source = source_address(id, args.per_source);
        let (stats, stop, target) = (stats.clone(), stop.clone(), target.clone());
        let reads = id >= args.never_read;
        let transport = args.transport;
        tasks.spawn(async move {
            let result = match transport {
                Transport::Ws => ws_client(id, source, &target, &stats, &stop, reads).await,
                Transport::Sse => sse_client(id, source, &target, &stats, &stop).await,
                Transport::Longpoll => longpoll_client(id, source, &target, &stats, &stop).await,
            };
            match result {
                Ok(Ended::Stopped) => {}
                Ok(Ended::ByServer) => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(ClientError::Connect(_)) => {
                    stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                }
                Err(ClientError::Broken(_)) => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let all_started = started.elapsed();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let held_for = started.elapsed() - all_started;
    let connected_at_end = stats.connected.load(Ordering::Relaxed);
    stop.cancel();
    let _ = progress.await;
    // Clients end at once on the stop signal; do not wait on stuck ones.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let report = Report::new(&args, &stats, connected_at_end, started.elapsed(), held_for);
    println!("{}", report.summary());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// 127.0.0.1 for the first `per_source` clients, 127.0.0.2 for the next...
fn source_address(id: usize, per_source: usize) -> IpAddr {
    let n = (id / per_source.max(1)) as u32 + 1;
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | (n & 0x00ff_ffff)))
}

async fn progress(stats: Arc<Stats>, stop: tokio_util::sync::CancellationToken, want: usize) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut frames, mut bytes) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let f = stats.frames.load(Ordering::Relaxed);
        let b = stats.bytes.load(Ordering::Relaxed);
        let connected = stats.connected.load(Ordering::Relaxed);
        let h = stats.latency();
        eprintln!(
            "connected {connected}/{want}  frames/s {}  MB/s {:.1}  latency p50 {} ms p99 {} ms  gaps {}  connect errors {}  dropped {}",
            f - frames,
            (b - bytes) as f64 / 1e6,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            stats.gaps.load(Ordering::Relaxed),
            stats.connect_errors.load(Ordering::Relaxed),
            stats.dropped.load(Ordering::Relaxed),
        );
        frames = f;
        bytes = b;
    }
}

enum Ended {
    Stopped,
    ByServer,
}

#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("broken: {0}")]
    Broken(String),
}

async fn connect(source: IpAddr, target: &Target) -> Result<TcpStream, ClientError> {
    let socket = TcpSocket::new_v4().map_err(|e| ClientError::Connect(e.to_string()))?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| ClientError::Connect(format!("bind {source}: {e}")))?;
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Marks a client connected for as long as it lives.
struct Connected<'a>(&'a Stats);

impl<'a> Connected<'a> {
    fn new(stats: &'a Stats) -> Self {
        stats.connected.fetch_add(1, Ordering::Relaxed);
        Connected(stats)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn ws_client(
    id: usize,
    source: IpAddr,
    target: &Target,
    stats: &Stats,
    stop: &tokio_util::sync::CancellationToken,
    reads: bool,
) -> Result<Ended, ClientError> {
    let stream = connect(source, target).await?;
    // Small buffers: a load tester holding 100k sockets must not spend
    // tungstenite's default 128 KiB on each.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let url = format!("ws://{}/ws", target.host);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let _connected = Connected::new(stats);
    if !reads {
        stop.cancelled().await;
        return Ok(Ended::Stopped);
    }
    let mut last = Cursor::default();
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => stats.frame(id, &b, b.len(), &mut last),
                Some(Ok(Message::Close(_))) | None => return Ok(Ended::ByServer),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ClientError::Broken(e.to_string())),
            },
            _ = stop.cancelled() => return Ok(Ended::Stopped),
        }
    }
}

async fn http1(
    source: IpAddr,
    target: &Target,
) -> Result<hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>, ClientError> {
    let stream = connect(source, target).await?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
    tokio::spawn(conn);
    Ok(sender)
}

fn get(
    target: &Target,
    path: &str,
) -> Result<hyper::Request<http_body_util::Empty<Bytes>>, ClientError> {
    hyper::Request::get(path)
        .header(hyper::header::HOST, &target.host)
        .body(http_body_util::Empty::new())
        .map_err(|e| ClientError::Connect(e.to_string()))
}

async fn sse_client(
    id: usize,
    source: IpAddr,
    target: &Target,
    stats: &Stats,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Ended, ClientError> {
    let mut sender = http1(source, target).await?;
    let response = sender
        .send_request(get(target, "/sse")?)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    if !response.status().is_success() {
        return Err(ClientError::Connect(format!("HTTP {}", response.status())));
    }
    let _connected = Connected::new(stats);
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    let mut last = Cursor::default();
    loop {
        let chunk = tokio::select! {
            f = body.frame() => f,
            _ = stop.cancelled() => return Ok(Ended::Stopped),
        };
        let Some(chunk) = chunk else {
            return Ok(Ended::ByServer);
        };
        let chunk = chunk.map_err(|e| ClientError::Broken(e.to_string()))?;
        let Ok(data) = chunk.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        // Events end with a blank line; take every complete one.
        while let Some(end) = memchr::memmem::find(&pending, b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            if let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) {
                match base64::engine::general_purpose::STANDARD.decode(data) {
                    Ok(bytes)
                        if text.contains("event: keyframe") || text.contains("event: delta") =>
                    {
                        stats.frame(id, &bytes, event.len(), &mut last)
                    }
                    Ok(_) => {}
                    Err(_) => {
                        stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if text.contains("event: reconnect") {
                return Ok(Ended::ByServer);
            }
        }
        if pending.len() > 1 << 20 {
            return Err(ClientError::Broken("an event over 1 MiB".into()));
        }
    }
}

async fn longpoll_client(
    id: usize,
    source: IpAddr,
    target: &Target,
    stats: &Stats,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Ended, ClientError> {
    let mut sender = http1(source, target).await?;
    let _connected = Connected::new(stats);
    let (mut version, mut keyframe, mut last) = (0u64, 0u64, Cursor::default());
    loop {
        let path = format!("/api/poll?v={version}&k={keyframe}");
        let request = sender.send_request(get(target, &path)?);
        let response = tokio::select! {
            r = request => r.map_err(|e| ClientError::Broken(e.to_string()))?,
            _ = stop.cancelled() => return Ok(Ended::Stopped),
        };
        match response.status().as_u16() {
            200 => {
                let got: Option<u64> = response
                    .headers()
                    .get("x-livemap-version")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| ClientError::Broken(e.to_string()))?
                    .to_bytes();
                stats.frame(id, &bytes, bytes.len(), &mut last);
                if let Ok(h) = livemap_wire::peek(&bytes) {
                    if h.keyframe {
                        keyframe = h.version;
                    }
                }
                version = got.unwrap_or(version);
            }
            204 => {}
            503 => return Ok(Ended::ByServer),
            other => return Err(ClientError::Broken(format!("HTTP {other}"))),
        }
    }
}

/// The run's numbers, for the terminal and as JSON.
#[derive(Debug, Serialize)]
struct Report {
    transport: Transport,
    url: String,
    connections_wanted: usize,
    never_read: usize,
    connected_at_end: u64,
    connect_errors: u64,
    dropped: u64,
    seconds: f64,
    held_seconds: f64,
    frames: u64,
    keyframes: u64,
    bad_frames: u64,
    frames_per_sec: f64,
    bytes_per_sec_per_client: f64,
    gaps: u64,
    latency_ms: Latency,
}

#[derive(Debug, Serialize)]
struct Latency {
    samples: u64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl Report {
    fn new(
        args: &ClientsArgs,
        s: &Stats,
        connected_at_end: u64,
        total: Duration,
        held: Duration,
    ) -> Report {
        let h = s.latency();
        let frames = s.frames.load(Ordering::Relaxed);
        let bytes = s.bytes.load(Ordering::Relaxed);
        let readers = (args.connections - args.never_read.min(args.connections)).max(1);
        Report {
            transport: args.transport,
            url: args.url.clone(),
            connections_wanted: args.connections,
            never_read: args.never_read,
            connected_at_end,
            connect_errors: s.connect_errors.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            seconds: total.as_secs_f64(),
            held_seconds: held.as_secs_f64(),
            frames,
            keyframes: s.keyframes.load(Ordering::Relaxed),
            bad_frames: s.bad_frames.load(Ordering::Relaxed),
            frames_per_sec: frames as f64 / total.as_secs_f64().max(1e-9),
            bytes_per_sec_per_client: bytes as f64 / total.as_secs_f64().max(1e-9) / readers as f64,
            gaps: s.gaps.load(Ordering::Relaxed),
            latency_ms: Latency {
                samples: h.len(),
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
            },
        }
    }

    fn summary(&self) -> String {
        format!(
            "{:?}: {} of {} connected at the end ({} connect errors, {} dropped); {} frames ({:.0}/s), {:.0} B/s per client; \
             latency p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms; {} ticks missed; {} bad frames",
            self.transport,
            self.connected_at_end,
            self.connections_wanted,
            self.connect_errors,
            self.dropped,
            self.frames,
            self.frames_per_sec,
            self.bytes_per_sec_per_client,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.p999,
            self.latency_ms.max,
            self.gaps,
            self.bad_frames,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_over_loopback() {
        assert_eq!(source_address(0, 500), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(source_address(499, 500), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(source_address(500, 500), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(
            source_address(500 * 300, 500),
            IpAddr::from([127, 0, 1, 45])
        );
    }
}
