//! Kafka ingest against Apache Kafka (see `broker.rs`): exact totals for a mixed batch, a `kill -9` and
//! restart, a broker cut and restored, and a second member joining and
//! leaving the group.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use livemap_engine::ingest::{Engine, EngineConfig};
use livemap_events::demo::{DemoMix, Generator};
use livemap_server::clock::{Clock, SystemClock};
use livemap_server::kafka::source::{KafkaConfig, StartFrom};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tokio::net::{TcpListener, TcpStream};

use crate::broker::Broker;
use crate::util::{eventually_within, TestServer};

pub(crate) const KAFKA_PATIENCE: Duration = Duration::from_secs(90);

/// A mixed batch: the demo mix with more malformed messages, plus
/// tombstones and empty values. Keys are shop ids, so a redelivered event
/// lands on its original's partition, as upstream's keying guarantees.
pub(crate) fn mixed_batch(seed: u64, n: usize) -> Vec<Option<Vec<u8>>> {
    let mix = DemoMix {
        malformed: 0.02,
        ..DemoMix::default()
    };
    mixed_batch_with(seed, n, mix)
}

pub(crate) fn mixed_batch_with(seed: u64, n: usize, mix: DemoMix) -> Vec<Option<Vec<u8>>> {
    let mut g = Generator::new(seed, mix);
    let now = SystemClock.now_ms();
    let mut buf = Vec::new();
    let mut out: Vec<Option<Vec<u8>>> = (0..n)
        .map(|i| {
            g.next_message(now - 120_000 + (i as i64) * 5, &mut buf);
            Some(buf.clone())
        })
        .collect();
    for i in 0..20 {
        out.insert(
            i * 97 % out.len(),
            if i % 2 == 0 { None } else { Some(Vec::new()) },
        );
    }
    out
}

pub(crate) fn produce(port: u16, topic: &str, messages: &[Option<Vec<u8>>]) {
    produce_keyed(port, topic, messages, |m| {
        m.and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
            .and_then(|v| v["shop"]["id"].as_u64())
            .unwrap_or(0)
            .to_string()
    })
}

/// [`produce`] off the runtime's threads.
pub(crate) async fn produce_now(port: u16, topic: &str, messages: &[Option<Vec<u8>>]) {
    let (topic, messages) = (topic.to_owned(), messages.to_vec());
    tokio::task::spawn_blocking(move || produce(port, &topic, &messages))
        .await
        .expect("produced");
}

/// The snapshot of `p` once it shows `n` messages processed.
pub(crate) async fn shows_all(p: &Process, n: usize) -> serde_json::Value {
    eventually_within(KAFKA_PATIENCE, "every message shown", || async {
        let s = p.snapshot().await?;
        (processed(&s) >= n as u64).then_some(s)
    })
    .await
}

/// [`produce`] with keys of the caller's choosing.
pub(crate) fn produce_keyed(
    port: u16,
    topic: &str,
    messages: &[Option<Vec<u8>>],
    mut key_of: impl FnMut(Option<&[u8]>) -> String,
) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("linger.ms", "5")
        .set("acks", "all")
        .create()
        .expect("producer");
    for m in messages {
        let key = key_of(m.as_deref());
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key(&key);
        if let Some(v) = m {
            record = record.payload(v);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("all delivered");
}

/// What a single uninterrupted engine makes of the messages.
pub(crate) fn expected(messages: &[Option<Vec<u8>>]) -> serde_json::Value {
    let mut e = Engine::new(EngineConfig::default());
    let now = SystemClock.now_ms();
    for m in messages {
        e.ingest(m.as_deref(), None, now);
    }
    let rejected: BTreeMap<String, u64> = e.counts().rejected_by_reason().into_iter().collect();
    serde_json::json!({
        "orders": e.aggregate().orders,
        "gmv_usd_cents": e.aggregate().gmv_usd_cents,
        "unique_shoppers": e.aggregate().shoppers.estimate(),
        "carbon_g": e.aggregate().carbon_grams,
        "accepted": e.counts().accepted,
        "duplicates": e.counts().duplicates,
        "filtered": e.counts().filtered,
        "rejected": rejected,
    })
}

/// The same numbers, read from a server's `/api/snapshot`.
pub(crate) fn observed(s: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "orders": s["totals"]["orders"],
        "gmv_usd_cents": s["totals"]["gmv_usd_cents"],
        "unique_shoppers": s["totals"]["unique_shoppers"],
        "carbon_g": (s["totals"]["carbon_kg"].as_f64().unwrap_or(-1.0) * 1000.0).round() as u64,
        "accepted": s["ingest"]["accepted"],
        "duplicates": s["ingest"]["duplicates"],
        "filtered": s["ingest"]["filtered"],
        "rejected": s["ingest"]["rejected"],
    })
}

pub(crate) fn processed(s: &serde_json::Value) -> u64 {
    let i = &s["ingest"];
    let rejected: u64 = i["rejected"]
        .as_object()
        .map(|o| o.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or(0);
    i["accepted"].as_u64().unwrap_or(0)
        + i["duplicates"].as_u64().unwrap_or(0)
        + i["filtered"].as_u64().unwrap_or(0)
        + rejected
}

pub(crate) fn temp_state(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("livemap-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn kafka_config(port: u16, topic: &str, group: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: format!("127.0.0.1:{port}"),
        topic: topic.to_owned(),
        group_id: group.to_owned(),
        start_from: StartFrom::Earliest,
        options: Vec::new(),
        routed: false,
    }
}

async fn start_kafka_server(port: u16, topic: &str, group: &str, state: PathBuf) -> TestServer {
    let kafka = kafka_config(port, topic, group);
    TestServer::start(move |c| {
        c.kafka = Some(kafka);
        c.state_dir = state;
        c.checkpoint_every = Duration::from_secs(1);
        c.lag_limit = 1_000;
    })
    .await
}

async fn wait_processed(server: &TestServer, n: u64) -> serde_json::Value {
    eventually_within(
        KAFKA_PATIENCE,
        &format!("{n} messages processed"),
        || async {
            let s = server.snapshot().await;
            (processed(&s) == n).then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_totals_are_exact_for_a_mixed_batch() {
    let broker = Broker::shared();
    broker.create_topic("mixed", 4).await;
    let messages = mixed_batch(1, 20_000);
    let want = expected(&messages);
    assert!(
        want["duplicates"].as_u64() > Some(0)
            && want["rejected"].as_object().is_some_and(|o| o.len() >= 7)
    );
    let (port, msgs) = (broker.port, messages.clone());
    tokio::task::spawn_blocking(move || produce(port, "mixed", &msgs))
        .await
        .expect("produced");
    let server = start_kafka_server(broker.port, "mixed", "g-mixed", temp_state("mixed")).await;
    let s = wait_processed(&server, messages.len() as u64).await;
    assert_eq!(observed(&s), want);
    eventually_within(KAFKA_PATIENCE, "fresh once caught up", || async {
        (server.snapshot().await["stale"] == serde_json::json!(false)).then_some(())
    })
    .await;

    // The operator sees the same numbers, the lag and the checkpoints.
    let metrics = eventually_within(
        KAFKA_PATIENCE,
        "metrics with lag and a checkpoint",
        || async {
            let text = server.metrics().await?;
            (text.contains("livemap_consumer_lag_messages{partition=\"0\"}")
                && text.contains("livemap_consumer_lag_seconds{partition=\"0\"} 0.0\n")
                && text.contains("livemap_event_time_lag_seconds ")
                && text.contains("livemap_checkpoints_total{result=\"ok\"}")
                && !text.contains("livemap_checkpoints_total{result=\"ok\"} 0"))
            .then_some(text)
        },
    )
    .await;
    let accepted = format!(
        "livemap_events_total{{outcome=\"accepted\"}} {}",
        want["accepted"]
    );
    assert!(metrics.contains(&accepted), "{accepted} not in\n{metrics}");
    assert!(metrics.contains("livemap_events_total{outcome=\"rejected\",reason=\"too_large\"}"));
    eventually_within(KAFKA_PATIENCE, "ready once caught up", || async {
        let r = reqwest::get(server.admin_url("/readyz")).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
}

/// Where [`one_batch_committed_inside`] commits the group's offset.
pub(crate) const COMMITTED_INSIDE: usize = 1_000;

/// A 1,520-message batch rich in checkouts and duplicates, produced to
/// partition 0 of the broker's new 1-partition `topic` as one record
/// batch, with `group`'s offset committed inside it, at
/// [`COMMITTED_INSIDE`].
pub(crate) async fn one_batch_committed_inside(
    broker: &Broker,
    topic: &'static str,
    group: &'static str,
    seed: u64,
) -> Vec<Option<Vec<u8>>> {
    broker.create_topic(topic, 1).await;
    let mix = DemoMix {
        checkout: 0.5,
        duplicate: 0.2,
        malformed: 0.02,
        ..DemoMix::default()
    };
    let messages = mixed_batch_with(seed, 1_500, mix);
    let (port, msgs) = (broker.port, messages.clone());
    tokio::task::spawn_blocking(move || {
        produce_one_batch(port, topic, &msgs);
        commit_for_group(port, topic, group, COMMITTED_INSIDE as i64);
    })
    .await
    .expect("produced and committed");
    messages
}

/// Produces `messages` to partition 0 of `topic` as one record batch.
fn produce_one_batch(port: u16, topic: &str, messages: &[Option<Vec<u8>>]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("linger.ms", "2000")
        .set("batch.num.messages", "100000")
        .set("compression.codec", "lz4")
        .set("acks", "all")
        .create()
        .expect("producer");
    for m in messages {
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).partition(0);
        if let Some(v) = m {
            record = record.payload(v);
        }
        producer.send(record).map_err(|(e, _)| e).expect("queued");
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("all delivered");
}

/// Commits `offset` of partition 0 of `topic` for `group`, as a member
/// that stopped there would have.
fn commit_for_group(port: u16, topic: &str, group: &str, offset: i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .expect("offset");
    consumer.commit(&tpl, CommitMode::Sync).expect("committed");
}

/// The counts that add up exactly over parts of a stream (unique shoppers
/// is an estimate, and rejections a map).
const EXACT_COUNTS: [&str; 6] = [
    "orders",
    "gmv_usd_cents",
    "carbon_g",
    "accepted",
    "duplicates",
    "filtered",
];

/// The counts that add up exactly, of a snapshot's [`observed`] numbers.
pub(crate) fn exact_part(observed: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for k in EXACT_COUNTS {
        out.insert(k.to_owned(), observed[k].clone());
    }
    out.into()
}

/// Kafka answers a fetch with the record batch that holds the fetch
/// offset, and the client drops the records before it: a group whose
/// committed offset lies inside a batch counts from exactly there. (A
/// process with no state of its own resuming from a bare group offset
/// reads nothing before it, so its filter knows only what it reads.)
#[tokio::test(flavor = "multi_thread")]
async fn a_committed_offset_inside_a_record_batch_is_where_counting_starts() {
    let broker = Broker::shared();
    let messages = one_batch_committed_inside(broker, "inside", "g-inside", 5).await;
    let server = start_kafka_server(broker.port, "inside", "g-inside", temp_state("inside")).await;
    let s = wait_processed(&server, (messages.len() - COMMITTED_INSIDE) as u64).await;
    let want = exact_part(&expected(&messages[COMMITTED_INSIDE..]));
    assert!(want["duplicates"].as_u64() > Some(0), "{want}");
    assert_eq!(exact_part(&observed(&s)), want);
    let metrics = server.metrics().await.unwrap_or_default();
    assert!(
        metrics.contains("livemap_resume_skipped_offsets_total 0\n"),
        "{metrics}"
    );
}

/// Runs the real binary, so that it can be killed with SIGKILL.
pub(crate) struct Process {
    child: Child,
    pub(crate) base: String,
    pub(crate) admin: String,
}

impl Process {
    fn start(port: u16, topic: &str, state: &std::path::Path) -> Process {
        Process::start_in_group(port, topic, "g-kill", state)
    }

    pub(crate) fn start_in_group(
        port: u16,
        topic: &str,
        group: &str,
        state: &std::path::Path,
    ) -> Process {
        let state = state.to_string_lossy();
        Process::spawn(
            port,
            topic,
            &[
                "--group-id",
                group,
                "--checkpoint-secs",
                "1",
                "--state-dir",
                &state,
                // A dead member's partitions move after this, not 30 s.
                "--kafka-option",
                "session.timeout.ms=6000",
                "--kafka-option",
                "heartbeat.interval.ms=500",
            ],
        )
    }

    /// `livemap` on port-0 listeners, reading `topic` on the broker at
    /// `port`, with `extra` flags.
    pub(crate) fn spawn(port: u16, topic: &str, extra: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_livemap"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args([
                "--kafka-brokers",
                &format!("127.0.0.1:{port}"),
                "--topic",
                topic,
            ])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("LIVEMAP_TEST_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("livemap starts");
        let (public, admin) = crate::util::listening_addresses(&mut child);
        let (base, admin) = (format!("http://{public}"), format!("http://{admin}"));
        Process { child, base, admin }
    }

    /// The process's resident memory, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kib| kib.parse().ok())
            })
            .unwrap_or(0)
    }

    pub(crate) async fn snapshot(&self) -> Option<serde_json::Value> {
        reqwest::get(format!("{}/api/snapshot", self.base))
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    pub(crate) async fn metrics(&self) -> Option<String> {
        reqwest::get(format!("{}/metrics", self.admin))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    pub(crate) fn kill_9(mut self) {
        // std's kill is SIGKILL on Unix: no shutdown code runs.
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Sends the process a signal by name (`STOP`, `CONT`, ...).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIG{name} sent");
    }

    /// SIGTERM, as a deploy stops a process; waits for it to exit (at
    /// most `patience`, then SIGKILL) and says how long it took and
    /// whether it exited cleanly.
    pub(crate) async fn terminate(mut self, patience: Duration) -> (Duration, bool) {
        let started = std::time::Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM sent");
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                return (started.elapsed(), exit.success());
            }
            if started.elapsed() > patience {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return (started.elapsed(), false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_stream_then_restart_counts_every_order_once() {
    let broker = Broker::shared();
    broker.create_topic("killed", 4).await;
    let messages = mixed_batch(2, 60_000);
    let want = expected(&messages);
    let state = temp_state("kill");
    let (first, rest) = messages.split_at(20_000);
    let (port, first_part) = (broker.port, first.to_vec());
    tokio::task::spawn_blocking(move || produce(port, "killed", &first_part))
        .await
        .expect("produced");

    let p = Process::start(broker.port, "killed", &state);
    // Killed once it has counted some and written a checkpoint of them
    // (the one written at start holds nothing), while the rest is still
    // being produced and read.
    eventually_within(KAFKA_PATIENCE, "some messages counted", || async {
        (processed(&p.snapshot().await?) > 0).then_some(())
    })
    .await;
    let written = checkpoints_written(&p).await;
    eventually_within(KAFKA_PATIENCE, "a checkpoint of them", || async {
        (checkpoints_written(&p).await > written).then_some(())
    })
    .await;
    let (port, rest_part) = (broker.port, rest.to_vec());
    let producing = tokio::task::spawn_blocking(move || produce(port, "killed", &rest_part));
    // Mid-stream: killed once it has counted some of the rest, while the
    // rest is still being produced and read.
    let counted_first = processed(&p.snapshot().await.expect("a snapshot"));
    eventually_within(KAFKA_PATIENCE, "some of the rest counted", || async {
        let s = p.snapshot().await?;
        (processed(&s) > counted_first.max(first.len() as u64)).then_some(())
    })
    .await;
    p.kill_9();
    producing.await.expect("produced the rest");
    // The restart joins the same group: the broker hands it the
    // partitions once the dead member's session times out. Meanwhile it
    // shows what it restored, never zero, and says it is behind.
    let p = Process::start(broker.port, "killed", &state);
    let first = p.snapshot().await.expect("a first snapshot");
    assert!(
        processed(&first) > 0 && first["totals"]["orders"].as_u64() > Some(0),
        "the restored totals from the first snapshot: {}",
        first["ingest"]
    );
    assert_eq!(first["stale"], true, "stale until caught up");
    let s = eventually_within(
        KAFKA_PATIENCE,
        "every message processed after restart",
        || async {
            let s = p.snapshot().await?;
            (processed(&s) >= messages.len() as u64).then_some(s)
        },
    )
    .await;
    assert_eq!(observed(&s), want, "after kill -9 and restart");
}

/// Checkpoints `p` has written, from its `/metrics`.
async fn checkpoints_written(p: &Process) -> u64 {
    p.metrics()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("livemap_checkpoints_total{result=\"ok\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// A TCP proxy the test can cut (drop every connection, refuse new ones)
/// and restore.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(port: u16, upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("proxy binds");
        let open = Arc::new(AtomicBool::new(true));
        let (gen_tx, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(gen_tx);
        let (o, g) = (open.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            open,
            generation,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_cut_marks_stale_then_catches_up_without_loss() {
    // The broker's PROXIED listener advertises the proxy's port, so every
    // connection the client makes goes through the proxy.
    let broker = Broker::shared();
    let (proxied, proxy_port) = (
        broker.proxied_port.expect("a proxied listener"),
        broker.proxy_port.expect("a proxy port"),
    );
    let proxy = Proxy::start(proxy_port, SocketAddr::from(([127, 0, 0, 1], proxied))).await;
    broker.create_topic("cut", 4).await;
    let messages = mixed_batch(3, 30_000);
    let want = expected(&messages);
    let (a, b) = messages.split_at(15_000);
    let a = a.to_vec();
    tokio::task::spawn_blocking(move || produce(proxy_port, "cut", &a))
        .await
        .expect("produced");
    let server = start_kafka_server(proxy.port, "cut", "g-cut", temp_state("cut")).await;
    wait_processed(&server, 15_000).await;

    proxy.cut();
    eventually_within(KAFKA_PATIENCE, "snapshots marked stale", || async {
        (server.snapshot().await["stale"] == serde_json::json!(true)).then_some(())
    })
    .await;
    let version = server.snapshot().await["version"].as_u64();
    eventually_within(
        KAFKA_PATIENCE,
        "snapshots still served while stale",
        || async { (server.snapshot().await["version"].as_u64() > version).then_some(()) },
    )
    .await;

    proxy.restore();
    let b = b.to_vec();
    tokio::task::spawn_blocking(move || produce(proxy_port, "cut", &b))
        .await
        .expect("produced");
    let s = wait_processed(&server, messages.len() as u64).await;
    assert_eq!(observed(&s), want);
    eventually_within(KAFKA_PATIENCE, "no longer stale", || async {
        (server.snapshot().await["stale"] == serde_json::json!(false)).then_some(())
    })
    .await;
}

/// How many partitions a member counts, from its `/metrics`.
async fn assigned(server: &TestServer) -> usize {
    let Ok(r) = reqwest::get(server.admin_url("/metrics")).await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("livemap_partition_assigned{"))
        .count()
}

fn sum(a: &serde_json::Value, b: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (k, v) in a.as_object().expect("object") {
        let merged = match (v, &b[k]) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut m: BTreeMap<String, u64> = BTreeMap::new();
                for (r, n) in x.iter().chain(y.iter()) {
                    *m.entry(r.clone()).or_default() += n.as_u64().unwrap_or(0);
                }
                serde_json::json!(m)
            }
            (x, y) => serde_json::json!(x.as_u64().unwrap_or(0) + y.as_u64().unwrap_or(0)),
        };
        out.insert(k.clone(), merged);
    }
    serde_json::Value::Object(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_member_joining_and_leaving_loses_and_double_counts_nothing() {
    let broker = Broker::shared();
    broker.create_topic("shared", 4).await;
    // No redeliveries here: each member de-duplicates what it reads, so a
    // duplicate whose two copies straddle a hand-off is counted by both
    // members (merging the members' filters is the scale-out work). What
    // this test holds to account is the hand-off itself: not one message
    // lost, not one counted by both.
    let messages = mixed_batch_with(
        4,
        30_000,
        DemoMix {
            malformed: 0.02,
            duplicate: 0.0,
            ..DemoMix::default()
        },
    );
    let (m1, rest) = messages.split_at(10_000);
    let (m2, m3) = rest.split_at(10_000);
    let port = broker.port;
    let chunk = m1.to_vec();
    tokio::task::spawn_blocking(move || produce(port, "shared", &chunk))
        .await
        .expect("produced");
    let a = start_kafka_server(port, "shared", "g-shared", temp_state("member-a")).await;
    wait_processed(&a, m1.len() as u64).await;

    // B joins: the partitions are split between A and B.
    let b = start_kafka_server(port, "shared", "g-shared", temp_state("member-b")).await;
    eventually_within(
        KAFKA_PATIENCE,
        "both members assigned partitions",
        || async {
            let (pa, pb) = (assigned(&a).await, assigned(&b).await);
            (pa > 0 && pb > 0 && pa + pb == 4).then_some(())
        },
    )
    .await;
    let chunk = m2.to_vec();
    tokio::task::spawn_blocking(move || produce(port, "shared", &chunk))
        .await
        .expect("produced");
    let both = (m1.len() + m2.len()) as u64;
    let (sa, sb) = eventually_within(
        KAFKA_PATIENCE,
        "A and B together processed everything",
        || async {
            let (sa, sb) = (a.snapshot().await, b.snapshot().await);
            (processed(&sa) + processed(&sb) == both).then_some((sa, sb))
        },
    )
    .await;
    assert_eq!(
        sum(&observed(&sa), &observed(&sb))["accepted"],
        expected(&messages[..both as usize])["accepted"]
    );

    // B leaves gracefully: A takes every partition back, from where B stopped.
    let b_final = b.snapshot().await;
    b.stop().await.expect("B stops cleanly");
    let chunk = m3.to_vec();
    tokio::task::spawn_blocking(move || produce(port, "shared", &chunk))
        .await
        .expect("produced");
    let total = messages.len() as u64;
    eventually_within(KAFKA_PATIENCE, "A took every partition back", || async {
        (assigned(&a).await == 4).then_some(())
    })
    .await;
    let sa = eventually_within(KAFKA_PATIENCE, "A processed the rest", || async {
        let sa = a.snapshot().await;
        (processed(&sa) + processed(&b_final) >= total).then_some(sa)
    })
    .await;
    let mut combined = sum(&observed(&sa), &observed(&b_final));
    let mut want = expected(&messages);
    // Unique shoppers is a sketch: members' sketches merge by union, not
    // by sum (that is the scale-out work); compare the exact fields.
    for v in [&mut combined, &mut want] {
        v.as_object_mut().map(|o| o.remove("unique_shoppers"));
    }
    assert_eq!(combined, want);
}

/// Flips a byte in the middle of a file, as a bad disk would.
fn corrupt(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).expect("checkpoint read");
    let n = bytes.len();
    bytes[n / 2] ^= 0x5a;
    std::fs::write(path, bytes).expect("checkpoint written");
}

/// The newest checkpoint corrupt: the restart restores the previous one
/// and re-reads what it lacks from its own positions, although the
/// group's commits are further on, and ends exact. Both corrupt: the
/// start is refused, naming the files and the flag that overrides.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_checkpoint_falls_back_to_the_previous_or_refuses_to_start() {
    let broker = Broker::shared();
    broker.create_topic("corrupt", 2).await;
    let messages = mixed_batch(7, 6_000);
    let (first, second) = messages.split_at(3_000);
    let state = temp_state("corrupt");
    let start = |state: PathBuf| {
        let kafka = kafka_config(broker.port, "corrupt", "g-corrupt");
        TestServer::start(move |c| {
            c.kafka = Some(kafka);
            c.state_dir = state;
            c.checkpoint_every = Duration::from_secs(3_600);
        })
    };
    let dir = livemap_engine::checkpoint::StateDir::new(&state).expect("state dir");
    produce_now(broker.port, "corrupt", first).await;
    let server = start(state.clone()).await;
    wait_processed(&server, first.len() as u64).await;
    server.stop().await.expect("clean stop");
    let half = std::fs::read(dir.path()).expect("a checkpoint of the first half");
    produce_now(broker.port, "corrupt", second).await;
    let server = start(state.clone()).await;
    wait_processed(&server, messages.len() as u64).await;
    server.stop().await.expect("clean stop");

    // The previous checkpoint is the first half's (a run may have written
    // more since), the group's commits are at the end, and the newest is
    // unreadable.
    std::fs::write(dir.previous_path(), &half).expect("previous written");
    corrupt(&dir.path());
    let server = start(state.clone()).await;
    let s = wait_processed(&server, messages.len() as u64).await;
    assert_eq!(
        observed(&s),
        expected(&messages),
        "nothing lost, nothing twice"
    );
    server.stop().await.expect("clean stop");

    // The stop wrote a good newest checkpoint; corrupt both.
    corrupt(&dir.path());
    corrupt(&dir.previous_path());
    let refused = start(state.clone())
        .await
        .stop()
        .await
        .expect_err("the start is refused")
        .to_string();
    for needle in [
        "checkpoint.bin",
        "checkpoint.prev.bin",
        "--discard-unreadable-checkpoint",
    ] {
        assert!(refused.contains(needle), "{needle} not in: {refused}");
    }
}

/// Anomaly warnings for operators, end to end on Apache Kafka: 90 minutes
/// of replayed orders, 60 a minute, whose last three closed minutes fall
/// by 80 %. The process flags both signals on `/metrics` and its admin
/// `/anomalies`, and the public JSON says nothing of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_fall_in_orders_is_flagged_for_operators_only() {
    let broker = Broker::shared();
    broker.create_topic("anomaly", 2).await;
    const MINUTE: i64 = 60_000;
    let this_minute = SystemClock.now_ms().div_euclid(MINUTE) * MINUTE;
    let mut g = Generator::new(91, DemoMix::default());
    let mut messages = Vec::new();
    for m in (1..=90i64).rev() {
        let start = this_minute - m * MINUTE;
        let orders = if m <= 3 { 12 } else { 60 };
        for i in 0..orders {
            let mut buf = Vec::new();
            g.write_checkout_at(start + i * MINUTE / orders, &mut buf);
            messages.push(Some(buf));
        }
    }
    produce_now(broker.port, "anomaly", &messages).await;
    let (hook, mut posts) = webhook_receiver().await;
    let url = format!("http://{hook}/hooks/livemap");
    let p = Process::spawn(broker.port, "anomaly", &["--anomaly-webhook", &url]);
    let flagged = |m: &str| {
        m.contains("livemap_anomaly{signal=\"orders_per_minute\"} 1\n")
            && m.contains("livemap_anomaly{signal=\"sales_per_minute\"} 1\n")
    };
    // Flagged once every partition is read (a minute judged on part of
    // them is judged again as the rest comes).
    let metrics = eventually_within(KAFKA_PATIENCE, "both signals flagged", || async {
        let m = p.metrics().await.filter(|m| flagged(m))?;
        let expected = m
            .lines()
            .find_map(|l| {
                l.strip_prefix("livemap_anomaly_expected_per_minute{signal=\"orders_per_minute\"} ")
            })
            .and_then(|v| v.trim().parse::<f64>().ok())?;
        (expected >= 50.0).then_some(m)
    })
    .await;
    let ratio = metrics
        .lines()
        .find_map(|l| l.strip_prefix("livemap_anomaly_ratio{signal=\"orders_per_minute\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(ratio.is_some_and(|r| r < 0.5), "{ratio:?}");
    let json: serde_json::Value = reqwest::get(format!("{}/anomalies", p.admin))
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let orders = json["signals"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["signal"] == "orders_per_minute"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(orders["flagged"], true, "{json}");
    let expected = orders["expected_per_minute"].as_f64().unwrap_or(0.0);
    assert!((50.0..70.0).contains(&expected), "{json}");
    assert!(
        orders["since_ms"].as_i64() >= Some(this_minute - 3 * MINUTE),
        "{json}"
    );
    // The public surface carries no word of it.
    let public = reqwest::get(format!("{}/api/snapshot", p.base))
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    assert!(!public.contains("anomal"), "{public}");
    let public_status = reqwest::get(format!("{}/anomalies", p.base))
        .await
        .expect("answers")
        .status();
    assert_eq!(public_status, 404);
    // The webhook heard of both flags.
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let post = tokio::time::timeout(KAFKA_PATIENCE, posts.recv())
            .await
            .expect("the webhook posts in time")
            .expect("a post");
        heard.push(post);
    }
    for signal in ["orders_per_minute", "sales_per_minute"] {
        let post = heard
            .iter()
            .find(|v| v["signal"] == signal)
            .unwrap_or_else(|| panic!("no post for {signal}: {heard:?}"));
        assert_eq!(post["event"], "anomaly", "{post}");
        assert_eq!(post["flagged"], true, "{post}");
        assert!(post["ratio"].as_f64() < Some(0.5), "{post}");
    }
    let m = p.metrics().await.unwrap_or_default();
    assert!(
        m.contains("livemap_anomaly_webhook_posts_total{result=\"sent\"} 2\n"),
        "{m}"
    );
}

/// A listener that answers every POST 204 and hands over its JSON body.
async fn webhook_receiver() -> (SocketAddr, tokio::sync::mpsc::Receiver<serde_json::Value>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("address");
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head, then as many body bytes as it announces.
                let body = loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        assert!(head.starts_with("POST /hooks/livemap "), "{head}");
                        break body[..length].to_owned();
                    }
                };
                let _ = socket
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
                if let Ok(v) = serde_json::from_str(&body) {
                    let _ = tx.send(v).await;
                }
            });
        }
    });
    (addr, rx)
}
