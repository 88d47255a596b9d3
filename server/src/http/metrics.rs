//! The operator's numbers for the admin listener's `/metrics`, encoded by
//! prometheus-client in the Prometheus text format (0.0.4).
//!
//! Every value is read at scrape time from state that already exists: the
//! engine, and the atomics that the stages keep anyway. Nothing here sits on
//! the ingest path, so the metrics are [`Collector`]s that read and describe
//! on each scrape, rather than registered counters that the hot path would
//! have to update. Each family has a fixed name (written out whole below, as
//! it appears on the wire, so that a grep finds it), a type, a help text and,
//! where it has labels, a typed label set whose values are bounded.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::persist::Checkpointer;
use crate::source::SourceHealth;
use livemap_engine::decode::Reject;
use livemap_engine::ingest::Engine;

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Timings the tick records for scraping.
#[derive(Debug, Default)]
pub struct TickStats {
    pub snapshots: AtomicU64,
    pub last_build_us: AtomicU64,
    pub last_encode_us: AtomicU64,
    pub last_keyframe_bytes: AtomicU64,
    pub last_delta_bytes: AtomicU64,
    pub last_json_bytes: AtomicU64,
    /// The operators' signals as the last tick judged them.
    pub anomalies: parking_lot::Mutex<Vec<livemap_engine::anomaly::Signal>>,
    /// The anomaly webhook's posts, if there is one.
    pub webhook: Option<Arc<crate::http::webhook::WebhookStats>>,
}

impl TickStats {
    pub fn record(
        &self,
        started: std::time::Instant,
        encoding: std::time::Instant,
        frame: &crate::encode::Frame,
    ) {
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        self.last_build_us
            .store((encoding - started).as_micros() as u64, Ordering::Relaxed);
        self.last_encode_us
            .store(encoding.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.last_keyframe_bytes
            .store(frame.keyframe.raw.len() as u64, Ordering::Relaxed);
        self.last_delta_bytes
            .store(frame.delta.raw.len() as u64, Ordering::Relaxed);
        self.last_json_bytes
            .store(frame.json.raw.len() as u64, Ordering::Relaxed);
    }
}

/// Everything `/metrics` reads.
#[derive(Clone)]
pub struct MetricsSources {
    pub engine: Arc<Mutex<Engine>>,
    pub health: Arc<SourceHealth>,
    pub checkpointer: Option<Arc<Checkpointer>>,
    pub ticks: Arc<TickStats>,
    pub clock: Arc<dyn crate::clock::Clock>,
    pub admission: Arc<crate::http::fanout::Admission>,
    /// The partial-state topic (aggregators and edges).
    pub follower: Option<Arc<crate::kafka::partials::follow::Follower>>,
    /// The router to the by-id topic (aggregators).
    pub router: Option<Arc<crate::kafka::router::RouterStats>>,
}

/// The registry of this process's collectors, built once when the admin
/// listener starts; a scrape only encodes it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(sources: &MetricsSources) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(EngineMetrics {
            engine: sources.engine.clone(),
            clock: sources.clock.clone(),
        }));
        registry.register_collector(Box::new(SourceMetrics(sources.health.clone())));
        if let Some(follower) = &sources.follower {
            registry.register_collector(Box::new(PartialsMetrics {
                follower: follower.clone(),
                clock: sources.clock.clone(),
            }));
        }
        if let Some(router) = &sources.router {
            registry.register_collector(Box::new(RouterMetrics(router.clone())));
        }
        if let Some(checkpointer) = &sources.checkpointer {
            registry.register_collector(Box::new(CheckpointMetrics {
                checkpointer: checkpointer.clone(),
                clock: sources.clock.clone(),
            }));
        }
        registry.register_collector(Box::new(sources.ticks.clone()));
        registry.register_collector(Box::new(sources.admission.clone()));
        Metrics { registry }
    }

    /// The Prometheus text of every family, read now.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Writes metric families through prometheus-client's encoder: each family
/// is described once (help and type), then its series follow.
///
/// Names are given whole, as they appear on the wire. prometheus-client
/// adds `_total` to a counter's name itself, so a counter's name must end
/// in `_total` here and the suffix is taken off before it is handed over.
pub(crate) struct Families<'a>(pub DescriptorEncoder<'a>);

impl Families<'_> {
    /// A counter without labels.
    pub fn counter(&mut self, name: &'static str, help: &str, value: u64) -> fmt::Result {
        let family =
            self.0
                .encode_descriptor(counter_base(name), help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(family)
    }

    /// A counter with one series per label set.
    pub fn counters<L: EncodeLabelSet>(
        &mut self,
        name: &'static str,
        help: &str,
        series: impl IntoIterator<Item = (L, u64)>,
    ) -> fmt::Result {
        let mut family =
            self.0
                .encode_descriptor(counter_base(name), help, None, MetricType::Counter)?;
        for (labels, value) in series {
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A gauge without labels.
    pub fn gauge<V: EncodeGaugeValue>(
        &mut self,
        name: &'static str,
        help: &str,
        value: V,
    ) -> fmt::Result {
        let family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(value).encode(family)
    }

    /// A gauge with one series per label set.
    pub fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &mut self,
        name: &'static str,
        help: &str,
        series: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in series {
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

fn counter_base(name: &'static str) -> &'static str {
    debug_assert!(
        name.ends_with("_total"),
        "counter {name} must end in _total"
    );
    name.strip_suffix("_total").unwrap_or(name)
}

/// Label values from a fixed list: an enum whose variants are the only
/// values its label can take, each spelled as it is on the wire.
macro_rules! label_values {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($variant),+
        }

        impl $name {
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::prometheus_client::encoding::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut ::prometheus_client::encoding::LabelValueEncoder,
            ) -> ::std::fmt::Result {
                ::prometheus_client::encoding::EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    };
}
pub(crate) use label_values;

/// What became of a message: `outcome`, and for a rejected one the
/// `reason` too (one of [`Reject::ALL`]), so a reason can only appear
/// beside `outcome="rejected"`.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Accepted,
    Duplicate,
    Filtered,
    Rejected(Reject),
}

impl EncodeLabelSet for Outcome {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        let outcome = match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Filtered => "filtered",
            Outcome::Rejected(reason) => {
                return [("outcome", "rejected"), ("reason", reason.as_str())].encode(encoder)
            }
        };
        [("outcome", outcome)].encode(encoder)
    }
}

label_values!(
    /// Why a message read again was skipped.
    Replay {
        AlreadyCounted => "already_counted",
        NotOwned => "not_owned",
        Rerouted => "rerouted",
    }
);

#[derive(Debug, Clone, EncodeLabelSet)]
struct WhyLabel {
    why: Replay,
}

/// A partition of the topic this process reads. Bounded: a topic has a
/// fixed, small number of partitions (a partition count only grows by an
/// operator's hand), and only those this process was assigned or read
/// appear.
#[derive(Debug, Clone, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

/// The engine's counts, totals and de-duplication filter.
#[derive(Debug)]
struct EngineMetrics {
    engine: Arc<Mutex<Engine>>,
    clock: Arc<dyn crate::clock::Clock>,
}

impl Collector for EngineMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        // Everything is copied under one short lock and encoded after it,
        // so a scrape holds up the ingest thread only for the copy (and
        // the shops' estimate: counting the filter's bits, a fraction of a
        // millisecond).
        let (counts, replays, dedup_entries, dedup_evicted, orders, cents, owned, newest, shops) = {
            let e = self.engine.lock();
            (
                e.counts().clone(),
                e.replays().clone(),
                e.dedup_entries() as u64,
                e.dedup_evicted_early(),
                e.aggregate().orders,
                e.aggregate().gmv_usd_cents,
                e.owned_partitions(),
                e.newest_event_ms(),
                e.first_sales().estimate(),
            )
        };
        let mut f = Families(encoder);
        let outcomes = [
            (Outcome::Accepted, counts.accepted),
            (Outcome::Duplicate, counts.duplicates),
            (Outcome::Filtered, counts.filtered),
        ]
        .into_iter()
        .chain(
            Reject::ALL
                .iter()
                .zip(counts.rejected)
                .map(|(r, n)| (Outcome::Rejected(*r), n)),
        );
        f.counters(
            "livemap_events_total",
            "Messages by outcome (and rejection reason).",
            outcomes,
        )?;
        f.counter(
            "livemap_strings_truncated_total",
            "Strings of accepted orders cut to their size limit (category levels, cities).",
            counts.truncated,
        )?;
        f.counters(
            "livemap_replayed_messages_total",
            "Messages read again and skipped (already counted, or not ours).",
            [
                (Replay::AlreadyCounted, replays.already_counted),
                (Replay::NotOwned, replays.not_owned),
                (Replay::Rerouted, replays.rerouted),
            ]
            .map(|(why, n)| (WhyLabel { why }, n)),
        )?;
        f.counter(
            "livemap_resume_skipped_offsets_total",
            "Offsets never read where an assigned partition resumed (the broker skipped records).",
            replays.skipped_at_resume,
        )?;
        f.gauge(
            "livemap_orders",
            "Orders counted since the start of the sale.",
            orders,
        )?;
        f.gauge(
            "livemap_gmv_usd_cents",
            "Sales counted, in US cents.",
            cents,
        )?;
        f.gauge(
            "livemap_shops_selling",
            "Shops that have sold during the sale, estimated from the first-sales filter (fixed at 4 MiB; see engine/src/first_sales.rs).",
            shops,
        )?;
        f.gauge(
            "livemap_dedup_entries",
            "Event ids the de-duplication filter remembers.",
            dedup_entries,
        )?;
        f.gauge(
            "livemap_dedup_memory_bytes",
            "Approximate memory of the de-duplication filter.",
            dedup_entries * 32,
        )?;
        f.counter(
            "livemap_dedup_evicted_early_total",
            "Ids forgotten before the horizon to stay within memory.",
            dedup_evicted,
        )?;
        f.gauges(
            "livemap_partition_assigned",
            "1 for each partition this member counts.",
            owned
                .into_iter()
                .map(|partition| (PartitionLabel { partition }, 1u64)),
        )?;
        // Before the first order there is no event time to be behind, and
        // a made-up value would read as a real lag.
        if let Some(newest) = newest {
            f.gauge(
                "livemap_event_time_lag_seconds",
                "How long ago (by this clock) the newest order counted happened, by its event time: the lag when orders flow, the quiet when they do not.",
                seconds_since(self.clock.now_ms(), newest).max(0.0),
            )?;
        }
        Ok(())
    }
}

/// Where messages come from: reachability, staleness, assignments, lag.
#[derive(Debug)]
struct SourceMetrics(Arc<SourceHealth>);

impl Collector for SourceMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let health = &self.0;
        let mut f = Families(encoder);
        f.gauge(
            "livemap_source_connected",
            "1 while the event source is reachable.",
            u64::from(health.connected()),
        )?;
        f.gauge(
            "livemap_stale",
            "1 while snapshots are marked stale.",
            u64::from(health.stale()),
        )?;
        f.counter(
            "livemap_partition_assignments_total",
            "Partition assignments this member received (one per rebalance).",
            health.assignments(),
        )?;
        f.gauges(
            "livemap_consumer_lag_messages",
            "Messages behind the partition's end.",
            health
                .lag()
                .into_iter()
                .map(|(partition, lag)| (PartitionLabel { partition }, lag)),
        )?;
        f.gauges(
            "livemap_consumer_lag_seconds",
            "Age of the newest message read, by the broker's timestamp, where the partition has a backlog (0 without one); past --lag-limit-secs the totals are stale and /readyz fails.",
            health
                .lag_seconds()
                .into_iter()
                .map(|(partition, secs)| (PartitionLabel { partition }, secs)),
        )
    }
}

label_values!(
    /// What became of a partial-state record read (`arcs`: one that
    /// carries only arcs).
    RecordOutcome {
        Read => "read",
        Refused => "refused",
        Arcs => "arcs",
    }
);

#[derive(Debug, Clone, EncodeLabelSet)]
struct RecordOutcomeLabel {
    outcome: RecordOutcome,
}

/// An aggregator id on the partial-state topic. Bounded: the follower
/// lists only the ids it holds, and folds an id silent for
/// `--retire-after-secs` into the retired sum, so past ids leave the
/// label's values as they leave the follower's memory.
#[derive(Debug, Clone, EncodeLabelSet)]
struct AggregatorLabel {
    aggregator: String,
}

/// The partial-state topic, as an aggregator or an edge follows it.
#[derive(Debug)]
struct PartialsMetrics {
    follower: Arc<crate::kafka::partials::follow::Follower>,
    clock: Arc<dyn crate::clock::Clock>,
}

impl Collector for PartialsMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let s = &self.follower.stats;
        let mut f = Families(encoder);
        f.counters(
            "livemap_partials_records_total",
            "Partial-state records read, by outcome (arcs: records that carry only arcs).",
            [
                (RecordOutcome::Read, &s.records),
                (RecordOutcome::Refused, &s.rejected),
                (RecordOutcome::Arcs, &s.arcs_records),
            ]
            .map(|(outcome, n)| (RecordOutcomeLabel { outcome }, n.load(Ordering::Relaxed))),
        )?;
        f.counter(
            "livemap_partials_bytes_total",
            "Bytes of partial-state records read.",
            s.bytes.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_partials_received_bytes_total",
            "Bytes the partial-state reader received from the brokers, as on the wire (compressed, protocol included; librdkafka's statistics, each second).",
            self.follower.received_bytes(),
        )?;
        f.counter(
            "livemap_partials_change_records_total",
            "State records read that carried changes since the previous one (the rest of those read carried whole states).",
            s.change_records.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_partials_wholes_decoded_total",
            "Whole states decoded by an edge: one per aggregator at start, then only after a gap.",
            s.wholes_decoded.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_partials_gaps_total",
            "Change records that did not follow the state held (a record lost): the aggregator's state waits for its next whole state.",
            s.gaps.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_partials_first_sales_total",
            "Shops' first sales announced by an aggregator and shown by this edge: new to every aggregator.",
            s.first_sales.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_partials_first_sales_known_total",
            "First sales announced by an aggregator and not shown: another aggregator knew the shop, or announced it lately.",
            s.first_sales_known.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_partials_twin_records_total",
            "Records not merged: a second process publishes under a live aggregator id (the log names it).",
            s.conflicts.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_partials_retired_ids_total",
            "Aggregator ids retired: their counts folded into one retired sum, their state freed.",
            s.retired.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_partials_retired_refused_total",
            "Records not merged because they continue a retired id's state (restart that aggregator).",
            s.retired_refused.load(Ordering::Relaxed),
        )?;
        f.gauge(
            "livemap_partials_held_ids",
            "Aggregator ids whose state this process holds (retired ones excluded).",
            self.follower.held() as u64,
        )?;
        encode_aggregators(&mut f, self.clock.now_ms(), self.follower.aggregators())
    }
}

/// One age and one sequence per aggregator id held, from
/// `Follower::aggregators()` rows: (id, instance, seq, published_ms).
fn encode_aggregators(
    f: &mut Families,
    now_ms: i64,
    aggregators: Vec<(String, u64, u64, i64)>,
) -> fmt::Result {
    // The sequence is a gauge of its own, not a label of the age: as a
    // label it would start a new series on every publish.
    f.gauges(
        "livemap_partials_age_seconds",
        "Age of each aggregator's newest record (a dead aggregator's grows).",
        aggregators.iter().map(|(aggregator, _, _, published_ms)| {
            (
                AggregatorLabel {
                    aggregator: aggregator.clone(),
                },
                seconds_since(now_ms, *published_ms),
            )
        }),
    )?;
    f.gauges(
        "livemap_partials_seq",
        "Sequence number of each aggregator's newest record (one more per record of a process; a new process starts again).",
        aggregators
            .into_iter()
            .map(|(aggregator, _, seq, _)| (AggregatorLabel { aggregator }, seq)),
    )
}

label_values!(
    /// What the router did with a checkout-topic message.
    Routed {
        Checkout => "checkout",
        Filtered => "filtered",
        Rejected => "rejected",
    }
);

#[derive(Debug, Clone, EncodeLabelSet)]
struct KindLabel {
    kind: Routed,
}

/// An aggregator's router from the checkout topic to the by-id topic.
#[derive(Debug)]
struct RouterMetrics(Arc<crate::kafka::router::RouterStats>);

impl Collector for RouterMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let r = &self.0;
        let mut f = Families(encoder);
        f.counters(
            "livemap_routed_messages_total",
            "Checkout-topic messages this aggregator re-keyed onto the by-id topic, by kind.",
            [
                (Routed::Checkout, &r.checkouts),
                (Routed::Filtered, &r.filtered),
                (Routed::Rejected, &r.rejected),
            ]
            .map(|(kind, n)| (KindLabel { kind }, n.load(Ordering::Relaxed))),
        )?;
        f.counter(
            "livemap_router_resume_skipped_offsets_total",
            "Checkout-topic offsets the router never read where an assigned partition resumed.",
            r.skipped_at_resume.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_router_read_again_total",
            "Checkout-topic messages delivered to the router again, skipped (routed already).",
            r.read_again.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_router_failed_deliveries_total",
            "Messages the by-id topic refused, or given up with one it refused (sent again once routing resumes).",
            r.failed_deliveries.load(Ordering::Relaxed),
        )?;
        f.counter(
            "livemap_router_stops_total",
            "Times routing stopped on a message it could not send.",
            r.blocks.load(Ordering::Relaxed),
        )?;
        f.gauge(
            "livemap_router_blocked",
            "1 while routing is stopped on a message it cannot send (nothing past it is committed; the reason is in the log and in /readyz).",
            u64::from(r.blocked_reason().is_some()),
        )
    }
}

label_values!(
    /// How a checkpoint ended.
    CheckpointResult {
        Ok => "ok",
        Failed => "failed",
    }
);

#[derive(Debug, Clone, EncodeLabelSet)]
struct ResultLabel {
    result: CheckpointResult,
}

/// Checkpoints of the running engine.
#[derive(Debug)]
struct CheckpointMetrics {
    checkpointer: Arc<Checkpointer>,
    clock: Arc<dyn crate::clock::Clock>,
}

impl Collector for CheckpointMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let s = &self.checkpointer.stats;
        let last = s.last_at_ms.load(Ordering::Relaxed);
        let age = if last > 0 {
            seconds_since(self.clock.now_ms(), last)
        } else {
            -1.0
        };
        let mut f = Families(encoder);
        f.gauge(
            "livemap_checkpoint_age_seconds",
            "Seconds since the last durable checkpoint (-1: none yet).",
            age,
        )?;
        f.gauge(
            "livemap_checkpoint_duration_seconds",
            "How long the last checkpoint took.",
            micros_as_seconds(&s.last_duration_us),
        )?;
        f.gauge(
            "livemap_checkpoint_bytes",
            "Size of the last checkpoint.",
            s.last_bytes.load(Ordering::Relaxed),
        )?;
        f.counters(
            "livemap_checkpoints_total",
            "Checkpoints written and failed.",
            [
                (CheckpointResult::Ok, &s.written),
                (CheckpointResult::Failed, &s.failed),
            ]
            .map(|(result, n)| (ResultLabel { result }, n.load(Ordering::Relaxed))),
        )
    }
}

impl Collector for TickStats {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut f = Families(encoder);
        f.counter(
            "livemap_snapshots_total",
            "Snapshots built and published.",
            self.snapshots.load(Ordering::Relaxed),
        )?;
        f.gauge(
            "livemap_snapshot_build_seconds",
            "Time to build the last snapshot from the engine.",
            micros_as_seconds(&self.last_build_us),
        )?;
        f.gauge(
            "livemap_snapshot_encode_seconds",
            "Time to encode the last snapshot (FlatBuffers and JSON).",
            micros_as_seconds(&self.last_encode_us),
        )?;
        f.gauge(
            "livemap_keyframe_bytes",
            "Size of the last binary keyframe (everything, lists included).",
            self.last_keyframe_bytes.load(Ordering::Relaxed),
        )?;
        f.gauge(
            "livemap_delta_bytes",
            "Size of the last tick's binary frame (a delta between keyframes).",
            self.last_delta_bytes.load(Ordering::Relaxed),
        )?;
        f.gauge(
            "livemap_snapshot_json_bytes",
            "Size of the last JSON snapshot.",
            self.last_json_bytes.load(Ordering::Relaxed),
        )?;
        let signals = self.anomalies.lock().clone();
        let label = |s: &livemap_engine::anomaly::Signal| SignalLabel {
            signal: s.kind.as_str(),
        };
        f.gauges(
            "livemap_anomaly",
            "1 while a signal has fallen below half of what the sale's recent history expects (docs/OPERATIONS.md).",
            signals.iter().map(|s| (label(s), u64::from(s.flagged))),
        )?;
        f.gauges(
            "livemap_anomaly_ratio",
            "A signal's last two closed minutes over what the sale's recent history expects (absent while not judged).",
            signals
                .iter()
                .filter_map(|s| Some((label(s), s.ratio()?))),
        )?;
        f.gauges(
            "livemap_anomaly_expected_per_minute",
            "What the sale's recent history expects of a signal per minute (orders; sales in US dollars).",
            signals
                .iter()
                .filter_map(|s| Some((label(s), s.expected?))),
        )?;
        if let Some(w) = &self.webhook {
            f.counters(
                "livemap_anomaly_webhook_posts_total",
                "Anomaly changes posted to --anomaly-webhook, failed, or dropped (too many waiting).",
                [
                    (WebhookResult::Sent, &w.sent),
                    (WebhookResult::Failed, &w.failed),
                    (WebhookResult::Dropped, &w.dropped),
                ]
                .map(|(result, n)| (WebhookLabel { result }, n.load(Ordering::Relaxed))),
            )?;
        }
        Ok(())
    }
}

label_values!(
    /// What became of an anomaly change for the webhook.
    WebhookResult {
        Sent => "sent",
        Failed => "failed",
        Dropped => "dropped",
    }
);

#[derive(Debug, Clone, EncodeLabelSet)]
struct WebhookLabel {
    result: WebhookResult,
}

/// A watched signal (`livemap_engine::anomaly`).
#[derive(Debug, Clone, EncodeLabelSet, PartialEq, Eq, Hash)]
struct SignalLabel {
    signal: &'static str,
}

/// Seconds from `then_ms` to `now_ms`. Negative where `then_ms` came from
/// a clock ahead of this one (another machine's), which is worth seeing.
fn seconds_since(now_ms: i64, then_ms: i64) -> f64 {
    (now_ms - then_ms) as f64 / 1000.0
}

fn micros_as_seconds(us: &AtomicU64) -> f64 {
    us.load(Ordering::Relaxed) as f64 / 1e6
}

/// The Prometheus text of one collector alone, for tests.
#[cfg(test)]
pub(crate) fn render_collector(collector: impl Collector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("a String takes every write");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use livemap_engine::ingest::EngineConfig;

    const NOW: i64 = 1_700_000_000_000;

    fn series<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
            .collect()
    }

    #[test]
    fn every_outcome_is_a_series_and_a_reason_stands_only_beside_rejected() {
        let engine = Arc::new(Mutex::new(Engine::new(EngineConfig::default())));
        engine.lock().ingest(Some(b""), None, NOW);
        let clock = Arc::new(ManualClock::new(NOW));
        let text = render_collector(EngineMetrics {
            engine: engine.clone(),
            clock: clock.clone(),
        });
        let events = series(&text, "livemap_events_total");
        assert_eq!(events.len(), 3 + Reject::ALL.len(), "{text}");
        assert!(events.contains(&"livemap_events_total{outcome=\"accepted\"} 0"));
        assert!(events.contains(&"livemap_events_total{outcome=\"rejected\",reason=\"empty\"} 1"));
        assert!(
            events
                .iter()
                .all(|l| l.contains("outcome=\"rejected\"") == l.contains("reason=")),
            "{text}"
        );
        assert!(
            text.contains("# TYPE livemap_events_total counter\n"),
            "{text}"
        );
        // No order, no event time to be behind.
        assert!(series(&text, "livemap_event_time_lag_seconds").is_empty());
    }

    #[test]
    fn an_aggregator_is_one_series_whatever_its_sequence() {
        #[derive(Debug)]
        struct Rows(Vec<(String, u64, u64, i64)>);
        impl Collector for Rows {
            fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
                encode_aggregators(&mut Families(encoder), NOW, self.0.clone())
            }
        }
        let rows = |seq| {
            Rows(vec![
                ("agg-1".to_owned(), 7, seq, NOW - 1_500),
                ("odd \"id\"\\".to_owned(), 8, 3, NOW + 250),
            ])
        };
        let before = render_collector(rows(41));
        let after = render_collector(rows(42));
        for text in [&before, &after] {
            assert!(!text.contains("seq="), "{text}");
            assert_eq!(series(text, "livemap_partials_age_seconds").len(), 2);
            assert_eq!(series(text, "livemap_partials_seq").len(), 2);
        }
        assert!(before.contains("livemap_partials_age_seconds{aggregator=\"agg-1\"} 1.5\n"));
        assert!(before.contains("livemap_partials_seq{aggregator=\"agg-1\"} 41\n"));
        assert!(after.contains("livemap_partials_seq{aggregator=\"agg-1\"} 42\n"));
        // A record stamped by a clock ahead of this one shows as negative.
        assert!(
            before.contains(
                "livemap_partials_age_seconds{aggregator=\"odd \\\"id\\\"\\\\\"} -0.25\n"
            ),
            "{before}"
        );
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "must end in _total")]
    fn a_counter_not_named_total_is_caught() {
        #[derive(Debug)]
        struct Misnamed;
        impl Collector for Misnamed {
            fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
                Families(encoder).counter("livemap_misnamed", "A counter without _total.", 1)
            }
        }
        render_collector(Misnamed);
    }
}
