//! The failure matrix against Apache Kafka: what an operator's cluster
//! does to the product (a refused message, SASL, ...), each ending with
//! totals equal to one uninterrupted process reading the same messages.

use std::time::Duration;

use livemap_events::demo::{DemoMix, Generator};
use livemap_server::clock::{Clock, SystemClock};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use std::sync::Mutex;

use crate::broker::{Broker, SASL_PASSWORD, SASL_USER};
use crate::kafka::{
    expected, mixed_batch, mixed_batch_with, observed, processed, produce_now, shows_all,
    temp_state, Process, KAFKA_PATIENCE,
};
use crate::scaleout::{aggregator_in, aggregator_with, edge, edge_with, spread};
use crate::util::eventually_within;

/// A completed checkout of about `size` bytes: a real event with an
/// extra field the contract lets consumers ignore.
fn large_checkout(size: usize) -> Vec<u8> {
    let mut g = Generator::new(99, DemoMix::default());
    let event = g.checkout(SystemClock.now_ms() - 60_000);
    let mut v: serde_json::Value = serde_json::from_slice(&event).expect("a JSON event");
    v["note"] = serde_json::json!("x".repeat(size));
    serde_json::to_vec(&v).expect("JSON")
}

/// Where a produced message went.
#[derive(Default)]
struct Delivered(Mutex<Option<(i32, i64)>>);

impl ClientContext for Delivered {}

impl ProducerContext for Delivered {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        if let Ok(m) = result {
            *self.0.lock().expect("lock") = Some((m.partition(), m.offset()));
        }
    }
}

/// Produces one message and says where it went.
fn produce_one(broker: &Broker, topic: &str, payload: &[u8]) -> (i32, i64) {
    let producer: BaseProducer<Delivered> = broker
        .client_config()
        .create_with_context(Delivered::default())
        .expect("producer");
    producer
        .send(
            BaseRecord::<str, [u8]>::to(topic)
                .payload(payload)
                .key("large"),
        )
        .map_err(|(e, _)| e)
        .expect("queued");
    producer.flush(Duration::from_secs(30)).expect("delivered");
    let at = *producer.context().0.lock().expect("lock");
    at.expect("a delivery report")
}

/// The group's committed offset of `topic`'s `partition`, if any.
fn committed(broker: &Broker, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let found = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    match found.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

async fn set_topic_config(broker: &Broker, topic: &str, key: &str, value: &str) {
    let admin: AdminClient<DefaultClientContext> =
        broker.client_config().create().expect("admin client");
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value);
    let results = admin
        .alter_configs([&change], &AdminOptions::new())
        .await
        .expect("alter_configs answers");
    for r in results {
        r.map_err(|(_, code)| code).expect("config changed");
    }
}

async fn readyz(admin: &str) -> Option<(u16, String)> {
    let r = reqwest::get(format!("{admin}/readyz")).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// 7f: a message the by-id topic refuses. Nothing is committed past it,
/// the operator sees why (log, `/metrics`, `/readyz`), and once the topic
/// takes it, routing resumes from it and the totals end exact.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_the_router_cannot_send_stops_routing_until_it_can() {
    let broker = Broker::shared();
    let (topic, group) = ("refused", "g-refused");
    broker.create_topic(topic, 2).await;
    // The by-id topic, made before the aggregator, takes less than the
    // checkout topic: one large checkout does not fit.
    broker
        .create_topic_with(
            "refused.livemap-by-id",
            2,
            &[("max.message.bytes", "16384")],
        )
        .await;
    let mix = DemoMix {
        malformed: 0.02,
        ..DemoMix::default()
    };
    let head = mixed_batch_with(31, 3_000, mix.clone());
    let tail = mixed_batch_with(32, 3_000, mix);
    let large = large_checkout(30_000);
    let mut all = head.clone();
    all.push(Some(large.clone()));
    all.extend(tail.iter().cloned());
    let want = expected(&all);
    assert_eq!(
        expected(&[Some(large.clone())])["accepted"],
        1,
        "the large message is a checkout that counts"
    );
    let port = broker.port;
    produce_now(port, "refused", &head).await;
    let (partition, offset) = produce_one(broker, topic, &large);
    produce_now(port, "refused", &tail).await;

    let a = aggregator_in(port, topic, "agg-refused", group);
    let e = edge(port, topic);
    let why = eventually_within(KAFKA_PATIENCE, "routing stopped, and why", || async {
        let (status, body) = readyz(&a.admin).await?;
        (status == 503 && body.contains("routing stopped")).then_some(body)
    })
    .await;
    assert!(
        why.to_lowercase().contains("too large"),
        "the reason names the size: {why}"
    );
    let metrics = a.metrics().await.unwrap_or_default();
    assert!(metrics.contains("livemap_router_blocked 1\n"), "{metrics}");
    // Let the router commit what it can, a few times over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at = committed(broker, group, topic, partition);
    assert!(
        at.is_none_or(|at| at <= offset),
        "committed {at:?} past the refused message at {offset}"
    );
    let shown = processed(&e.snapshot().await.unwrap_or_default());
    assert!(shown < all.len() as u64, "the edge shows {shown}");

    // The operator raises the limit: routing resumes from the message.
    set_topic_config(
        broker,
        "refused.livemap-by-id",
        "max.message.bytes",
        "1048588",
    )
    .await;
    let s = shows_all(&e, all.len()).await;
    assert_eq!(observed(&s), want, "the edge against one process");
    eventually_within(KAFKA_PATIENCE, "ready again", || async {
        let (status, _) = readyz(&a.admin).await?;
        (status == 200).then_some(())
    })
    .await;
    let metrics = a.metrics().await.unwrap_or_default();
    assert!(metrics.contains("livemap_router_blocked 0\n"), "{metrics}");
    assert!(
        !metrics.contains("livemap_router_stops_total 0\n"),
        "{metrics}"
    );
}

/// 7e: the scale-out on a SASL listener; every credential comes in
/// through `--kafka-option`, and every client the product makes uses it
/// (a client without it cannot talk to this listener at all).
#[tokio::test(flavor = "multi_thread")]
async fn the_scale_out_runs_on_a_sasl_listener() {
    let broker = Broker::shared();
    let topic = "sasl";
    broker.create_topic(topic, 2).await;
    let messages = mixed_batch(33, 8_000);
    let want = expected(&messages);
    let port = broker.port;
    produce_now(port, "sasl", &messages).await;
    let sasl = broker.sasl_port.expect("a SASL listener");
    let username = format!("sasl.username={SASL_USER}");
    let password = format!("sasl.password={SASL_PASSWORD}");
    let credentials = [
        "--kafka-option",
        "security.protocol=SASL_PLAINTEXT",
        "--kafka-option",
        "sasl.mechanisms=PLAIN",
        "--kafka-option",
        &username,
        "--kafka-option",
        &password,
    ];
    let _a = aggregator_with(sasl, topic, "agg-sasl", "g-sasl", &credentials);
    let e = edge_with(sasl, topic, &credentials);
    let s = shows_all(&e, messages.len()).await;
    assert_eq!(observed(&s), want, "the edge against one process");
    assert_eq!(s["stale"], false);
}

/// 7d: the broker killed and restarted mid-stream. Every role says its
/// totals are stale while it is down; a SIGTERM then stops each within
/// 10 s, and what was durable is not lost: restarted with the broker,
/// the totals end exact.
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_killed_mid_stream_then_sigterm_to_every_role() {
    let mut broker = Broker::start("killed-broker");
    let topic = "outage";
    broker.create_topic(topic, 4).await;
    let messages = mixed_batch(34, 20_000);
    let want = expected(&messages);
    let (first, rest) = messages.split_at(10_000);
    let port = broker.port;
    let chunk = first.to_vec();
    produce_now(port, "outage", &chunk).await;
    let state = temp_state("outage");
    let start_all =
        |state: &std::path::Path| Process::start_in_group(port, topic, "g-outage-all", state);
    let (p, a, e) = (
        start_all(&state),
        aggregator_in(port, topic, "agg-outage", "g-outage"),
        edge(port, topic),
    );
    for (name, who) in [("the single process", &p), ("the edge", &e)] {
        eventually_within(KAFKA_PATIENCE, name, || async {
            (processed(&who.snapshot().await?) == first.len() as u64).then_some(())
        })
        .await;
    }

    broker.kill_9();
    for (name, who) in [("the single process", &p), ("the edge", &e)] {
        let s = eventually_within(KAFKA_PATIENCE, "stale while the broker is down", || async {
            let s = who.snapshot().await?;
            (s["stale"] == true).then_some(s)
        })
        .await;
        // Stale, but never less than it showed.
        assert_eq!(processed(&s), first.len() as u64, "{name}");
    }
    for (name, who) in [("single process", p), ("aggregator", a), ("edge", e)] {
        let (took, clean) = who.terminate(Duration::from_secs(30)).await;
        eprintln!("the {name} stopped {took:?} after SIGTERM with the broker down");
        assert!(
            took < Duration::from_secs(10) && clean,
            "the {name} took {took:?} to stop on SIGTERM with the broker down (clean exit: {clean})"
        );
    }

    broker.restart();
    let chunk = rest.to_vec();
    produce_now(port, "outage", &chunk).await;
    let p = start_all(&state);
    let _a = aggregator_in(port, topic, "agg-outage", "g-outage");
    let e = edge(port, topic);
    for (name, who) in [("the single process", &p), ("the edge", &e)] {
        let s = eventually_within(KAFKA_PATIENCE, "every message shown", || async {
            let s = who.snapshot().await?;
            (processed(&s) >= messages.len() as u64).then_some(s)
        })
        .await;
        assert_eq!(observed(&s), want, "{name} against one process");
        eventually_within(KAFKA_PATIENCE, "fresh again", || async {
            (who.snapshot().await?["stale"] == false).then_some(())
        })
        .await;
    }
}

/// An aggregator process under `id` whose standard error is collected
/// (complete once it exits).
fn spawn_aggregator(
    port: u16,
    topic: &str,
    id: &str,
    group: &str,
) -> (tokio::process::Child, tokio::task::JoinHandle<String>) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_livemap"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--kafka-brokers", &format!("127.0.0.1:{port}")])
        .args(["--topic", topic, "--group-id", group])
        .args(["--role", "aggregator", "--aggregator-id", id])
        .args(["--publish-ms", "200"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("livemap starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let log = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut out = String::new();
        let _ = stderr.read_to_string(&mut out).await;
        out
    });
    (child, log)
}

/// 7g: two aggregators started at the same moment under one id. Exactly
/// one goes on; the other stops, before it counts anything, with an error
/// that names the id; the edge's totals are exact. (A process started
/// under a live id later refuses too: `scaleout.rs`.)
#[tokio::test(flavor = "multi_thread")]
async fn two_aggregators_started_together_under_one_id_one_stops() {
    let broker = Broker::shared();
    let topic = "twins-together";
    broker.create_topic(topic, 4).await;
    let messages = mixed_batch(35, 10_000);
    let want = expected(&messages);
    let port = broker.port;
    produce_now(port, "twins-together", &messages).await;
    let mut twins = vec![
        spawn_aggregator(port, topic, "twin-g", "g-twins-together"),
        spawn_aggregator(port, topic, "twin-g", "g-twins-together"),
    ];
    let loser = eventually_within(KAFKA_PATIENCE, "one of the two stops", || {
        let exited: Vec<usize> = twins
            .iter_mut()
            .enumerate()
            .filter_map(|(i, (child, _))| child.try_wait().ok().flatten().map(|_| i))
            .collect();
        async move { exited.first().copied() }
    })
    .await;
    let (mut loser_child, loser_log) = twins.remove(loser);
    let status = loser_child.wait().await.expect("exit status");
    let stderr = loser_log.await.unwrap_or_default();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("aggregator id \"twin-g\" is in use"),
        "{stderr}"
    );
    let e = edge(port, topic);
    let s = shows_all(&e, messages.len()).await;
    assert_eq!(observed(&s), want, "the edge against one process");
    let survivor = &mut twins[0].0;
    assert!(
        survivor.try_wait().expect("status").is_none(),
        "the other goes on"
    );
    let metrics = e.metrics().await.unwrap_or_default();
    assert!(
        metrics.contains("livemap_partials_twin_records_total 0\n"),
        "{metrics}"
    );
}

/// Watches edges' snapshots until stopped, and says whether any total
/// ever went lower than one it had shown.
struct Monotonic {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<(Vec<String>, Vec<[u64; 3]>)>,
}

/// The totals a viewer sees, which never go backwards.
fn seen_totals(s: &serde_json::Value) -> [u64; 3] {
    [
        s["totals"]["orders"].as_u64().unwrap_or(0),
        s["totals"]["gmv_usd_cents"].as_u64().unwrap_or(0),
        processed(s),
    ]
}

impl Monotonic {
    fn watch(urls: Vec<String>) -> Monotonic {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut best = vec![[0u64; 3]; urls.len()];
            let mut backwards = Vec::new();
            while !*stopped.borrow() {
                for (i, url) in urls.iter().enumerate() {
                    let Ok(r) = reqwest::get(format!("{url}/api/snapshot")).await else {
                        continue;
                    };
                    let Ok(s) = r.json::<serde_json::Value>().await else {
                        continue;
                    };
                    let now = seen_totals(&s);
                    for k in 0..3 {
                        if now[k] < best[i][k] {
                            backwards.push(format!("{url}: {:?} after {:?}", now, best[i]));
                        }
                        best[i][k] = best[i][k].max(now[k]);
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.changed() => {}
                }
            }
            (backwards, best)
        });
        Monotonic { stop, task }
    }

    /// Stops watching; what went backwards, and the highest totals each
    /// edge showed.
    async fn finish(self) -> (Vec<String>, Vec<[u64; 3]>) {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// How many runs of the fail-over scenario: 2 by default (each variant
/// once); `LIVEMAP_FAILOVER_RUNS=20` (or more) for the measured figure in
/// docs/BENCHMARKS.md.
fn failover_runs() -> usize {
    std::env::var("LIVEMAP_FAILOVER_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2)
}

/// 7b: two and three aggregators, one `kill -9`ed and never restarted:
/// mid-stream, or just after the backlog is read. The survivors take its
/// partitions within the session timeout, both edges end exact, and no
/// edge ever shows a total lower than one it showed. Run
/// [`failover_runs`] times, alternating 2 and 3 aggregators and the two
/// moments, so that a race cannot hide.
#[tokio::test(flavor = "multi_thread")]
async fn survivors_take_a_dead_aggregators_partitions_and_stay_exact() {
    let broker = Broker::shared();
    let port = broker.port;
    for run in 0..failover_runs() {
        let aggregators = 2 + run % 2;
        // Two runs cover both moments and both counts; four, every pair.
        let after_backlog = (run + run / 2) % 2 == 1;
        let topic = format!("failover-{run}");
        let group = format!("g-failover-{run}");
        broker.create_topic(&topic, 6).await;
        let messages = mixed_batch(100 + run as u64, 18_000);
        let want = expected(&messages);
        let (first, rest) = messages.split_at(if after_backlog { 12_000 } else { 6_000 });
        let t = topic.clone();
        let chunk = first.to_vec();
        tokio::task::spawn_blocking(move || crate::kafka::produce_keyed(port, &t, &chunk, spread))
            .await
            .expect("produced");
        let mut aggs: Vec<Process> = (0..aggregators)
            .map(|i| aggregator_in(port, &topic, &format!("fo-{run}-{i}"), &group))
            .collect();
        let edges = [edge(port, &topic), edge(port, &topic)];
        let watcher = Monotonic::watch(edges.iter().map(|e| e.base.clone()).collect());
        let shows = |n: u64| {
            let e = &edges[0];
            async move { (processed(&e.snapshot().await?) >= n).then_some(()) }
        };
        let producing = if after_backlog {
            eventually_within(KAFKA_PATIENCE, "the backlog read", || {
                shows(first.len() as u64)
            })
            .await;
            None
        } else {
            eventually_within(KAFKA_PATIENCE, "counting under way", || shows(1)).await;
            let (t, chunk) = (topic.clone(), rest.to_vec());
            Some(tokio::task::spawn_blocking(move || {
                crate::kafka::produce_keyed(port, &t, &chunk, spread)
            }))
        };
        // The last to join is killed: it owns partitions by now.
        eventually_within(
            KAFKA_PATIENCE,
            "every aggregator owns partitions",
            || async {
                for a in &aggs {
                    if crate::scaleout::owned_partitions(a).await == 0 {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
        aggs.pop().expect("an aggregator").kill_9();
        match producing {
            Some(p) => p.await.expect("produced the rest"),
            None => {
                let (t, chunk) = (topic.clone(), rest.to_vec());
                tokio::task::spawn_blocking(move || {
                    crate::kafka::produce_keyed(port, &t, &chunk, spread)
                })
                .await
                .expect("produced the rest")
            }
        }
        for (i, e) in edges.iter().enumerate() {
            let s = shows_all(e, messages.len()).await;
            assert_eq!(
                observed(&s),
                want,
                "run {run} ({aggregators} aggregators, killed {}): edge {i} against one process",
                if after_backlog {
                    "after the backlog"
                } else {
                    "mid-stream"
                }
            );
        }
        let (backwards, _) = watcher.finish().await;
        assert!(
            backwards.is_empty(),
            "run {run}: totals went backwards: {backwards:?}"
        );
        eprintln!(
            "fail-over run {run}: {aggregators} aggregators, killed {}: exact, never backwards",
            if after_backlog {
                "after the backlog"
            } else {
                "mid-stream"
            }
        );
    }
}

/// 7c: a rolling restart, as a deploy does it: SIGTERM to every
/// aggregator in turn (each started again under its id), then to every
/// edge, while checkouts keep coming. Totals end exact, and no edge ever
/// shows a total lower than one it showed, a restarted edge included.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_every_aggregator_then_every_edge() {
    let broker = Broker::shared();
    let port = broker.port;
    let (topic, group) = ("rolling", "g-rolling");
    broker.create_topic(topic, 4).await;
    let messages = mixed_batch(36, 25_000);
    let want = expected(&messages);
    // Five parts: one before, one during each of the four restarts.
    let chunks: Vec<Vec<Option<Vec<u8>>>> = messages
        .chunks(messages.len().div_ceil(5))
        .map(<[_]>::to_vec)
        .collect();
    assert_eq!(chunks.len(), 5);
    let produce_chunk = |i: usize| {
        let chunk = chunks[i].clone();
        tokio::task::spawn_blocking(move || {
            crate::kafka::produce_keyed(port, "rolling", &chunk, spread)
        })
    };
    produce_chunk(0).await.expect("produced");
    let ids = ["roll-1", "roll-2"];
    let mut aggs: Vec<Process> = ids
        .iter()
        .map(|id| aggregator_in(port, topic, id, group))
        .collect();
    let mut edges = vec![edge(port, topic), edge(port, topic)];
    let urls = |edges: &[Process]| edges.iter().map(|e| e.base.clone()).collect::<Vec<_>>();
    eventually_within(
        KAFKA_PATIENCE,
        "both count and the edges show it",
        || async {
            for a in &aggs {
                if crate::scaleout::owned_partitions(a).await == 0 {
                    return None;
                }
            }
            (processed(&edges[1].snapshot().await?) >= chunks[0].len() as u64).then_some(())
        },
    )
    .await;
    let mut watcher = Monotonic::watch(urls(&edges));
    let grace = Duration::from_secs(10);

    for (i, id) in ids.iter().enumerate() {
        let producing = produce_chunk(1 + i);
        let (took, clean) = aggs.remove(0).terminate(Duration::from_secs(30)).await;
        assert!(
            took < grace && clean,
            "aggregator {id}: {took:?}, clean: {clean}"
        );
        aggs.push(aggregator_in(port, topic, id, group));
        eventually_within(
            KAFKA_PATIENCE,
            "the restarted aggregator counts",
            || async { (crate::scaleout::owned_partitions(aggs.last()?).await > 0).then_some(()) },
        )
        .await;
        producing.await.expect("produced");
    }
    for i in 0..edges.len() {
        let producing = produce_chunk(3 + i);
        let (backwards, best) = watcher.finish().await;
        assert!(backwards.is_empty(), "totals went backwards: {backwards:?}");
        let old = edges.remove(i);
        let (took, clean) = old.terminate(Duration::from_secs(30)).await;
        assert!(took < grace && clean, "edge {i}: {took:?}, clean: {clean}");
        edges.insert(i, edge(port, topic));
        // Its first answer already shows at least what the old one did.
        let first = edges[i].snapshot().await.expect("a snapshot");
        let now = seen_totals(&first);
        assert!(
            (0..3).all(|k| now[k] >= best[i][k]),
            "restarted edge {i} first showed {now:?}, below {:?}",
            best[i]
        );
        watcher = Monotonic::watch(urls(&edges));
        producing.await.expect("produced");
    }
    for (i, e) in edges.iter().enumerate() {
        let s = shows_all(e, messages.len()).await;
        assert_eq!(observed(&s), want, "edge {i} against one process");
    }
    let (backwards, _) = watcher.finish().await;
    assert!(backwards.is_empty(), "totals went backwards: {backwards:?}");
}

/// 7g, the edge's side: records of a second process under a live
/// aggregator id (here forged: an empty state, as a twin that just
/// started would publish) are not merged. The edge's totals do not move,
/// let alone fall to zero, and it says so on `/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn an_edge_does_not_merge_a_second_process_under_a_live_id() {
    use livemap_engine::ingest::{Engine, EngineConfig};
    use livemap_server::kafka::partials::PartialRecord;

    let broker = Broker::shared();
    let topic = "twin-edge";
    broker.create_topic(topic, 2).await;
    let messages = mixed_batch_with(37, 6_000, DemoMix::default());
    let want = expected(&messages);
    let port = broker.port;
    produce_now(port, "twin-edge", &messages).await;
    let _a = aggregator_in(port, topic, "agg-te", "g-twin-edge");
    let e = edge(port, topic);
    eventually_within(KAFKA_PATIENCE, "the edge shows every message", || async {
        (processed(&e.snapshot().await?) >= messages.len() as u64).then_some(())
    })
    .await;
    let watcher = Monotonic::watch(vec![e.base.clone()]);

    // A twin's records under "agg-te", while the real one publishes on.
    let empty = Engine::new(EngineConfig::default()).export_view("kafka:twin-edge.livemap-by-id");
    let records: Vec<Option<Vec<u8>>> = (0..10)
        .map(|seq| {
            Some(
                PartialRecord {
                    aggregator: "agg-te".into(),
                    instance: 7,
                    seq,
                    published_ms: SystemClock.now_ms(),
                    arcs: Vec::new(),
                    state: empty.clone(),
                    ..PartialRecord::default()
                }
                .encode(),
            )
        })
        .collect();
    let producer = record_producer(broker);
    for record in records.into_iter().flatten() {
        producer
            .send(
                BaseRecord::<str, [u8]>::to("twin-edge.livemap-partials")
                    .key("agg-te")
                    .payload(&record),
            )
            .map_err(|(e, _)| e)
            .expect("queued");
        producer.flush(Duration::from_secs(30)).expect("delivered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = eventually_within(
        KAFKA_PATIENCE,
        "the edge counts the twin's records",
        || async {
            let m = e.metrics().await?;
            m.contains("livemap_partials_twin_records_total 10\n")
                .then_some(m)
        },
    )
    .await;
    assert!(
        metrics.contains("livemap_partials_twin_records_total 10\n"),
        "{metrics}"
    );
    let s = e.snapshot().await.expect("a snapshot");
    assert_eq!(observed(&s), want, "the edge's totals stand");
    let (backwards, _) = watcher.finish().await;
    assert!(backwards.is_empty(), "totals went backwards: {backwards:?}");
}

/// The newest state record under `aggregator` on `topic` (partition 0).
fn newest_state_record(
    broker: &Broker,
    topic: &str,
    aggregator: &str,
) -> livemap_server::kafka::partials::PartialRecord {
    use livemap_server::kafka::partials::PartialRecord;
    let (records, _) = broker.records(topic);
    records
        .iter()
        .rev()
        .filter_map(|(_, value)| PartialRecord::decode(value.as_deref()?).ok())
        .find(|r| r.aggregator == aggregator && !r.state.is_empty())
        .expect("a state record")
}

/// A change record that continues a live aggregator's records but cannot
/// be read (here forged: cut short) is counted and applies not at all:
/// the edge's totals do not move, and the aggregator's next whole state
/// brings the edge back in step, exact.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_record_that_cannot_be_read_changes_nothing() {
    use livemap_server::kafka::partials::{Kind, PartialRecord};

    let broker = Broker::shared();
    let topic = "bad-change";
    let partials = "bad-change.livemap-partials";
    broker.create_topic(topic, 2).await;
    let messages = mixed_batch_with(41, 6_000, DemoMix::default());
    let want = expected(&messages);
    let (first, rest) = messages.split_at(3_000);
    let port = broker.port;
    produce_now(port, topic, first).await;
    let a = aggregator_in(port, topic, "agg-bc", "g-bad-change");
    let e = edge(port, topic);
    eventually_within(KAFKA_PATIENCE, "the edge shows the first part", || async {
        (processed(&e.snapshot().await?) >= first.len() as u64).then_some(())
    })
    .await;
    let watcher = Monotonic::watch(vec![e.base.clone()]);
    // Frozen, the aggregator publishes nothing while the forged record
    // goes out: it follows exactly what the edge holds.
    a.signal("STOP");
    let newest = tokio::task::spawn_blocking(move || {
        newest_state_record(Broker::shared(), partials, "agg-bc")
    })
    .await
    .expect("read");
    // The next change record of that process, as far as the edge can
    // tell, but its state cut in half.
    let whole = livemap_engine::ingest::Engine::new(Default::default()).export_changes(
        &livemap_engine::ingest::Engine::new(Default::default()),
        "kafka:bad-change.livemap-by-id",
    );
    let forged = PartialRecord {
        kind: Kind::Changes,
        seq: newest.seq + 1,
        prev_seq: newest.seq,
        whole_seq: newest.whole_seq,
        published_ms: SystemClock.now_ms(),
        state: whole[..whole.len() / 2].to_vec(),
        arcs: Vec::new(),
        ..newest
    };
    let producer = record_producer(broker);
    producer
        .send(
            BaseRecord::<str, [u8]>::to(partials)
                .key("agg-bc/forged")
                .payload(&forged.encode()),
        )
        .map_err(|(e, _)| e)
        .expect("queued");
    producer.flush(Duration::from_secs(30)).expect("delivered");
    let refused = |m: &str| m.contains("livemap_partials_records_total{outcome=\"refused\"} 1\n");
    eventually_within(KAFKA_PATIENCE, "the edge refuses the record", || async {
        refused(&e.metrics().await?).then_some(())
    })
    .await;
    a.signal("CONT");
    // The rest of the traffic: the edge catches up at the next whole
    // state (every 30 records of 200 ms) and ends exact.
    produce_now(port, topic, rest).await;
    let s = shows_all(&e, messages.len()).await;
    assert_eq!(observed(&s), want, "the edge against one process");
    let (backwards, _) = watcher.finish().await;
    assert!(backwards.is_empty(), "totals went backwards: {backwards:?}");
}

/// Rollouts under new aggregator ids: an edge retires ids that stopped
/// publishing, keeps their counts in one retired sum, and holds no state
/// per past id, so its memory does not grow with them.
#[tokio::test(flavor = "multi_thread")]
async fn an_edge_retires_past_aggregator_ids_and_keeps_their_counts() {
    use livemap_engine::ingest::{Engine, EngineConfig};
    use livemap_server::kafka::partials::PartialRecord;

    let broker = Broker::shared();
    let topic = "retire";
    let partials = "retire.livemap-partials";
    broker
        .create_topic_with(partials, 1, &[("cleanup.policy", "compact")])
        .await;
    let e = edge_with(broker.port, topic, &["--retire-after-secs", "10"]);
    // 160 past ids, 20 s apart (a rollout each), each with its orders, in
    // two waves: the edge's memory after the second is what it was after
    // the first.
    const IDS: i64 = 160;
    let now = SystemClock.now_ms();
    let mut g = Generator::new(61, DemoMix::default());
    let mut orders = 0u64;
    let producer = record_producer(broker);
    let mut rss_after_wave = Vec::new();
    for wave in [0..IDS / 2, IDS / 2..IDS] {
        for i in wave {
            let published_ms = now - (IDS - i) * 20_000;
            let mut engine = Engine::new(EngineConfig::default());
            for k in 0..(5 + i % 7) {
                engine.ingest(Some(&g.checkout(published_ms - k)), None, published_ms);
            }
            orders += engine.aggregate().orders;
            let record = PartialRecord {
                aggregator: format!("host-{i}"),
                instance: i as u64,
                seq: 0,
                published_ms,
                lineage: i as u64 + 1,
                state: engine.export_view("kafka:retire.livemap-by-id"),
                ..PartialRecord::default()
            }
            .encode();
            producer
                .send(
                    BaseRecord::<str, [u8]>::to(partials)
                        .key(&format!("host-{i}"))
                        .payload(&record),
                )
                .map_err(|(e, _)| e)
                .expect("queued");
        }
        producer.flush(Duration::from_secs(60)).expect("delivered");
        eventually_within(KAFKA_PATIENCE, "every id's orders on the edge", || async {
            let s = e.snapshot().await?;
            (s["totals"]["orders"].as_u64() == Some(orders)).then_some(())
        })
        .await;
        rss_after_wave.push(e.rss_kib());
    }
    let metrics = e.metrics().await.expect("metrics");
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    // Each id's state is about 5 MB in memory (the sketches): held, the
    // second wave's 80 would add some 400 MB. Retired, nothing is left of
    // them: the states are freed, and the binary gives freed megabyte
    // allocations back to the system (`main.rs`; without that, glibc's
    // arenas kept up to 130 MB of decoded states, more on a loaded
    // machine). Measured: under 0.1 MB.
    let grown_kib = rss_after_wave[1].saturating_sub(rss_after_wave[0]);
    eprintln!(
        "edge memory: {} KiB after {} past ids, {} KiB after {IDS}",
        rss_after_wave[0],
        IDS / 2,
        rss_after_wave[1]
    );
    assert!(
        grown_kib < 16 * 1024,
        "the edge grew by {grown_kib} KiB for the second {} past ids",
        IDS / 2
    );
    assert_eq!(value("livemap_partials_held_ids "), 1.0, "{metrics}");
    assert_eq!(
        value("livemap_partials_retired_ids_total "),
        (IDS - 1) as f64
    );
}

/// A producer for forged partial-state records: they are large (the
/// sketches), as the real publisher's are.
fn record_producer(broker: &Broker) -> BaseProducer {
    broker
        .client_config()
        .set("message.max.bytes", "16000000")
        .set("compression.type", "gzip")
        .create()
        .expect("producer")
}
