//! Hostile clients against the real binary, whose open-file limit is far
//! below the attack: thousands of sockets that send nothing and sockets
//! that send their request head a byte a second, first from one address,
//! then from many, beside real clients (a WebSocket, snapshot requests)
//! and the operator's `/healthz`.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::util::{eventually, next_snapshot, try_read_answer, Answer, PATIENCE};

/// The server's open-file limit, soft and hard: its socket cap is this
/// less the 256 descriptors it keeps back.
const OPEN_FILES: u64 = 1_024;
const SOCKET_CAP: f64 = (OPEN_FILES - 256) as f64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const PER_ADDRESS: usize = 300;
/// Every admitted attack socket is closed this long after it connected, at
/// most: the header timeout, and slack for two loaded cores.
const CLOSED_WITHIN: Duration = Duration::from_secs(7);
/// Each phase lasts three header timeouts, so every attack socket that
/// gets in is cut off (and comes back) at least twice.
const PHASE: Duration = Duration::from_secs(6);
/// The operator's health check must answer within this, whatever the
/// public port suffers.
const HEALTHZ_WITHIN: Duration = Duration::from_secs(1);
/// A real client's request is answered (served or refused) within this.
const ANSWERED_WITHIN: Duration = Duration::from_secs(3);
/// What the attack may add to the server's resident memory: 768 admitted
/// sockets, each at worst mid-head with hyper's 16 KiB of buffers, are
/// 12 MiB (a socket that has sent nothing costs under 2 KiB); as much
/// again is room for the allocator and the refused sockets in flight.
/// Measured: about 10 MiB.
const RSS_GROWTH_LIMIT_KIB: u64 = 24 * 1024;

/// The real server binary on the demo source, with its open-file limit
/// lowered to [`OPEN_FILES`].
struct Livemap {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Livemap {
    fn start() -> Livemap {
        let mut child = Command::new("sh")
            .arg("-c")
            // `ulimit -n` lowers both limits, so the server cannot raise
            // its own back.
            .arg("ulimit -n \"$0\" && exec \"$@\"")
            .arg(OPEN_FILES.to_string())
            .arg(env!("CARGO_BIN_EXE_livemap"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--demo-rate", "2000", "--demo-backfill-minutes", "0"])
            .args([
                "--header-timeout-secs",
                &HEADER_TIMEOUT.as_secs().to_string(),
            ])
            .args(["--max-connections-per-ip", &PER_ADDRESS.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("livemap starts");
        let (public, admin) = crate::util::listening_addresses(&mut child);
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let kept = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                eprint!("{text}");
                if let Ok(mut log) = kept.lock() {
                    log.push_str(&text);
                }
            }
        });
        Livemap {
            child,
            public,
            admin,
            log,
        }
    }

    /// A field of `/proc/<pid>/status`, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    async fn metric(&self, line_start: &str) -> Option<f64> {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .ok()?
            .text()
            .await
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
    }

    async fn ws(&self) -> tokio_tungstenite::WebSocketStream<TcpStream> {
        let stream = TcpStream::connect(self.public).await.expect("connects");
        let url = format!("ws://{}/ws", self.public);
        tokio::time::timeout(
            ANSWERED_WITHIN,
            tokio_tungstenite::client_async(url, stream),
        )
        .await
        .expect("the handshake ends in time")
        .expect("a WebSocket")
        .0
    }

    /// SIGTERM, as a deploy stops the process; whether it exited cleanly
    /// within `patience`.
    async fn terminate(mut self, patience: Duration) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
        let started = Instant::now();
        while started.elapsed() < patience {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                return exit.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Livemap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the attack's sockets saw.
#[derive(Debug, Default)]
struct Tally {
    /// Let in, then closed by the server without a word.
    admitted: AtomicU64,
    /// Answered 503 with a Retry-After, then closed.
    refused_full: AtomicU64,
    /// Answered 429 with a Retry-After, then closed.
    refused_address: AtomicU64,
    /// Anything else: another answer, or a refusal without Retry-After.
    odd: AtomicU64,
    connect_errors: AtomicU64,
    /// The longest an admitted socket stayed open, in milliseconds.
    longest_ms: AtomicU64,
}

struct Attack {
    stop: CancellationToken,
    sockets: JoinSet<()>,
    tally: Arc<Tally>,
}

impl Attack {
    /// Starts `idle` sockets that send nothing and `slow` ones that send a
    /// request line, then a header byte a second, spread over `sources`.
    /// Each comes back as soon as the server closes it (a second later if
    /// it was refused), until stopped.
    fn start(target: SocketAddr, sources: &[IpAddr], idle: usize, slow: usize) -> Attack {
        let stop = CancellationToken::new();
        let tally = Arc::new(Tally::default());
        let mut sockets = JoinSet::new();
        for i in 0..idle + slow {
            let source = sources[i % sources.len()];
            let (stop, tally) = (stop.clone(), tally.clone());
            sockets.spawn(attacker(target, source, i >= idle, stop, tally));
        }
        Attack {
            stop,
            sockets,
            tally,
        }
    }

    async fn stop(mut self) -> Arc<Tally> {
        self.stop.cancel();
        while self.sockets.join_next().await.is_some() {}
        self.tally
    }
}

async fn attacker(
    target: SocketAddr,
    source: IpAddr,
    slow: bool,
    stop: CancellationToken,
    tally: Arc<Tally>,
) {
    let pause = Duration::from_secs(1);
    while !stop.is_cancelled() {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind a loopback source");
        let connected = tokio::select! {
            c = socket.connect(target) => c,
            () = stop.cancelled() => return,
        };
        let Ok(mut stream) = connected else {
            tally.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                () = tokio::time::sleep(pause) => continue,
                () = stop.cancelled() => return,
            }
        };
        let since = Instant::now();
        let got = tokio::select! {
            got = hold(&mut stream, slow) => got,
            () = stop.cancelled() => return,
        };
        match answer(&got) {
            None => {
                tally.admitted.fetch_add(1, Ordering::Relaxed);
                let held = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                tally.longest_ms.fetch_max(held, Ordering::Relaxed);
                continue;
            }
            Some((503, Some(_))) => tally.refused_full.fetch_add(1, Ordering::Relaxed),
            Some((429, Some(_))) => tally.refused_address.fetch_add(1, Ordering::Relaxed),
            Some(_) => tally.odd.fetch_add(1, Ordering::Relaxed),
        };
        // A refused attacker comes back a second later rather than spin.
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Holds `stream` until the server closes it, sending a head a byte a
/// second if `slow`; returns what the server sent.
async fn hold(stream: &mut TcpStream, slow: bool) -> Vec<u8> {
    let (mut read, mut write) = stream.split();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut next: &[u8] = b"GET / HTTP/1.1\r\n";
    let mut writing = slow;
    loop {
        tokio::select! {
            n = read.read(&mut buf) => match n {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick(), if writing => {
                // The server may have closed already: read what it said.
                writing = write.write_all(next).await.is_ok();
                next = b"x";
            }
        }
    }
}

/// The status and Retry-After of what a server sent, if it sent anything.
fn answer(got: &[u8]) -> Option<(u16, Option<u64>)> {
    if got.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(got);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let retry_after = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .filter(|s| (5..=15).contains(s));
    Some((status, retry_after))
}

/// `GET path` on a fresh socket, without panicking: a probe reports what
/// happened.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    try_read_answer(&mut stream).await
}

/// What the real clients and the operator saw during a phase.
#[derive(Debug, Default)]
struct Seen {
    healthz: u32,
    healthz_slowest: Duration,
    /// Health checks not answered 200 within [`HEALTHZ_WITHIN`].
    healthz_failed: u32,
    snapshots_served: u32,
    /// Answered 503 (or 429) with a Retry-After of 5 to 15 s.
    snapshots_refused: u32,
    /// Not answered within [`ANSWERED_WITHIN`], or answered otherwise.
    snapshots_failed: Vec<String>,
}

/// Checks `/healthz` on the admin port and `/api/snapshot` on the public
/// one, each on a fresh socket, five times a second for `phase`.
async fn probe(live: &Livemap, phase: Duration) -> Seen {
    let mut seen = Seen::default();
    let until = Instant::now() + phase;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while Instant::now() < until {
        tick.tick().await;
        let started = Instant::now();
        let health = async {
            let answer = tokio::time::timeout(HEALTHZ_WITHIN, get(live.admin, "/healthz")).await;
            (answer, started.elapsed())
        };
        let snapshot = tokio::time::timeout(ANSWERED_WITHIN, get(live.public, "/api/snapshot"));
        let ((health, took), snapshot) = tokio::join!(health, snapshot);
        seen.healthz += 1;
        seen.healthz_slowest = seen.healthz_slowest.max(took);
        if !matches!(health, Ok(Ok(Answer { status: 200, .. }))) {
            seen.healthz_failed += 1;
        }
        match snapshot {
            Ok(Ok(Answer { status: 200, .. })) => seen.snapshots_served += 1,
            Ok(Ok(Answer {
                status: 503 | 429,
                retry_after: Some(5..=15),
            })) => seen.snapshots_refused += 1,
            other => seen.snapshots_failed.push(format!("{other:?}")),
        }
    }
    seen
}

/// A real WebSocket client reading all the time: how many frames it got.
fn watch(mut ws: tokio_tungstenite::WebSocketStream<TcpStream>) -> Arc<AtomicU64> {
    let frames = Arc::new(AtomicU64::new(0));
    let counted = frames.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Binary(b) = message {
                livemap_wire::peek(&b).expect("a valid frame");
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    frames
}

/// The flood that took the server down before the caps counted sockets
/// from accept: far more idle and slow-header sockets than the server has
/// descriptors. The caps turn the excess away with a 503 or 429 and a
/// Retry-After, the header timeout cuts off whatever gets in, the real
/// clients keep being served (or are refused cleanly, never left hanging),
/// the admin port answers within a second, and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_slow_sockets_leaves_real_clients_and_the_admin_port_alone() {
    let live = Livemap::start();
    assert_eq!(
        eventually("the admin port", || live.metric("livemap_sockets_limit ")).await,
        SOCKET_CAP,
        "the socket cap fits the open-file limit"
    );
    let mut ws = live.ws().await;
    next_snapshot(&mut ws).await;
    let frames = watch(ws);
    let rss_before = live.status_kib("VmRSS");
    // Every tick is 200 ms: a phase is 30 ticks; a reader gets at least a
    // third of them however loaded the machine.
    let ticks_at_least = (PHASE.as_millis() / 200 / 3) as u64;

    // One attacking address: the per-address cap keeps it to 300 sockets,
    // far below the total, so every real client is served.
    let attack = Attack::start(live.public, &[IpAddr::from([127, 0, 0, 2])], 1_500, 500);
    let before = frames.load(Ordering::Relaxed);
    let seen = probe(&live, PHASE).await;
    let mut late = live.ws().await;
    next_snapshot(&mut late).await;
    drop(late);
    let tally = attack.stop().await;
    eprintln!("one address: {tally:?}, {seen:?}");
    assert_eq!(seen.healthz_failed, 0, "{seen:?}");
    assert!(seen.snapshots_failed.is_empty(), "{seen:?}");
    assert_eq!(seen.snapshots_refused, 0, "{seen:?}");
    assert!(frames.load(Ordering::Relaxed) - before >= ticks_at_least);
    assert!(
        tally.refused_address.load(Ordering::Relaxed) > 0,
        "{tally:?}"
    );
    assert!(
        tally.admitted.load(Ordering::Relaxed) >= PER_ADDRESS as u64,
        "{tally:?}"
    );
    assert_eq!(tally.odd.load(Ordering::Relaxed), 0, "{tally:?}");
    assert!(
        Duration::from_millis(tally.longest_ms.load(Ordering::Relaxed)) <= CLOSED_WITHIN,
        "{tally:?}"
    );

    // Many addresses: together past the total cap. A real client may now
    // be refused, but only cleanly; the WebSocket already in keeps its
    // place and its frames.
    let sources: Vec<IpAddr> = (1..=20).map(|i| IpAddr::from([127, 0, 1, i])).collect();
    let attack = Attack::start(live.public, &sources, 2_000, 600);
    let before = frames.load(Ordering::Relaxed);
    let seen = probe(&live, PHASE).await;
    let tally = attack.stop().await;
    eprintln!("many addresses: {tally:?}, {seen:?}");
    assert_eq!(seen.healthz_failed, 0, "{seen:?}");
    assert!(seen.snapshots_failed.is_empty(), "{seen:?}");
    assert!(frames.load(Ordering::Relaxed) - before >= ticks_at_least);
    assert!(tally.refused_full.load(Ordering::Relaxed) > 0, "{tally:?}");
    assert!(tally.admitted.load(Ordering::Relaxed) > 0, "{tally:?}");
    assert_eq!(tally.odd.load(Ordering::Relaxed), 0, "{tally:?}");
    assert!(
        Duration::from_millis(tally.longest_ms.load(Ordering::Relaxed)) <= CLOSED_WITHIN,
        "{tally:?}"
    );

    let peak = live.status_kib("VmHWM");
    eprintln!("server RSS {rss_before} KiB before, peak {peak} KiB");
    assert!(
        peak < rss_before + RSS_GROWTH_LIMIT_KIB,
        "peak RSS {peak} KiB, {rss_before} KiB before the attack"
    );
    for line in [
        "livemap_sockets_header_timeouts_total ",
        "livemap_sockets_refused_total{reason=\"full\"} ",
        "livemap_sockets_refused_total{reason=\"address\"} ",
    ] {
        let n = live.metric(line).await.expect("metric");
        assert!(n > 0.0, "{line}{n}");
    }

    // After the attack: its sockets are gone and new clients are served.
    eventually("the attack's sockets to be closed", || async {
        let open = live.metric("livemap_sockets_open ").await?;
        (open <= 1.0).then_some(())
    })
    .await;
    let mut after = live.ws().await;
    next_snapshot(&mut after).await;
    let snapshot = tokio::time::timeout(PATIENCE, get(live.public, "/api/snapshot"))
        .await
        .expect("answered in time")
        .expect("connects");
    assert_eq!(snapshot.status, 200);
    let warned = live.log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        warned.contains("capped at 768"),
        "the lowered cap is logged: {warned}"
    );
    assert!(live.terminate(PATIENCE).await, "a clean shutdown");
}
