//! Source stage: where raw messages come from. Every source delivers the
//! same thing, batches of message values, into one bounded channel, so the
//! rest of the pipeline cannot tell the demo from Kafka.
//!
//! Next stage: `livemap_engine::ingest`, through the pipeline's ingest
//! thread.

pub mod demo;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
pub use livemap_engine::position::{FilteredBlock, Origin, Position};
use parking_lot::Mutex;

/// One message value as the source read it; `None` is a Kafka tombstone.
#[derive(Debug, Clone)]
pub struct Message {
    pub payload: Option<Bytes>,
    /// Where it was read, for sources with offsets; `None` for the demo.
    pub position: Option<Position>,
    /// Where it was first written, for a message an aggregator's router
    /// re-keyed onto the by-id topic (`crate::kafka::router`).
    pub origin: Option<Origin>,
}

/// Messages travel in batches so the channel and the engine lock are paid
/// per batch, not per message.
pub type Batch = Vec<Message>;

/// Batches queued between a source and the engine; past this the source
/// waits (back-pressure) instead of buffering without bound.
pub const CHANNEL_BATCHES: usize = 64;

/// How the source is doing, as the snapshot's `stale` flag and `/readyz`
/// need it: whether the broker is reachable, and how far behind we read.
#[derive(Debug)]
pub struct SourceHealth {
    connected: AtomicBool,
    /// Consumer lag per partition, in messages, from the client's statistics.
    lag: Mutex<BTreeMap<i32, i64>>,
    lag_limit: i64,
    /// Whether this source can lag at all (the demo cannot).
    partitioned: bool,
    restored: AtomicBool,
    statistics_seen: AtomicI64,
    /// Partition assignments received (each rebalance that reached us).
    assignments: AtomicU64,
    /// A group member: stale until it is assigned partitions and the
    /// client has said how far behind it reads each of them.
    grouped: bool,
    /// The partitions this member reads, while `grouped`.
    assigned: Mutex<Option<BTreeSet<i32>>>,
    /// The partitions the client fetches, from its statistics.
    fetching: Mutex<BTreeSet<i32>>,
    /// Per partition, how old the newest message read was when the client
    /// last reported a backlog there (0 without one), in seconds.
    lag_seconds: Mutex<BTreeMap<i32, f64>>,
    lag_limit_seconds: f64,
}

impl SourceHealth {
    /// Health of a source that is always current (the demo).
    pub fn always_live() -> SourceHealth {
        let h = SourceHealth::new(i64::MAX, false);
        h.connected.store(true, Ordering::Relaxed);
        h.restored.store(true, Ordering::Relaxed);
        h
    }

    /// Health of a partitioned source that is stale past `lag_limit`
    /// messages behind, or while no broker is reachable.
    pub fn new(lag_limit: i64, partitioned: bool) -> SourceHealth {
        SourceHealth {
            connected: AtomicBool::new(false),
            lag: Mutex::new(BTreeMap::new()),
            lag_limit,
            partitioned,
            restored: AtomicBool::new(false),
            statistics_seen: AtomicI64::new(0),
            assignments: AtomicU64::new(0),
            grouped: false,
            assigned: Mutex::new(None),
            fetching: Mutex::new(BTreeSet::new()),
            lag_seconds: Mutex::new(BTreeMap::new()),
            lag_limit_seconds: f64::INFINITY,
        }
    }

    /// Health of a consumer-group member: as [`SourceHealth::new`], and
    /// stale until it is assigned partitions and knows its lag in each.
    /// A restarted process shows its restored totals at once, marked
    /// stale, rather than fresh totals that have not caught up.
    pub fn grouped(lag_limit: i64, lag_limit_seconds: f64) -> SourceHealth {
        SourceHealth {
            grouped: true,
            lag_limit_seconds,
            ..SourceHealth::new(lag_limit, true)
        }
    }

    pub fn observe(&self, broker_up: bool, lag: Vec<(i32, i64)>) {
        self.connected.store(broker_up, Ordering::Relaxed);
        self.statistics_seen.fetch_add(1, Ordering::Relaxed);
        let mut map = self.lag.lock();
        map.clear();
        map.extend(lag);
    }

    pub fn observe_lag_seconds(&self, lag: BTreeMap<i32, f64>) {
        *self.lag_seconds.lock() = lag;
    }

    pub fn lag_seconds(&self) -> BTreeMap<i32, f64> {
        self.lag_seconds.lock().clone()
    }

    fn max_lag_seconds(&self) -> f64 {
        self.lag_seconds
            .lock()
            .values()
            .copied()
            .fold(0.0, f64::max)
    }

    pub fn observe_fetching(&self, partitions: BTreeSet<i32>) {
        *self.fetching.lock() = partitions;
    }

    pub fn observe_down(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    pub fn observe_message(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    pub fn observe_assignment(&self, partitions: &[i32]) {
        self.assignments.fetch_add(1, Ordering::Relaxed);
        self.assigned
            .lock()
            .get_or_insert_with(BTreeSet::new)
            .extend(partitions);
    }

    pub fn observe_revocation(&self, partitions: &[i32]) {
        if let Some(assigned) = self.assigned.lock().as_mut() {
            for p in partitions {
                assigned.remove(p);
            }
        }
    }

    /// Whether a group member still waits for its partitions, or for the
    /// client to fetch one of them (until then its lag is unknown).
    fn unsettled(&self) -> bool {
        if !self.grouped {
            return false;
        }
        let fetching = self.fetching.lock();
        match &*self.assigned.lock() {
            None => true,
            Some(assigned) => assigned.iter().any(|p| !fetching.contains(p)),
        }
    }

    pub fn assignments(&self) -> u64 {
        self.assignments.load(Ordering::Relaxed)
    }

    pub fn mark_restored(&self) {
        self.restored.store(true, Ordering::Relaxed);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn lag(&self) -> BTreeMap<i32, i64> {
        self.lag.lock().clone()
    }

    pub fn total_lag(&self) -> i64 {
        self.lag.lock().values().sum()
    }

    /// True while the source is unreachable or lagging past a limit (in
    /// messages, or in seconds by the broker's timestamps), or (a group
    /// member) not yet reading its partitions.
    pub fn stale(&self) -> bool {
        self.partitioned
            && (!self.connected()
                || self.total_lag() > self.lag_limit
                || self.max_lag_seconds() > self.lag_limit_seconds
                || self.unsettled())
    }

    /// Ready once the state is restored and reading is caught up.
    pub fn ready(&self) -> bool {
        self.restored.load(Ordering::Relaxed)
            && (!self.partitioned
                || (self.statistics_seen.load(Ordering::Relaxed) > 0 && !self.stale()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(lag_limit_seconds: f64) -> SourceHealth {
        let h = SourceHealth::grouped(1_000, lag_limit_seconds);
        h.mark_restored();
        h.observe_assignment(&[0, 1]);
        h.observe_fetching([0, 1].into());
        h.observe(true, vec![(0, 5), (1, 0)]);
        h
    }

    #[test]
    fn a_member_is_stale_until_it_reads_its_partitions() {
        let h = SourceHealth::grouped(1_000, 30.0);
        h.mark_restored();
        h.observe(true, Vec::new());
        assert!(h.stale(), "no partitions yet");
        h.observe_assignment(&[0, 1]);
        h.observe_fetching([0].into());
        assert!(h.stale(), "partition 1 not fetched yet");
        h.observe_fetching([0, 1].into());
        assert!(!h.stale() && h.ready());
    }

    #[test]
    fn a_backlog_older_than_the_limit_is_stale_however_few_messages() {
        let h = settled(30.0);
        h.observe_lag_seconds([(0, 12.0), (1, 0.0)].into());
        assert!(!h.stale());
        h.observe_lag_seconds([(0, 31.0), (1, 0.0)].into());
        assert!(h.stale() && !h.ready(), "5 messages behind, but 31 s old");
    }
}
