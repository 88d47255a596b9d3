//! The operator's numbers, rendered in the Prometheus text format for the
//! admin listener's `/metrics`. Everything is read at scrape time from the
//! state that already exists; nothing here sits on the ingest path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::persist::Checkpointer;
use crate::source::SourceHealth;
use livemap_engine::decode::Reject;
use livemap_engine::ingest::Engine;

/// Timings the tick records for scraping.
#[derive(Debug, Default)]
pub struct TickStats {
    pub snapshots: AtomicU64,
    pub last_build_us: AtomicU64,
    pub last_encode_us: AtomicU64,
    pub last_keyframe_bytes: AtomicU64,
    pub last_delta_bytes: AtomicU64,
    pub last_json_bytes: AtomicU64,
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
    pub admission: Arc<crate::fanout::Admission>,
    /// The partial-state topic (aggregators and edges).
    pub follower: Option<Arc<crate::kafka::partials::follow::Follower>>,
    /// The router to the by-id topic (aggregators).
    pub router: Option<Arc<crate::kafka::router::RouterStats>>,
}

impl MetricsSources {
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let (counts, replays, dedup_entries, dedup_evicted, orders, cents, owned) = {
            let e = self.engine.lock();
            (
                e.counts.clone(),
                e.replays.clone(),
                e.dedup_entries(),
                e.dedup_evicted_early(),
                e.aggregate.orders,
                e.aggregate.gmv_usd_cents,
                e.owned_partitions(),
            )
        };
        family(
            &mut out,
            "livemap_events_total",
            "counter",
            "Messages by outcome (and rejection reason).",
        );
        let _ = writeln!(
            out,
            "livemap_events_total{{outcome=\"accepted\"}} {}",
            counts.accepted
        );
        let _ = writeln!(
            out,
            "livemap_events_total{{outcome=\"duplicate\"}} {}",
            counts.duplicates
        );
        let _ = writeln!(
            out,
            "livemap_events_total{{outcome=\"filtered\"}} {}",
            counts.filtered
        );
        for (r, n) in Reject::ALL.iter().zip(counts.rejected) {
            let _ = writeln!(
                out,
                "livemap_events_total{{outcome=\"rejected\",reason=\"{}\"}} {n}",
                r.as_str()
            );
        }
        counter(
            &mut out,
            "livemap_strings_truncated_total",
            "Strings of accepted orders cut to their size limit (category levels, cities).",
            counts.truncated,
        );
        family(
            &mut out,
            "livemap_replayed_messages_total",
            "counter",
            "Messages read again and skipped (already counted, or not ours).",
        );
        let _ = writeln!(
            out,
            "livemap_replayed_messages_total{{why=\"already_counted\"}} {}",
            replays.already_counted
        );
        let _ = writeln!(
            out,
            "livemap_replayed_messages_total{{why=\"not_owned\"}} {}",
            replays.not_owned
        );
        let _ = writeln!(
            out,
            "livemap_replayed_messages_total{{why=\"rerouted\"}} {}",
            replays.rerouted
        );
        counter(
            &mut out,
            "livemap_resume_skipped_offsets_total",
            "Offsets never read where an assigned partition resumed (the broker skipped records).",
            replays.skipped_at_resume,
        );
        gauge(
            &mut out,
            "livemap_orders",
            "Orders counted since the start of the sale.",
            orders as f64,
        );
        gauge(
            &mut out,
            "livemap_gmv_usd_cents",
            "Sales counted, in US cents.",
            cents as f64,
        );
        gauge(
            &mut out,
            "livemap_dedup_entries",
            "Event ids the de-duplication filter remembers.",
            dedup_entries as f64,
        );
        gauge(
            &mut out,
            "livemap_dedup_memory_bytes",
            "Approximate memory of the de-duplication filter.",
            (dedup_entries * 32) as f64,
        );
        family(
            &mut out,
            "livemap_dedup_evicted_early_total",
            "counter",
            "Ids forgotten before the horizon to stay within memory.",
        );
        let _ = writeln!(out, "livemap_dedup_evicted_early_total {dedup_evicted}");

        gauge(
            &mut out,
            "livemap_source_connected",
            "1 while the event source is reachable.",
            f64::from(u8::from(self.health.connected())),
        );
        gauge(
            &mut out,
            "livemap_stale",
            "1 while snapshots are marked stale.",
            f64::from(u8::from(self.health.stale())),
        );
        family(
            &mut out,
            "livemap_partition_assigned",
            "gauge",
            "1 for each partition this member counts.",
        );
        for p in owned {
            let _ = writeln!(out, "livemap_partition_assigned{{partition=\"{p}\"}} 1");
        }
        family(
            &mut out,
            "livemap_partition_assignments_total",
            "counter",
            "Partition assignments this member received (one per rebalance).",
        );
        let _ = writeln!(
            out,
            "livemap_partition_assignments_total {}",
            self.health.assignments()
        );
        family(
            &mut out,
            "livemap_consumer_lag_messages",
            "gauge",
            "Messages behind the partition's end.",
        );
        for (p, lag) in self.health.lag() {
            let _ = writeln!(
                out,
                "livemap_consumer_lag_messages{{partition=\"{p}\"}} {lag}"
            );
        }
        family(
            &mut out,
            "livemap_consumer_lag_seconds",
            "gauge",
            "Age of the newest message read, by the broker's timestamp, where the partition has a backlog (0 without one); past --lag-limit-secs the totals are stale and /readyz fails.",
        );
        for (p, secs) in self.health.lag_seconds() {
            let _ = writeln!(
                out,
                "livemap_consumer_lag_seconds{{partition=\"{p}\"}} {secs:.3}"
            );
        }
        let newest_event = self.engine.lock().newest_event_ms();
        if let Some(newest) = newest_event {
            gauge(
                &mut out,
                "livemap_event_time_lag_seconds",
                "How long ago (by this clock) the newest order counted happened, by its event time: the lag when orders flow, the quiet when they do not.",
                ((self.clock.now_ms() - newest).max(0)) as f64 / 1000.0,
            );
        }

        if let Some(f) = &self.follower {
            self.render_partials(&mut out, f);
        }
        if let Some(r) = &self.router {
            family(
                &mut out,
                "livemap_routed_messages_total",
                "counter",
                "Checkout-topic messages this aggregator re-keyed onto the by-id topic, by kind.",
            );
            for (kind, n) in [
                ("checkout", &r.checkouts),
                ("filtered", &r.filtered),
                ("rejected", &r.rejected),
            ] {
                let _ = writeln!(
                    out,
                    "livemap_routed_messages_total{{kind=\"{kind}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
            counter(
                &mut out,
                "livemap_router_resume_skipped_offsets_total",
                "Checkout-topic offsets the router never read where an assigned partition resumed.",
                r.skipped_at_resume.load(Ordering::Relaxed),
            );
            counter(
                &mut out,
                "livemap_router_read_again_total",
                "Checkout-topic messages delivered to the router again, skipped (routed already).",
                r.read_again.load(Ordering::Relaxed),
            );
            counter(
                &mut out,
                "livemap_router_failed_deliveries_total",
                "Messages the by-id topic refused, or given up with one it refused (sent again once routing resumes).",
                r.failed_deliveries.load(Ordering::Relaxed),
            );
            counter(
                &mut out,
                "livemap_router_stops_total",
                "Times routing stopped on a message it could not send.",
                r.blocks.load(Ordering::Relaxed),
            );
            let blocked = r.blocked_reason();
            gauge(
                &mut out,
                "livemap_router_blocked",
                "1 while routing is stopped on a message it cannot send (nothing past it is committed; the reason is in the log and in /readyz).",
                f64::from(u8::from(blocked.is_some())),
            );
        }
        if let Some(ck) = &self.checkpointer {
            let s = &ck.stats;
            let last = s.last_at_ms.load(Ordering::Relaxed);
            let age = if last > 0 {
                (self.clock.now_ms() - last) as f64 / 1000.0
            } else {
                -1.0
            };
            gauge(
                &mut out,
                "livemap_checkpoint_age_seconds",
                "Seconds since the last durable checkpoint (-1: none yet).",
                age,
            );
            gauge(
                &mut out,
                "livemap_checkpoint_duration_seconds",
                "How long the last checkpoint took.",
                s.last_duration_us.load(Ordering::Relaxed) as f64 / 1e6,
            );
            gauge(
                &mut out,
                "livemap_checkpoint_bytes",
                "Size of the last checkpoint.",
                s.last_bytes.load(Ordering::Relaxed) as f64,
            );
            family(
                &mut out,
                "livemap_checkpoints_total",
                "counter",
                "Checkpoints written and failed.",
            );
            let _ = writeln!(
                out,
                "livemap_checkpoints_total{{result=\"ok\"}} {}",
                s.written.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "livemap_checkpoints_total{{result=\"failed\"}} {}",
                s.failed.load(Ordering::Relaxed)
            );
        }

        let t = &self.ticks;
        family(
            &mut out,
            "livemap_snapshots_total",
            "counter",
            "Snapshots built and published.",
        );
        let _ = writeln!(
            out,
            "livemap_snapshots_total {}",
            t.snapshots.load(Ordering::Relaxed)
        );
        gauge(
            &mut out,
            "livemap_snapshot_build_seconds",
            "Time to build the last snapshot from the engine.",
            t.last_build_us.load(Ordering::Relaxed) as f64 / 1e6,
        );
        gauge(
            &mut out,
            "livemap_snapshot_encode_seconds",
            "Time to encode the last snapshot (FlatBuffers and JSON).",
            t.last_encode_us.load(Ordering::Relaxed) as f64 / 1e6,
        );
        gauge(
            &mut out,
            "livemap_keyframe_bytes",
            "Size of the last binary keyframe (everything, lists included).",
            t.last_keyframe_bytes.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "livemap_delta_bytes",
            "Size of the last tick's binary frame (a delta between keyframes).",
            t.last_delta_bytes.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "livemap_snapshot_json_bytes",
            "Size of the last JSON snapshot.",
            t.last_json_bytes.load(Ordering::Relaxed) as f64,
        );
        self.admission.render_metrics(&mut out);
        out
    }
}

impl MetricsSources {
    fn render_partials(&self, out: &mut String, f: &crate::kafka::partials::follow::Follower) {
        let s = &f.stats;
        family(
            out,
            "livemap_partials_records_total",
            "counter",
            "Partial-state records read, by outcome (arcs: records that carry only arcs).",
        );
        let _ = writeln!(
            out,
            "livemap_partials_records_total{{outcome=\"read\"}} {}",
            s.records.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "livemap_partials_records_total{{outcome=\"refused\"}} {}",
            s.rejected.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "livemap_partials_records_total{{outcome=\"arcs\"}} {}",
            s.arcs_records.load(Ordering::Relaxed)
        );
        counter(
            out,
            "livemap_partials_bytes_total",
            "Bytes of partial-state records read.",
            s.bytes.load(Ordering::Relaxed),
        );
        counter(
            out,
            "livemap_partials_twin_records_total",
            "Records not merged: a second process publishes under a live aggregator id (the log names it).",
            s.conflicts.load(Ordering::Relaxed),
        );
        counter(
            out,
            "livemap_partials_retired_ids_total",
            "Aggregator ids retired: their counts folded into one retired sum, their state freed.",
            s.retired.load(Ordering::Relaxed),
        );
        counter(
            out,
            "livemap_partials_retired_refused_total",
            "Records not merged because they continue a retired id's state (restart that aggregator).",
            s.retired_refused.load(Ordering::Relaxed),
        );
        gauge(
            out,
            "livemap_partials_held_ids",
            "Aggregator ids whose state this process holds (retired ones excluded).",
            f.held() as f64,
        );
        family(
            out,
            "livemap_partials_age_seconds",
            "gauge",
            "Age of each aggregator's newest record (a dead aggregator's grows).",
        );
        let now = self.clock.now_ms();
        for (aggregator, _, seq, published_ms) in f.aggregators() {
            let _ = writeln!(
                out,
                "livemap_partials_age_seconds{{aggregator=\"{}\",seq=\"{seq}\"}} {}",
                aggregator.replace(['"', '\\', '\n'], "_"),
                (now - published_ms) as f64 / 1000.0
            );
        }
    }
}

pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}
