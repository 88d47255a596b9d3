//! Taking checkpoints of the running engine: export under the engine lock,
//! then store durably: to the state directory (`--role all`), or as the
//! aggregator's record on the partial-state topic, where edges merge it
//! and other aggregators take over from it. One at a time, so a slower,
//! older checkpoint can never land after a newer one.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::checkpoint::{CheckpointError, StateDir};
use crate::clock::Clock;
use crate::ingest::Engine;
use crate::partials::publish::Publisher;
use crate::partials::PartialRecord;

/// Where checkpoints go.
#[derive(Debug)]
pub enum Store {
    /// A file in the state directory: the whole state, filter included.
    Dir(StateDir),
    /// The partial-state topic: the state without the filter (a member
    /// taking a partition over re-learns its ids from the partition), and
    /// any arcs sampled since that the aggregator's arc ticker has not
    /// published yet.
    Partials(Arc<Publisher>),
}

#[derive(Debug)]
pub struct Checkpointer {
    store: Store,
    source_id: String,
    engine: Arc<Mutex<Engine>>,
    clock: Arc<dyn Clock>,
    /// Held for a whole checkpoint, export and store together.
    writing: Mutex<()>,
    pub stats: CheckpointStats,
}

/// What `/metrics` reports about checkpoints.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    pub written: AtomicU64,
    pub failed: AtomicU64,
    pub last_at_ms: AtomicI64,
    pub last_duration_us: AtomicU64,
    pub last_bytes: AtomicU64,
}

impl Checkpointer {
    pub fn new(
        store: Store,
        source_id: String,
        engine: Arc<Mutex<Engine>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Checkpointer {
            store,
            source_id,
            engine,
            clock,
            writing: Mutex::new(()),
            stats: CheckpointStats::default(),
        }
    }

    /// Where an aggregator publishes, for its arc ticker.
    pub fn publisher(&self) -> Option<&Arc<Publisher>> {
        match &self.store {
            Store::Partials(p) => Some(p),
            Store::Dir(_) => None,
        }
    }

    /// Writes the engine's current state; returns the offsets that are now
    /// durable and that this member may commit: those of the partitions it
    /// owns, and of `also` (partitions being handed over).
    pub fn checkpoint(&self, also: &[i32]) -> Result<Vec<(i32, i64)>, CheckpointError> {
        let _one_at_a_time = self.writing.lock();
        let started = Instant::now();
        let mut engine = self.engine.lock();
        let positions = engine.committable_positions(also);
        let (result, bytes) = match &self.store {
            Store::Dir(dir) => {
                let bytes = engine.export(&self.source_id);
                drop(engine);
                (dir.store(&bytes), bytes.len())
            }
            Store::Partials(publisher) => {
                let record = PartialRecord {
                    arcs: engine.take_arcs(),
                    state: engine.export_view(&self.source_id),
                    published_ms: self.clock.now_ms(),
                    ..PartialRecord::default()
                };
                drop(engine);
                match publisher.publish(record) {
                    Ok(bytes) => (Ok(()), bytes),
                    Err(e) => (Err(CheckpointError::from(e)), 0),
                }
            }
        };
        match &result {
            Ok(()) => {
                self.stats.written.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .last_at_ms
                    .store(self.clock.now_ms(), Ordering::Relaxed);
                self.stats
                    .last_duration_us
                    .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                self.stats.last_bytes.store(bytes as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        result.map(|()| positions)
    }
}
