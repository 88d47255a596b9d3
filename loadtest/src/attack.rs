//! `attack`: hostile sockets. Opens `--idle` sockets that send nothing and
//! `--slow` ones that send a request line and then one header byte every
//! `--dribble-ms` (slowloris), holds them for `--duration` seconds, and
//! reports what the server did with them: answered and closed at once
//! (503 full, 429 per address), closed later without a word (a header
//! timeout), or left open, and when.
//!
//! With `--reconnect` every socket comes back as soon as the server closes
//! it (a second later if it was refused), for a sustained attack.
//!
//! Sockets are spread over source addresses from `--first-source` on
//! (`--per-source` each), apart from the 127.0.0.x that `clients` uses, so
//! real clients and the attack can be told apart by the per-address cap.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct AttackArgs {
    /// The server's public URL (only its address is used).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Sockets that connect and send nothing.
    #[arg(long, default_value_t = 5_000)]
    idle: usize,
    /// Sockets that send "GET / HTTP/1.1\r\n", then one header byte at a
    /// time, never finishing the head.
    #[arg(long, default_value_t = 2_000)]
    slow: usize,
    /// Milliseconds between a slow socket's bytes.
    #[arg(long, default_value_t = 1_000)]
    dribble_ms: u64,
    /// Seconds to hold the sockets once all are started.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds over which the sockets are opened.
    #[arg(long, default_value_t = 2.0)]
    ramp: f64,
    /// Open a socket again as soon as the server closes it (a second later
    /// if it was refused), until the end.
    #[arg(long)]
    reconnect: bool,
    /// The first source address; the next ones follow it.
    #[arg(long, default_value = "127.1.0.1")]
    first_source: Ipv4Addr,
    /// Sockets per source address.
    #[arg(long, default_value_t = 500)]
    per_source: usize,
    /// Write the final report as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Counters shared by every socket.
struct Stats {
    /// Connects under way now (a server that does not accept leaves them
    /// waiting in its backlog, or its kernel drops their SYNs).
    connecting: AtomicU64,
    connected: AtomicU64,
    connect_errors: AtomicU64,
    /// Open now, and the most open at once.
    open: AtomicU64,
    open_peak: AtomicU64,
    refused_full: AtomicU64,
    refused_address: AtomicU64,
    /// Any other answer (or a refusal without Retry-After).
    other_answers: AtomicU64,
    /// Closed by the server without an answer, and after how long (ms
    /// from connect).
    closed_silently: AtomicU64,
    closed_after: Mutex<Histogram<u64>>,
}

impl Stats {
    fn new() -> anyhow::Result<Stats> {
        Ok(Stats {
            connecting: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            open: AtomicU64::new(0),
            open_peak: AtomicU64::new(0),
            refused_full: AtomicU64::new(0),
            refused_address: AtomicU64::new(0),
            other_answers: AtomicU64::new(0),
            closed_silently: AtomicU64::new(0),
            closed_after: Mutex::new(Histogram::new_with_bounds(1, 3_600_000, 3)?),
        })
    }
}

/// Marks a socket open for as long as it lives.
struct Open<'a>(&'a Stats);

impl<'a> Open<'a> {
    fn new(stats: &'a Stats) -> Self {
        let now = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
        stats.open_peak.fetch_max(now, Ordering::Relaxed);
        Open(stats)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn run(args: AttackArgs) -> anyhow::Result<()> {
    crate::clients::raise_fd_limit(args.idle + args.slow);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    builder.enable_all().build()?.block_on(run_async(args))
}

async fn run_async(args: AttackArgs) -> anyhow::Result<()> {
    let url = url::Url::parse(&args.url).context("--url")?;
    let host = url.host_str().context("--url has no host")?.to_owned();
    let port = url.port_or_known_default().context("--url has no port")?;
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .context("--url does not resolve")?;
    let stats = Arc::new(Stats::new()?);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let total = args.idle + args.slow;
    let ramp = Duration::from_secs_f64(args.ramp.max(0.0));
    let dribble = Duration::from_millis(args.dribble_ms.max(1));
    let progress = tokio::spawn(progress(stats.clone(), stop.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..total {
        let due = ramp.mul_f64(id as f64 / total.max(1) as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let source = source_address(args.first_source, id, args.per_source);
        let socket = Socket {
            target,
            source,
            slow: id >= args.idle,
            dribble,
            reconnect: args.reconnect,
        };
        let (stats, stop) = (stats.clone(), stop.clone());
        tasks.spawn(async move { socket.run(&stats, &stop).await });
    }
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let held_at_end = stats.open.load(Ordering::Relaxed);
    let connecting_at_end = stats.connecting.load(Ordering::Relaxed);
    stop.cancel();
    let _ = progress.await;
    while tasks.join_next().await.is_some() {}
    let report = Report::new(
        &args,
        &stats,
        (held_at_end, connecting_at_end),
        started.elapsed(),
    );
    println!("{}", report.summary());
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `first`, then the addresses after it, `per_source` sockets each.
fn source_address(first: Ipv4Addr, id: usize, per_source: usize) -> IpAddr {
    let step = (id / per_source.max(1)) as u32;
    IpAddr::V4(Ipv4Addr::from(u32::from(first).wrapping_add(step)))
}

async fn progress(stats: Arc<Stats>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        eprintln!(
            "open {}  connecting {}  refused 503 {} 429 {}  closed silently {}  connect errors {}",
            stats.open.load(Ordering::Relaxed),
            stats.connecting.load(Ordering::Relaxed),
            stats.refused_full.load(Ordering::Relaxed),
            stats.refused_address.load(Ordering::Relaxed),
            stats.closed_silently.load(Ordering::Relaxed),
            stats.connect_errors.load(Ordering::Relaxed),
        );
    }
}

/// One attacking socket, and its successors if it reconnects.
struct Socket {
    target: SocketAddr,
    source: IpAddr,
    slow: bool,
    dribble: Duration,
    reconnect: bool,
}

/// What the server did with a socket.
enum Outcome {
    /// It sent this, then closed.
    Answered(Vec<u8>),
    /// It closed without a word, this long after the connect.
    ClosedSilently(Duration),
    /// The connect failed.
    Failed,
    /// The run ended first.
    Stopped,
}

impl Socket {
    async fn run(&self, stats: &Stats, stop: &CancellationToken) {
        let pause = Duration::from_secs(1);
        loop {
            let connecting = {
                stats.connecting.fetch_add(1, Ordering::Relaxed);
                let connected = tokio::select! {
                    c = self.connect() => Some(c),
                    () = stop.cancelled() => None,
                };
                stats.connecting.fetch_sub(1, Ordering::Relaxed);
                connected
            };
            let Some(connected) = connecting else {
                return;
            };
            let outcome = match connected {
                Ok(stream) => {
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                    let _open = Open::new(stats);
                    tokio::select! {
                        outcome = self.hold(stream) => outcome,
                        () = stop.cancelled() => Outcome::Stopped,
                    }
                }
                Err(_) => {
                    stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                    Outcome::Failed
                }
            };
            let again_after = match outcome {
                Outcome::Stopped => return,
                Outcome::ClosedSilently(after) => {
                    stats.closed_silently.fetch_add(1, Ordering::Relaxed);
                    let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX).max(1);
                    let _ = stats.closed_after.lock().record(ms);
                    Duration::ZERO
                }
                Outcome::Answered(got) => {
                    let counter = match refusal(&got) {
                        Some(503) => &stats.refused_full,
                        Some(429) => &stats.refused_address,
                        _ => &stats.other_answers,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    pause
                }
                Outcome::Failed => pause,
            };
            if !self.reconnect {
                // Hold nothing more, but do not end before the run does.
                stop.cancelled().await;
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(again_after) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(self.source, 0))?;
        // The server is expected to take its time with these, not us.
        let _ = socket.set_recv_buffer_size(4096);
        socket.connect(self.target).await
    }

    /// Holds `stream` until the server closes it, dribbling a head if slow.
    async fn hold(&self, mut stream: TcpStream) -> Outcome {
        let since = Instant::now();
        let (mut read, mut write) = stream.split();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        let mut tick = tokio::time::interval(self.dribble);
        let mut next: &[u8] = b"GET / HTTP/1.1\r\n";
        let mut writing = self.slow;
        loop {
            tokio::select! {
                n = read.read(&mut buf) => match n {
                    Ok(0) | Err(_) if got.is_empty() => return Outcome::ClosedSilently(since.elapsed()),
                    Ok(0) | Err(_) => return Outcome::Answered(got),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                _ = tick.tick(), if writing => {
                    // A failed write: the server closed; read what it said.
                    writing = write.write_all(next).await.is_ok();
                    next = b"x";
                }
            }
        }
    }
}

/// The status of a refusal (503 or 429 with a Retry-After), if `got` is
/// one.
fn refusal(got: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(got);
    let mut lines = text.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let retry_after = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .any(|(k, v)| k.eq_ignore_ascii_case("retry-after") && v.trim().parse::<u64>().is_ok());
    (retry_after && matches!(status, 503 | 429)).then_some(status)
}

/// The run's numbers, for the terminal and as JSON.
#[derive(Debug, Serialize)]
struct Report {
    url: String,
    idle: usize,
    slow: usize,
    reconnect: bool,
    seconds: f64,
    connected: u64,
    connect_errors: u64,
    open_peak: u64,
    held_at_end: u64,
    connecting_at_end: u64,
    refused_full: u64,
    refused_address: u64,
    other_answers: u64,
    closed_silently: u64,
    closed_after_ms: CloseTimes,
}

#[derive(Debug, Serialize)]
struct CloseTimes {
    min: u64,
    p50: u64,
    p99: u64,
    max: u64,
}

impl Report {
    fn new(
        args: &AttackArgs,
        s: &Stats,
        (held_at_end, connecting_at_end): (u64, u64),
        total: Duration,
    ) -> Report {
        let h = s.closed_after.lock();
        Report {
            url: args.url.clone(),
            idle: args.idle,
            slow: args.slow,
            reconnect: args.reconnect,
            seconds: total.as_secs_f64(),
            connected: s.connected.load(Ordering::Relaxed),
            connect_errors: s.connect_errors.load(Ordering::Relaxed),
            open_peak: s.open_peak.load(Ordering::Relaxed),
            held_at_end,
            connecting_at_end,
            refused_full: s.refused_full.load(Ordering::Relaxed),
            refused_address: s.refused_address.load(Ordering::Relaxed),
            other_answers: s.other_answers.load(Ordering::Relaxed),
            closed_silently: s.closed_silently.load(Ordering::Relaxed),
            closed_after_ms: CloseTimes {
                min: h.min(),
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
            },
        }
    }

    fn summary(&self) -> String {
        format!(
            "attack ({} idle + {} slow{}): {} connects ({} errors), at most {} open at once, {} still open and {} still connecting at the end; \
             refused: {} with 503, {} with 429; {} other answers; {} closed silently after {}-{} ms (p50 {} ms, p99 {} ms)",
            self.idle,
            self.slow,
            if self.reconnect { ", reconnecting" } else { "" },
            self.connected,
            self.connect_errors,
            self.open_peak,
            self.held_at_end,
            self.connecting_at_end,
            self.refused_full,
            self.refused_address,
            self.other_answers,
            self.closed_silently,
            self.closed_after_ms.min,
            self.closed_after_ms.max,
            self.closed_after_ms.p50,
            self.closed_after_ms.p99,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_the_first() {
        let first = Ipv4Addr::new(127, 1, 0, 1);
        assert_eq!(source_address(first, 0, 500), IpAddr::from([127, 1, 0, 1]));
        assert_eq!(
            source_address(first, 500, 500),
            IpAddr::from([127, 1, 0, 2])
        );
        assert_eq!(
            source_address(first, 500 * 255, 500),
            IpAddr::from([127, 1, 1, 0])
        );
    }

    #[test]
    fn refusals_are_told_apart_from_other_answers() {
        let full = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 9\r\n\r\nfull\n";
        assert_eq!(refusal(full), Some(503));
        let address = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\n\r\n";
        assert_eq!(refusal(address), Some(429));
        assert_eq!(refusal(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"), None);
        assert_eq!(refusal(b"HTTP/1.1 408 Request Timeout\r\n\r\n"), None);
        assert_eq!(refusal(b"garbage"), None);
    }
}
