//! Scale-out on a real broker: aggregators and edges as separate
//! processes of the real binary, one of them killed with SIGKILL.

use crate::broker::Broker;
use crate::kafka::{
    exact_part, expected, mixed_batch_with, observed, one_batch_committed_inside, processed,
    produce_keyed, Process, COMMITTED_INSIDE, KAFKA_PATIENCE,
};
use crate::util::eventually_within;
use livemap_events::demo::DemoMix;
use std::time::{Duration, Instant};

fn aggregator(port: u16, topic: &str, id: &str) -> Process {
    aggregator_in(port, topic, id, "g-scaled")
}

pub(crate) fn aggregator_in(port: u16, topic: &str, id: &str, group: &str) -> Process {
    aggregator_with(port, topic, id, group, &[])
}

/// An aggregator process with `extra` flags after the test's usual ones.
pub(crate) fn aggregator_with(
    port: u16,
    topic: &str,
    id: &str,
    group: &str,
    extra: &[&str],
) -> Process {
    let mut args = vec![
        "--role",
        "aggregator",
        "--aggregator-id",
        id,
        "--group-id",
        group,
        "--publish-ms",
        "200",
        // A dead member is noticed after this, not Kafka's 45 s.
        "--kafka-option",
        "session.timeout.ms=6000",
        "--kafka-option",
        "heartbeat.interval.ms=500",
    ];
    args.extend_from_slice(extra);
    Process::spawn(port, topic, &args)
}

pub(crate) fn edge(port: u16, topic: &str) -> Process {
    edge_with(port, topic, &[])
}

pub(crate) fn edge_with(port: u16, topic: &str, extra: &[&str]) -> Process {
    let mut args = vec!["--role", "edge"];
    args.extend_from_slice(extra);
    Process::spawn(port, topic, &args)
}

/// Keys that owe nothing to the event: a duplicate lands on any partition,
/// most often one that another aggregator owns ("consumers must not depend
/// on the key").
pub(crate) fn spread(_: Option<&[u8]>) -> String {
    rand::random::<u32>().to_string()
}

pub(crate) async fn owned_partitions(p: &Process) -> usize {
    p.metrics()
        .await
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("livemap_partition_assigned{"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_aggregators_and_two_edges_end_exact_after_a_kill_9() {
    let broker = Broker::shared();
    broker.create_topic("scaled", 4).await;
    let messages = mixed_batch_with(
        17,
        40_000,
        DemoMix {
            malformed: 0.02,
            ..DemoMix::default()
        },
    );
    let want = expected(&messages);
    assert!(
        want["duplicates"].as_u64() > Some(0),
        "the batch has duplicates"
    );
    let decoder = livemap_engine::decode::Decoder::new(Default::default());
    let shops = messages
        .iter()
        .filter_map(|m| match decoder.decode(m.as_deref()) {
            livemap_engine::decode::Decoded::Checkout(c) => Some(c.shop_id),
            _ => None,
        })
        .collect::<std::collections::HashSet<u64>>()
        .len();
    let total = messages.len() as u64;
    let (first, rest) = messages.split_at(15_000);
    let (port, chunk) = (broker.port, first.to_vec());
    tokio::task::spawn_blocking(move || produce_keyed(port, "scaled", &chunk, spread))
        .await
        .expect("produced");

    let a1 = aggregator(broker.port, "scaled", "agg-1");
    eventually_within(
        KAFKA_PATIENCE,
        "the first aggregator owns the topic",
        || async { (owned_partitions(&a1).await == 4).then_some(()) },
    )
    .await;
    let a2 = aggregator(broker.port, "scaled", "agg-2");
    let e1 = edge(broker.port, "scaled");
    let e2 = edge(broker.port, "scaled");
    eventually_within(
        KAFKA_PATIENCE,
        "both aggregators own partitions and an edge shows counts",
        || async {
            let (o1, o2) = (owned_partitions(&a1).await, owned_partitions(&a2).await);
            let shown = processed(&e1.snapshot().await?);
            (o1 > 0 && o2 > 0 && o1 + o2 == 4 && shown > 0).then_some(())
        },
    )
    .await;

    // Kill an aggregator while the rest is being produced and read.
    let (port, chunk) = (broker.port, rest.to_vec());
    let producing =
        tokio::task::spawn_blocking(move || produce_keyed(port, "scaled", &chunk, spread));
    eventually_within(KAFKA_PATIENCE, "the edges past the first part", || async {
        (processed(&e1.snapshot().await?) > first.len() as u64).then_some(())
    })
    .await;
    a2.kill_9();
    producing.await.expect("produced the rest");
    // Nobody restarts the dead member: the survivor takes its partitions
    // once its session times out, and resumes where its record ends.
    eventually_within(
        KAFKA_PATIENCE,
        "the survivor owns every partition",
        || async { (owned_partitions(&a1).await == 4).then_some(()) },
    )
    .await;
    for (name, e) in [("edge 1", &e1), ("edge 2", &e2)] {
        let s = eventually_within(KAFKA_PATIENCE, "an edge shows every message", || async {
            let s = e.snapshot().await?;
            (processed(&s) >= total).then_some(s)
        })
        .await;
        assert_eq!(observed(&s), want, "{name} against one process");
        // On a loaded machine a record can come late; fresh again soon.
        eventually_within(KAFKA_PATIENCE, "the edge is fresh", || async {
            (e.snapshot().await?["stale"] == false).then_some(())
        })
        .await;
        // Arcs come from the aggregators too, and so do first sales.
        let arcs = s["arcs"].as_array().map_or(0, Vec::len);
        assert!(arcs > 0, "{name} shows no arcs");
        let first_sales = s["moments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["kind"] == "first_sale" && m["shop"].is_array())
            .count();
        assert!(
            first_sales > 0,
            "{name} lists no first sale: {}",
            s["moments"]
        );
        let metrics = e.metrics().await.unwrap_or_default();
        for id in ["agg-1", "agg-2"] {
            assert!(
                metrics.contains(&format!(
                    "livemap_partials_age_seconds{{aggregator=\"{id}\""
                )),
                "{name} follows {id}:\n{metrics}"
            );
        }
    }
    // Records carry changes; an edge decoded a whole state once per
    // aggregator (at its start) and lost none of the change records.
    let value = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    for (name, e) in [("edge 1", &e1), ("edge 2", &e2)] {
        let m = e.metrics().await.unwrap_or_default();
        let changes = value(&m, "livemap_partials_change_records_total ");
        assert!(changes > Some(5.0), "{name}: {changes:?} change records");
        let wholes = value(&m, "livemap_partials_wholes_decoded_total ");
        assert!(
            wholes >= Some(2.0) && wholes <= Some(3.0),
            "{name}: {wholes:?} whole states decoded"
        );
        assert_eq!(
            value(&m, "livemap_partials_gaps_total "),
            Some(0.0),
            "{name}"
        );
        // First sales: each aggregator announces shops new to it; an edge
        // shows those new to every aggregator, so never more than the
        // stream's shops.
        let shown = value(&m, "livemap_partials_first_sales_total ").unwrap_or(0.0);
        assert!(
            shown > 0.0 && shown <= shops as f64,
            "{name}: {shown} first sales of {shops} shops"
        );
        eprintln!(
            "{name}: {shown} first sales shown, {:?} known to another aggregator, of {shops} shops",
            value(&m, "livemap_partials_first_sales_known_total ")
        );
    }
    // Viewers watching now, summed over the edges: two browsers on the
    // first, one on the second; both say three, and two once one goes.
    let ws = |e: &Process| format!("ws{}/ws", e.base.trim_start_matches("http"));
    let mut browsers = Vec::new();
    for url in [ws(&e1), ws(&e1), ws(&e2)] {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket");
        browsers.push(socket);
    }
    for (name, e) in [("edge 1", &e1), ("edge 2", &e2)] {
        eventually_within(KAFKA_PATIENCE, "three viewers over both edges", || async {
            (e.snapshot().await?["viewers"] == 3).then_some(())
        })
        .await;
        eprintln!("{name} counts 3 viewers");
    }
    drop(browsers.pop());
    eventually_within(KAFKA_PATIENCE, "two viewers once one left", || async {
        (e1.snapshot().await?["viewers"] == 2).then_some(())
    })
    .await;
    drop(browsers);

    // A late edge rebuilds everything from the topic: each aggregator's
    // newest whole state and the change records since.
    let late = edge(broker.port, "scaled");
    let s = eventually_within(
        KAFKA_PATIENCE,
        "a late edge shows every message",
        || async {
            let s = late.snapshot().await?;
            (processed(&s) >= total).then_some(s)
        },
    )
    .await;
    assert_eq!(observed(&s), want, "a late edge against one process");

    let routed = a1.metrics().await.unwrap_or_default();
    assert!(
        routed.contains("livemap_routed_messages_total{kind=\"filtered\"}"),
        "{routed}"
    );

    // With every aggregator gone, the edges say their totals are stale.
    drop(a1);
    eventually_within(KAFKA_PATIENCE, "the edge marks itself stale", || async {
        (e1.snapshot().await?["stale"] == true).then_some(())
    })
    .await;
}

/// The router, like the single process, resumes at the group's committed
/// offset even inside a record batch: what it routes, filtered counts included, starts exactly there.
#[tokio::test(flavor = "multi_thread")]
async fn a_router_resuming_inside_a_record_batch_routes_from_the_committed_offset() {
    let broker = Broker::shared();
    let messages = one_batch_committed_inside(broker, "inside-agg", "g-inside-agg", 6).await;
    let tail = &messages[COMMITTED_INSIDE..];
    let want = exact_part(&expected(tail));
    assert!(
        want["duplicates"].as_u64() > Some(0) && want["filtered"].as_u64() > Some(0),
        "{want}"
    );
    let a = aggregator_in(broker.port, "inside-agg", "agg-inside", "g-inside-agg");
    let e = edge(broker.port, "inside-agg");
    let s = eventually_within(KAFKA_PATIENCE, "the edge shows the tail", || async {
        let s = e.snapshot().await?;
        (processed(&s) >= tail.len() as u64).then_some(s)
    })
    .await;
    assert_eq!(exact_part(&observed(&s)), want);
    let metrics = a.metrics().await.unwrap_or_default();
    assert!(
        metrics.contains("livemap_router_resume_skipped_offsets_total 0\n")
            && metrics.contains("livemap_router_failed_deliveries_total 0\n"),
        "{metrics}"
    );
    // No aggregator serves a browser: its public port sends them to an edge.
    for path in ["/", "/api/snapshot", "/ws"] {
        let r = reqwest::get(format!("{}{path}", a.base))
            .await
            .expect("the aggregator answers");
        assert_eq!(r.status(), 404, "{path}");
        let body = r.text().await.unwrap_or_default();
        assert!(
            body.contains("browsers connect to an edge"),
            "{path}: {body}"
        );
    }
}

/// An aggregator id is one process's: a second process under a live id
/// refuses to start, and says why, instead of overwriting the first's
/// records; the first publishes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_under_a_live_aggregator_id_refuses_to_start() {
    let broker = Broker::shared();
    broker.create_topic("twins", 2).await;
    let first = aggregator_in(broker.port, "twins", "twin", "g-twins");
    let published = || async {
        let m = first.metrics().await?;
        m.lines()
            .find_map(|l| l.strip_prefix("livemap_partials_seq{aggregator=\"twin\"} "))?
            .parse::<u64>()
            .ok()
    };
    let before = eventually_within(KAFKA_PATIENCE, "the first publishes", published).await;
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_livemap"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--kafka-brokers", &format!("127.0.0.1:{}", broker.port)])
        .args(["--topic", "twins", "--group-id", "g-twins"])
        .args(["--role", "aggregator", "--aggregator-id", "twin"])
        .args(["--publish-ms", "200"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("livemap starts");
    let out = tokio::time::timeout(KAFKA_PATIENCE, second.wait_with_output())
        .await
        .expect("the second process exits")
        .expect("its output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("aggregator id \"twin\" is in use"),
        "{stderr}"
    );
    // The first one's sequence moves on.
    eventually_within(KAFKA_PATIENCE, "the first publishes on", || async {
        published().await.filter(|&now| now > before)
    })
    .await;
}

/// How many records partition 0 of `topic` holds now, and its high
/// watermark: fewer records than offsets once compaction removed some.
fn records_held(broker: &Broker, topic: &str) -> (u64, i64) {
    let (records, high) = broker.records(topic);
    (records.len() as u64, high)
}

/// Compaction keeps what a reader that starts late needs: each
/// aggregator's newest whole state and the change records since. An edge
/// started after compaction removed the earlier records rebuilds every
/// count from what is left, within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_edge_rebuilds_every_count_from_the_compacted_topic() {
    let broker = Broker::shared();
    broker.create_topic("compacting", 2).await;
    // The partial-state topic made as the product makes it, with segments
    // that roll every 300 ms so that the cleaner has something to do.
    let partials = "compacting.livemap-partials";
    broker
        .create_topic_with(
            partials,
            1,
            &[
                ("cleanup.policy", "compact"),
                ("segment.ms", "300"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("max.message.bytes", "67108864"),
            ],
        )
        .await;
    let messages = mixed_batch_with(23, 20_000, DemoMix::default());
    let want = expected(&messages);
    let total = messages.len() as u64;
    let port = broker.port;
    tokio::task::spawn_blocking(move || produce_keyed(port, "compacting", &messages, spread))
        .await
        .expect("produced");
    let a1 = aggregator_in(broker.port, "compacting", "agg-1", "g-compacting");
    let a2 = aggregator_in(broker.port, "compacting", "agg-2", "g-compacting");
    let early = edge(broker.port, "compacting");
    let s = eventually_within(KAFKA_PATIENCE, "an edge shows every message", || async {
        let s = early.snapshot().await?;
        (processed(&s) >= total).then_some(s)
    })
    .await;
    assert_eq!(observed(&s), want, "the early edge against one process");
    // Whole states every 30 records of 200 ms: wait for several, and for
    // the cleaner to drop what they made redundant.
    let (held, offsets) = eventually_within(
        Duration::from_secs(120),
        "the partial-state topic compacted",
        || async {
            let (held, high) =
                tokio::task::spawn_blocking(move || records_held(Broker::shared(), partials))
                    .await
                    .ok()?;
            // Two ids, each: a whole state, up to 30 change records, a
            // claim and an arcs record, plus the active segment's.
            (high > 400 && (held as i64) < high / 2).then_some((held, high))
        },
    )
    .await;
    eprintln!("compacted: {held} records held of {offsets} offsets");
    let started = Instant::now();
    let late = edge(broker.port, "compacting");
    let s = eventually_within(
        KAFKA_PATIENCE,
        "the late edge shows every message",
        || async {
            let s = late.snapshot().await?;
            (processed(&s) >= total).then_some(s)
        },
    )
    .await;
    let took = started.elapsed();
    eprintln!("a late edge rebuilt every count in {took:?}");
    assert_eq!(observed(&s), want, "the late edge against one process");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let m = late.metrics().await.unwrap_or_default();
    let wholes = m
        .lines()
        .find_map(|l| l.strip_prefix("livemap_partials_wholes_decoded_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(wholes, Some(2.0), "one whole state per aggregator:\n{m}");
    drop((a1, a2));
}
