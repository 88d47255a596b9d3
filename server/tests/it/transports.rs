//! Every transport delivers the snapshot; the JSON document has every field
//! the public API promises.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::util::{eventually, next_snapshot, TestServer, PATIENCE};

#[tokio::test]
async fn snapshot_json_has_every_public_field() {
    let server = TestServer::start(|_| {}).await;
    let s = eventually("orders to be counted", || async {
        let s = server.snapshot().await;
        (s["totals"]["orders"].as_u64()? > 0 && s["ingest"]["filtered"].as_u64()? > 0).then_some(s)
    })
    .await;
    assert!(s["version"].as_u64().is_some());
    let generated = s["generated_at"].as_str().expect("generated_at");
    assert!(
        livemap_events::time::parse_rfc3339_ms(generated).is_some(),
        "{generated}"
    );
    assert_eq!(s["stale"], serde_json::json!(false));
    for field in ["orders", "gmv_usd_cents", "unique_shoppers"] {
        assert!(
            s["totals"][field].as_u64().is_some(),
            "totals.{field} is an integer: {s}"
        );
    }
    assert!(s["totals"]["carbon_kg"].as_f64().is_some_and(|kg| kg > 0.0));
    assert!(s["totals"]["gmv_usd_cents"].as_u64() > Some(0));
    assert!(s["rates"]["orders_per_minute"].as_f64().is_some());
    assert!(s["rates"]["gmv_usd_cents_per_minute"].as_u64().is_some());
    for field in ["accepted", "duplicates", "filtered", "late"] {
        assert!(s["ingest"][field].as_u64().is_some(), "ingest.{field}: {s}");
    }
    assert!(s["ingest"]["rejected"].is_object());
    assert!(s["trends"].is_array());
    // Breakdowns: every channel, and countries that add up to the totals.
    let channels = s["breakdowns"]["by_channel"]
        .as_array()
        .expect("by_channel");
    assert_eq!(channels.len(), livemap_wire::Channel::ALL.len());
    let countries = s["breakdowns"]["by_country"]
        .as_array()
        .expect("by_country");
    let sum = |list: &Vec<serde_json::Value>, f: &str| {
        list.iter().filter_map(|x| x[f].as_u64()).sum::<u64>()
    };
    assert_eq!(
        sum(countries, "orders"),
        s["totals"]["orders"].as_u64().expect("orders")
    );
    assert_eq!(
        sum(channels, "gmv_usd_cents"),
        s["totals"]["gmv_usd_cents"].as_u64().expect("gmv")
    );
    assert!(countries
        .iter()
        .all(|c| c["country"].as_str().is_some_and(|k| k.len() == 2)));
    assert_eq!(s["ingest"]["accepted"], s["totals"]["orders"]);

    let arcs = eventually("arcs to be sampled", || async {
        let s = server.snapshot().await;
        let arcs = s["arcs"].as_array()?.clone();
        (!arcs.is_empty()).then_some(arcs)
    })
    .await;
    for arc in arcs {
        for end in ["from", "to"] {
            let p = arc[end].as_array().expect("[lat, lon]");
            assert_eq!(p.len(), 2);
        }
        assert!(arc["usd_cents"].as_u64().is_some());
        assert!(arc["at"]
            .as_str()
            .and_then(livemap_events::time::parse_rfc3339_ms)
            .is_some());
    }

    let v1 = s["version"].as_u64().expect("version");
    eventually("a newer version", || async {
        (server.snapshot().await["version"].as_u64()? > v1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn websocket_pushes_every_tick_with_growing_versions() {
    let server = TestServer::start(|_| {}).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("WebSocket connects");
    let mut last: Option<livemap_wire::Snapshot> = None;
    for _ in 0..6 {
        let snap = next_snapshot(&mut ws).await;
        assert_eq!(snap.tick_ms, 200);
        if let Some(prev) = &last {
            assert!(snap.version > prev.version, "versions grow");
            assert!(
                snap.totals.orders >= prev.totals.orders,
                "totals never go back"
            );
            assert!(snap.totals.gmv_usd_cents >= prev.totals.gmv_usd_cents);
        }
        last = Some(snap);
    }
    assert!(last.is_some_and(|s| s.totals.orders > 0));
}

/// A demo started with 90 minutes of backfill: `/api/history` covers them
/// minute by minute, trends exist (they need one hour), and the binary
/// stream carries the recent minutes, rankings and a short trend list.
#[tokio::test]
async fn history_covers_the_backfilled_sale_and_the_stream_carries_the_board() {
    let server = TestServer::start(|c| {
        c.demo_rate = 200;
        c.demo_backfill = Duration::from_secs(90 * 60);
    })
    .await;
    let client = reqwest::Client::new();
    let (history, snapshot) = eventually("90 minutes of history", || async {
        let h: serde_json::Value = client
            .get(server.url("/api/history"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let s = server.snapshot().await;
        (h["orders"].as_array()?.len() >= 90 && s["trends"].as_array()?.len() > 1).then_some((h, s))
    })
    .await;
    assert_eq!(history["step_ms"], 60_000);
    let series = |name: &str| -> Vec<u64> {
        history[name]
            .as_array()
            .expect("a series")
            .iter()
            .map(|v| v.as_u64().expect("integers"))
            .collect()
    };
    let (orders, cents) = (series("orders"), series("gmv_usd_cents"));
    assert_eq!(orders.len(), cents.len());
    assert_eq!(orders.len(), series("carbon_grams").len());
    let start = history["start_ms"].as_i64().expect("start_ms");
    assert_eq!(start % 60_000, 0, "minutes start on the minute");
    // Every minute of the backfill has orders: no holes in the demo.
    let quiet = orders.iter().filter(|&&n| n == 0).count();
    assert!(quiet <= 2, "{quiet} empty minutes in {orders:?}");
    // Orders past the allowed lateness are in the totals but not in a
    // minute; everything else is in both.
    let total = snapshot["totals"]["orders"].as_u64().expect("orders");
    let in_minutes: u64 = orders.iter().sum();
    assert!(
        in_minutes > 0 && in_minutes <= total + 1_000,
        "{in_minutes} vs {total}"
    );

    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("WebSocket connects");
    // The newest keyframe a client joins on may predate the end of the
    // backfill (they come every 5 s): judge the first keyframe at least
    // as new as the snapshot that showed the whole history.
    let seen = snapshot["version"].as_u64().expect("version");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let snap = loop {
        let snap = next_snapshot(&mut ws).await;
        if snap.keyframe && snap.version >= seen {
            break snap;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no keyframe as new as version {seen}"
        );
    };
    assert_eq!(snap.minutes.len(), 3);
    assert!(snap
        .minutes
        .windows(2)
        .all(|w| w[1].start_ms - w[0].start_ms == 60_000));
    assert!(!snap.trends.is_empty() && snap.trends.len() <= 10);
    assert!(!snap.top_shops.is_empty() && snap.top_shops.len() <= 10);
    assert!(!snap.top_cities.is_empty() && snap.top_cities.len() <= 10);
    assert!(snap.top_shops.windows(2).all(|w| w[0].value >= w[1].value));
    server.stop().await.expect("clean stop");
}

fn header_u64(resp: &reqwest::Response, name: &str) -> u64 {
    resp.headers()[name]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn long_poll_sends_the_keyframe_first_then_waits_when_current() {
    // Ticks far apart, so "current" stays current for the whole test.
    let server = TestServer::start(|c| c.tick = Duration::from_secs(60)).await;
    let client = reqwest::Client::new();
    let resp = client
        .get(server.url("/api/poll?v=0&k=0"))
        .send()
        .await
        .expect("poll");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let version = header_u64(&resp, "x-livemap-version");
    let snap =
        livemap_wire::decode(&resp.bytes().await.expect("body")).expect("FlatBuffers snapshot");
    assert_eq!(snap.version, version);
    assert!(snap.keyframe, "a client with nothing gets a keyframe");
    assert_eq!(snap.channels.len(), livemap_wire::Channel::ALL.len());

    let resp = client
        .get(server.url(&format!("/api/poll?v={version}&k={version}&timeout=1")))
        .send()
        .await
        .expect("poll");
    assert_eq!(resp.status(), 204, "nothing newer within the wait");

    // A version from some other life of the server is answered at once.
    let resp = client
        .get(server.url(&format!("/api/poll?v={}&k={version}", version + 1000)))
        .send()
        .await
        .expect("poll");
    assert_eq!(resp.status(), 200);

    // Gzipped once per tick for clients that take it.
    let resp = client
        .get(server.url("/api/poll?v=0&k=0"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("poll");
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&resp.bytes().await.expect("body")[..]),
        &mut raw,
    )
    .expect("gunzips");
    assert_eq!(
        livemap_wire::decode(&raw).expect("snapshot").version,
        version
    );
}

#[tokio::test]
async fn long_poll_returns_the_next_frame_when_it_is_built() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let first = client
        .get(server.url("/api/poll?v=0&k=0"))
        .send()
        .await
        .expect("poll");
    let k = header_u64(&first, "x-livemap-version");
    let keyframe = livemap_wire::decode(&first.bytes().await.expect("body")).expect("snapshot");
    assert_eq!(keyframe.version, k);
    let next = client
        .get(server.url(&format!("/api/poll?v={k}&k={k}")))
        .send()
        .await
        .expect("poll");
    assert_eq!(next.status(), 200);
    let snap = livemap_wire::decode(&next.bytes().await.expect("body")).expect("snapshot");
    assert!(snap.version > k, "{} after {k}", snap.version);
    // A client that has the keyframe gets a delta on top of it: the
    // counters it carries go on from the keyframe's, never back.
    assert!(!snap.keyframe, "the next frame is a delta");
    assert!(
        snap.totals.orders >= keyframe.totals.orders,
        "{} after {}",
        snap.totals.orders,
        keyframe.totals.orders
    );
}

/// Reads Server-Sent Events until `n` have data, as (event name, bytes).
async fn sse_events(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    n: usize,
) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < n {
        let chunk = tokio::time::timeout(PATIENCE, body.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("chunk");
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let name = event
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("message")
                .to_owned();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap_or_else(|_| data.as_bytes().to_vec());
                events.push((name, bytes));
            }
        }
    }
    events
}

#[tokio::test]
async fn sse_streams_the_binary_frames_keyframe_first() {
    let server = TestServer::start(|_| {}).await;
    let resp = reqwest::get(server.url("/sse")).await.expect("GET /sse");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let events = sse_events(&mut body, 4).await;
    let frames: Vec<livemap_wire::Snapshot> = events
        .iter()
        .map(|(_, b)| livemap_wire::decode(b).expect("a FlatBuffers frame"))
        .collect();
    assert_eq!(events[0].0, "keyframe");
    assert!(frames[0].keyframe && !frames[0].channels.is_empty());
    for ((name, _), f) in events.iter().zip(&frames) {
        assert_eq!(name == "keyframe", f.keyframe, "the event names the frame");
    }
    assert!(
        frames.windows(2).all(|w| w[1].version > w[0].version),
        "versions grow"
    );
}

#[tokio::test]
async fn serves_the_page_and_refuses_unknown_paths() {
    let server = TestServer::start(|_| {}).await;
    let page = reqwest::get(server.url("/")).await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/html"));
    assert!(page.text().await.expect("body").contains("app.js"));

    // Assets go out gzipped to those who take it, and a reload with the
    // ETag costs a 304.
    let client = reqwest::Client::new();
    let plain = client.get(server.url("/app.js")).send().await.expect("GET");
    let etag = plain.headers()["etag"].clone();
    let plain = plain.bytes().await.expect("body");
    let zipped = client
        .get(server.url("/app.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET gzip");
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let zipped = zipped.bytes().await.expect("body");
    assert!(
        zipped.len() < plain.len() / 2,
        "{} of {}",
        zipped.len(),
        plain.len()
    );
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&zipped[..]),
        &mut unzipped,
    )
    .expect("gunzips");
    assert_eq!(unzipped, plain);
    let again = client
        .get(server.url("/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("GET again");
    assert_eq!(again.status(), 304);

    let missing = reqwest::get(server.url("/no/such/thing"))
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);
    let health = reqwest::get(server.url("/healthz"))
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn shutdown_closes_streams_and_returns() {
    let server = TestServer::start(|_| {}).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("connects");
    let first = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("first frame");
    assert!(first.is_some());
    let sse = reqwest::get(server.url("/sse")).await.expect("GET /sse");
    let mut sse = sse.bytes_stream();
    sse_events(&mut sse, 1).await;
    server.stop().await.expect("clean shutdown");
    // The socket is told to reconnect: close code 1012, Service Restart.
    let code = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(frame) = msg {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("closed in time");
    assert_eq!(code, Some(1012));
    // The event stream says so too, and ends.
    let mut rest = String::new();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(PATIENCE, sse.next()).await {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.contains("event: reconnect"), "{rest}");
}

#[tokio::test]
async fn oversized_client_frames_close_the_socket() {
    use futures_util::SinkExt;
    let server = TestServer::start(|_| {}).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("connects");
    let _ = ws.send(Message::Binary(vec![0u8; 64 * 1024].into())).await;
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true));
}

/// The server writes its own frames (no library in between), so the
/// protocol's replies are checked from a real client: a ping gets its
/// pong with the same payload, a close gets a close, and a request that
/// is not a WebSocket handshake is refused.
#[tokio::test]
async fn pings_closes_and_bad_handshakes() {
    use futures_util::SinkExt;
    let server = TestServer::start(|_| {}).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("connects");
    ws.send(Message::Ping("are you there".into()))
        .await
        .expect("ping sent");
    let pong = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Pong(data) = msg {
                return Some(data);
            }
        }
        None
    })
    .await
    .expect("pong in time");
    assert_eq!(pong.as_deref(), Some(&b"are you there"[..]));
    ws.close(None).await.expect("close sent");
    let ended = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the server answers a close and hangs up");

    let plain = reqwest::get(server.ws_url().replace("ws://", "http://"))
        .await
        .expect("GET /ws");
    assert_eq!(plain.status(), 400);
}
