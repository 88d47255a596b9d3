//! Taking checkpoints of the running engine: export under the engine lock,
//! then store durably: to the state directory (`--role all`), or as the
//! aggregator's record on the partial-state topic, where edges merge it
//! and other aggregators take over from it. One at a time, so a slower,
//! older checkpoint can never land after a newer one.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::clock::Clock;
use crate::kafka::partials::publish::Publisher;
use livemap_engine::checkpoint::{CheckpointError, StateDir};
use livemap_engine::ingest::{Engine, EngineConfig};

/// Why a checkpoint was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Publish(#[from] crate::kafka::partials::PartialsError),
}

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
    pub fn checkpoint(&self, also: &[i32]) -> Result<Vec<(i32, i64)>, PersistError> {
        let _one_at_a_time = self.writing.lock();
        let started = Instant::now();
        let mut engine = self.engine.lock();
        let positions = engine.committable_positions(also);
        let (result, bytes) = match &self.store {
            Store::Dir(dir) => {
                let bytes = engine.export(&self.source_id);
                drop(engine);
                (dir.store(&bytes).map_err(PersistError::from), bytes.len())
            }
            Store::Partials(publisher) => {
                let sampled = (engine.take_arcs(), engine.take_first_sales());
                let prepared =
                    publisher.prepare(&engine, &self.source_id, sampled, self.clock.now_ms());
                drop(engine);
                match publisher.publish(prepared) {
                    Ok(bytes) => (Ok(()), bytes),
                    Err(e) => (Err(PersistError::from(e)), 0),
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

/// Restores the engine from the state directory: the newest checkpoint,
/// or, if that one cannot be read or restored, the previous one. `None`
/// when there is no checkpoint at all (a first start). When checkpoints
/// exist but none can be restored, the start is refused (totals from zero
/// on screens mid-sale are worse than a failed deploy), unless
/// `discard_unreadable`: then the unreadable files are renamed aside
/// (`*.unreadable`) and counting starts from zero.
pub fn restore_from_dir(
    dir: &StateDir,
    config: &EngineConfig,
    source: &str,
    discard_unreadable: bool,
) -> Result<Option<Engine>, CheckpointError> {
    let mut failures = Vec::new();
    for path in [dir.path(), dir.previous_path()] {
        let restored = StateDir::read(&path).and_then(|saved| {
            saved
                .map(|s| Engine::restore_format(config.clone(), source, &s.payload, s.format))
                .transpose()
        });
        match restored {
            Ok(Some(mut engine)) => {
                if path == dir.previous_path() {
                    // The group's commits may stand for the newest
                    // checkpoint's progress, which this state lacks.
                    engine.resume_from_own_positions();
                }
                if !failures.is_empty() {
                    tracing::error!(
                        restored = %path.display(),
                        refused = %failures.join("; "),
                        "the newest checkpoint could not be restored: restored the previous one (what was counted since is read again from the source)"
                    );
                }
                return Ok(Some(engine));
            }
            Ok(None) => {}
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    if failures.is_empty() {
        return Ok(None);
    }
    if !discard_unreadable {
        return Err(CheckpointError::Unusable {
            dir: dir.dir().to_path_buf(),
            reasons: failures.join("; "),
        });
    }
    for path in [dir.path(), dir.previous_path()] {
        if path.exists() {
            let aside = path.with_extension("unreadable");
            std::fs::rename(&path, &aside).map_err(|source| CheckpointError::Io {
                path: path.clone(),
                source,
            })?;
        }
    }
    tracing::error!(
        refused = %failures.join("; "),
        "--discard-unreadable-checkpoint: no checkpoint could be restored; counting starts from zero"
    );
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use livemap_events::demo::{DemoMix, Generator};

    fn temp_dir(name: &str) -> StateDir {
        let dir =
            std::env::temp_dir().join(format!("livemap-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        StateDir::new(dir).expect("dir")
    }

    fn engine_with(orders: i64) -> Engine {
        let mut g = Generator::new(3, DemoMix::default());
        let mut e = Engine::new(EngineConfig::default());
        let now = 1_795_788_000_000;
        for i in 0..orders {
            e.ingest(Some(&g.checkout(now + i)), None, now + i);
        }
        e
    }

    fn corrupt(path: &std::path::Path) {
        let mut bytes = std::fs::read(path).expect("read");
        let n = bytes.len();
        bytes[n / 2] ^= 0x55;
        std::fs::write(path, bytes).expect("write");
    }

    #[test]
    fn a_corrupt_newest_checkpoint_falls_back_to_the_previous() {
        let dir = temp_dir("fallback");
        let config = EngineConfig::default();
        assert!(restore_from_dir(&dir, &config, "demo", false)
            .expect("no checkpoint is fine")
            .is_none());
        dir.store(&engine_with(10).export("demo")).expect("first");
        dir.store(&engine_with(20).export("demo")).expect("second");
        corrupt(&dir.path());
        let restored = restore_from_dir(&dir, &config, "demo", false)
            .expect("falls back")
            .expect("an engine");
        assert_eq!(restored.aggregate().orders, 10, "the previous checkpoint");
        // Killed between the two renames: only the previous exists.
        std::fs::remove_file(dir.path()).expect("removed");
        let restored = restore_from_dir(&dir, &config, "demo", false)
            .expect("restores")
            .expect("an engine");
        assert_eq!(restored.aggregate().orders, 10);
    }

    #[test]
    fn when_no_checkpoint_restores_the_start_is_refused_naming_the_file_and_the_flag() {
        let dir = temp_dir("refuse");
        let config = EngineConfig::default();
        dir.store(&engine_with(10).export("demo")).expect("first");
        dir.store(&engine_with(20).export("demo")).expect("second");
        corrupt(&dir.path());
        corrupt(&dir.previous_path());
        let err = restore_from_dir(&dir, &config, "demo", false)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("checkpoint.bin"), "{err}");
        assert!(err.contains("checkpoint.prev.bin"), "{err}");
        assert!(err.contains("--discard-unreadable-checkpoint"), "{err}");
        // A checkpoint of another source is not restorable either.
        let other = temp_dir("other");
        other
            .store(&engine_with(5).export("kafka:x"))
            .expect("stored");
        assert!(restore_from_dir(&other, &config, "demo", false).is_err());
        // The override starts from zero and keeps the files aside.
        assert!(restore_from_dir(&dir, &config, "demo", true)
            .expect("starts")
            .is_none());
        assert!(dir.path().with_extension("unreadable").exists());
        assert!(!dir.path().exists());
    }
}
