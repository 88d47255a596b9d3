//! The fan-out's limits, over real sockets: the socket caps (a small
//! reconnect storm included, and a WebSocket keeping its place after the
//! upgrade), the header timeout and head size, the origin check, and
//! clients that never read.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::util::{closed, eventually, get_once, next_snapshot, read_answer, TestServer, PATIENCE};

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a WebSocket from a chosen loopback address, with extra headers.
async fn ws_from(
    server: &TestServer,
    source: [u8; 4],
    headers: &[(&'static str, &str)],
    recv_buffer: Option<u32>,
) -> Result<Ws, tungstenite::Error> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::from(source), 0))
        .expect("bind a loopback source");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let stream = tokio::time::timeout(PATIENCE, socket.connect(server.addr))
        .await
        .expect("TCP connects in time")
        .expect("TCP connects");
    let mut request = server.ws_url().into_client_request().expect("request");
    for (k, v) in headers {
        request
            .headers_mut()
            .insert(*k, v.parse().expect("header value"));
    }
    tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("the handshake ends in time")
        .map(|(ws, _)| ws)
}

fn refused_with(result: Result<Ws, tungstenite::Error>) -> Option<(u16, Option<u64>)> {
    match result {
        Err(tungstenite::Error::Http(resp)) => Some((
            resp.status().as_u16(),
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        )),
        _ => None,
    }
}

async fn first_frame(ws: &mut Ws) -> livemap_wire::Snapshot {
    next_snapshot(ws).await
}

async fn metric(server: &TestServer, line_start: &str) -> Option<f64> {
    server
        .metrics()
        .await?
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

/// Sixty clients at once against a cap of forty: forty are served, the
/// rest get 503 with a Retry-After of 5 to 15 seconds, and a place that is
/// given back can be taken again.
#[tokio::test]
async fn a_storm_past_the_cap_is_turned_away_with_retry_after() {
    let server = TestServer::start(|c| {
        c.limits.max_connections = 40;
        c.limits.max_per_address = 0;
    })
    .await;
    let attempts = (0..60).map(|i| ws_from(&server, [127, 0, 0, 1 + (i % 4) as u8], &[], None));
    let results = futures_util::future::join_all(attempts).await;
    let mut open = Vec::new();
    let mut refused = Vec::new();
    for r in results {
        match r {
            Ok(ws) => open.push(ws),
            Err(e) => refused.push(refused_with(Err(e)).expect("an HTTP refusal")),
        }
    }
    assert_eq!(open.len(), 40);
    assert_eq!(refused.len(), 20);
    assert!(refused
        .iter()
        .all(|(status, after)| *status == 503 && after.is_some_and(|s| (5..=15).contains(&s))));
    for ws in &mut open {
        assert!(
            first_frame(ws).await.version > 0,
            "every admitted client is served"
        );
    }
    open.truncate(30);
    let mut again = eventually("a freed place", || async {
        ws_from(&server, [127, 0, 0, 9], &[], None).await.ok()
    })
    .await;
    first_frame(&mut again).await;
    let refused_total = metric(&server, "livemap_sockets_refused_total{reason=\"full\"} ")
        .await
        .expect("metric");
    assert!(refused_total >= 20.0);
}

#[tokio::test]
async fn one_address_is_capped_and_foreign_origins_are_refused() {
    let server = TestServer::start(|c| {
        c.limits.max_per_address = 3;
        c.limits.allowed_origins = vec!["https://shop.example".into()];
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            ws_from(&server, [127, 0, 0, 1], &[], None)
                .await
                .expect("under the cap"),
        );
    }
    let r = ws_from(&server, [127, 0, 0, 1], &[], None).await;
    assert_eq!(refused_with(r).map(|(s, _)| s), Some(429));
    ws_from(&server, [127, 0, 0, 2], &[], None)
        .await
        .expect("another address has its own places");

    let evil = ws_from(
        &server,
        [127, 0, 0, 3],
        &[("origin", "https://evil.example")],
        None,
    )
    .await;
    assert_eq!(refused_with(evil).map(|(s, _)| s), Some(403));
    let own = format!("http://{}", server.addr);
    ws_from(&server, [127, 0, 0, 3], &[("origin", own.as_str())], None)
        .await
        .expect("the server's own page");
    ws_from(
        &server,
        [127, 0, 0, 3],
        &[("origin", "https://shop.example")],
        None,
    )
    .await
    .expect("an allowed origin");
}

/// A client that stops reading fills its socket and is dropped after the
/// write timeout; a reading client beside it keeps getting every tick.
#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_the_others_keep_up() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let server = TestServer::start(|c| {
        c.tick = Duration::from_millis(20);
        c.demo_rate = 50_000;
        c.engine.arcs_per_tick = 400;
        c.write_timeout = Duration::from_secs(1);
    })
    .await;
    // A tiny receive window so that the stall comes quickly.
    let _stuck = ws_from(&server, [127, 0, 0, 5], &[], Some(2_048))
        .await
        .expect("connects");
    let mut reader = ws_from(&server, [127, 0, 0, 6], &[], None)
        .await
        .expect("connects");
    // The reader reads all the time, on its own task.
    let newest = Arc::new(AtomicU64::new(0));
    let reading = {
        let newest = newest.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = reader.next().await {
                if let Message::Binary(b) = msg {
                    let v = livemap_wire::peek(&b).expect("a frame").version;
                    newest.fetch_max(v, Ordering::Relaxed);
                }
            }
        })
    };
    eventually("the stuck client to be dropped", || async {
        let dropped = metric(
            &server,
            "livemap_clients_dropped_slow_total{transport=\"ws\"} ",
        )
        .await?;
        (dropped >= 1.0).then_some(())
    })
    .await;
    assert_eq!(
        metric(&server, "livemap_connections{transport=\"ws\"} ").await,
        Some(1.0),
        "only the reader is left"
    );
    let seen = newest.load(Ordering::Relaxed);
    eventually("the reader to get newer ticks", || async {
        (newest.load(Ordering::Relaxed) > seen + 5).then_some(())
    })
    .await;
    assert!(!reading.is_finished(), "the reader was never dropped");
}

/// The upgrade hands the socket from the HTTP connection to the
/// WebSocket's task; the socket's place under the cap goes with it and is
/// given back only when the WebSocket ends.
#[tokio::test]
async fn a_websocket_keeps_its_place_after_the_upgrade() {
    let server = TestServer::start(|c| {
        c.limits.max_connections = 1;
        c.limits.max_per_address = 0;
    })
    .await;
    let mut ws = ws_from(&server, [127, 0, 0, 1], &[], None)
        .await
        .expect("the one place");
    first_frame(&mut ws).await;
    let refused = get_once(server.addr, "/healthz").await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.retry_after.is_some_and(|s| (5..=15).contains(&s)),
        "{refused:?}"
    );
    assert_eq!(metric(&server, "livemap_sockets_open ").await, Some(1.0));
    assert_eq!(
        metric(&server, "livemap_connections{transport=\"ws\"} ").await,
        Some(1.0)
    );
    drop(ws);
    eventually("the place to be given back", || async {
        (get_once(server.addr, "/healthz").await.status == 200).then_some(())
    })
    .await;
}

/// A socket that sends nothing, and a keep-alive socket idle after its
/// answer, are both closed after the header timeout; so is one that sends
/// its head a byte at a time, however steadily.
#[tokio::test]
async fn idle_and_slow_sockets_are_closed_after_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let server = TestServer::start(|c| c.header_timeout = timeout).await;
    // Slack for a loaded machine; the close must come after the timeout.
    let within = timeout + Duration::from_secs(3);

    let connected = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.expect("connects");
    let took = closed(&mut silent).await - connected;
    assert!(
        took >= timeout - Duration::from_millis(100) && took <= within,
        "{took:?}"
    );

    let mut kept = TcpStream::connect(server.addr).await.expect("connects");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("writes");
    assert_eq!(read_answer(&mut kept).await.status, 200);
    let answered = Instant::now();
    let took = closed(&mut kept).await - answered;
    assert!(
        took >= timeout - Duration::from_millis(300) && took <= within,
        "{took:?}"
    );

    let mut slow = TcpStream::connect(server.addr).await.expect("connects");
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\n").await.expect("writes");
    let dribble = async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if slow.write_all(b"x").await.is_err() {
                return Instant::now();
            }
        }
    };
    let cut = tokio::time::timeout(PATIENCE, dribble)
        .await
        .expect("the server cuts the slow head off");
    let took = cut - started;
    assert!(
        took >= timeout - Duration::from_millis(100) && took <= within,
        "{took:?}"
    );

    let timeouts = metric(&server, "livemap_sockets_header_timeouts_total ")
        .await
        .expect("metric");
    assert!(timeouts >= 3.0, "{timeouts}");
    assert_eq!(metric(&server, "livemap_sockets_open ").await, Some(0.0));
}

/// A request head past the server's buffer is answered 431 and closed,
/// instead of held in memory.
#[tokio::test]
async fn an_oversized_head_is_refused() {
    let server = TestServer::start(|_| {}).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    let padding = "a".repeat(livemap_server::http::fanout::MAX_HEAD + 1024);
    let request = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: {padding}\r\n\r\n");
    // The server may close before taking it all.
    let _ = stream.write_all(request.as_bytes()).await;
    assert_eq!(read_answer(&mut stream).await.status, 431);
    closed(&mut stream).await;
}

/// "Watching now": the snapshot counts the browsers on the server (three
/// WebSockets and an event stream), and stops counting them when they go.
#[tokio::test]
async fn the_snapshot_counts_the_browsers_watching_now() {
    let server = TestServer::start(|_| {}).await;
    assert_eq!(server.snapshot().await["viewers"], 0, "nobody yet");
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(
            ws_from(&server, [127, 0, 0, 1], &[], None)
                .await
                .expect("WebSocket"),
        );
    }
    let sse = reqwest::get(server.url("/sse")).await.expect("SSE");
    assert_eq!(sse.status(), 200);
    eventually("four viewers in the snapshot", || async {
        (server.snapshot().await["viewers"] == 4).then_some(())
    })
    .await;
    drop(sockets);
    drop(sse);
    eventually("the viewers gone", || async {
        (server.snapshot().await["viewers"] == 0).then_some(())
    })
    .await;
}
