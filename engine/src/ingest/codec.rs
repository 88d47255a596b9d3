//! The engine's state as bytes: what a checkpoint file and an
//! aggregator's partial-state record carry, and restoring it, from this
//! release's format or its predecessor's.

use std::collections::{BTreeMap, VecDeque};

use super::{Engine, EngineConfig};
use crate::aggregate::{Aggregate, Breakdowns, MINUTE_MS};
use crate::checkpoint::{CheckpointError, Reader, Writer};
use crate::decode::Reject;
use crate::dedup::Dedup;
use crate::event_time::EventClock;
use crate::first_sales::FirstSales;
use crate::rankings::Rankings;
use crate::trends::Trends;

use super::partitions::PartitionState;

impl Engine {
    /// Writes the whole state (not the per-tick arc sample) for a
    /// checkpoint. `source` names what the offsets belong to.
    pub fn export(&self, source: &str) -> Vec<u8> {
        self.write(source, true)
    }

    /// [`Engine::export`] without the de-duplication filter (written
    /// empty): what an aggregator publishes every second for the edges,
    /// which never de-duplicate, and for members taking partitions over,
    /// which re-learn the ids from the partition itself.
    pub fn export_view(&self, source: &str) -> Vec<u8> {
        self.write(source, false)
    }

    fn write(&self, source: &str, with_dedup: bool) -> Vec<u8> {
        let mut w = Writer::default();
        self.write_counts(source, &mut w);
        self.clock.export(&mut w);
        self.write_rejected(&mut w);
        self.aggregate.export(&mut w);
        w.u8(u8::from(with_dedup));
        if with_dedup {
            self.dedup.export(&mut w);
        } else {
            Dedup::new(self.dedup.horizon_minutes() * MINUTE_MS, 0).export(&mut w);
        }
        self.trends.export(&mut w);
        self.breakdowns.export(&mut w);
        self.rankings.export(&mut w);
        self.first_sales.export(&mut w);
        self.write_partitions(&mut w);
        w.buf
    }

    /// Rebuilds an engine from [`Engine::export`] of this release.
    /// Partitions come back unowned: the source assigns them again.
    pub fn restore(
        config: EngineConfig,
        source: &str,
        bytes: &[u8],
    ) -> Result<Engine, CheckpointError> {
        Engine::restore_format(config, source, bytes, crate::checkpoint::FORMAT_VERSION)
    }

    /// [`Engine::restore`] of a state written in checkpoint format
    /// `format`: this release's, or the ones before it (5: no first-sales
    /// filter, which then learns for a while before it announces; 4: no
    /// partition watermarks, no truncation count), so a release deployed
    /// mid-sale continues from its predecessor's checkpoint.
    pub fn restore_format(
        config: EngineConfig,
        source: &str,
        bytes: &[u8],
        format: u32,
    ) -> Result<Engine, CheckpointError> {
        if !crate::checkpoint::READABLE_FORMATS.contains(&format) {
            return Err(CheckpointError::Payload("state of an unknown format"));
        }
        let lateness = config.allowed_lateness_ms;
        let mut engine = Engine::new(config);
        let mut r = Reader::new(bytes);
        if r.string()? != source {
            return Err(CheckpointError::Payload(
                "checkpoint belongs to another source",
            ));
        }
        engine.counts.accepted = r.u64()?;
        engine.counts.duplicates = r.u64()?;
        engine.counts.filtered = r.u64()?;
        engine.counts.late = r.u64()?;
        if format >= 5 {
            engine.counts.truncated = r.u64()?;
            engine.clock = EventClock::restore(&mut r, lateness)?;
        } else {
            engine.clock = EventClock::from_newest(r.i64()?, lateness);
        }
        engine.counts.rejected = Engine::read_rejected(&mut r)?;
        engine.aggregate = Aggregate::restore(&mut r)?;
        let learned = r.u8()? == 1;
        engine.dedup.restore(&mut r)?;
        engine.trends = Trends::restore(&mut r)?;
        engine.breakdowns = Breakdowns::restore(&mut r)?;
        engine.rankings = Rankings::restore(&mut r)?;
        engine.first_sales = if format >= 6 {
            FirstSales::restore(&mut r)?
        } else {
            FirstSales::learning_after(engine.clock.newest_ms())
        };
        engine.partitions = Engine::read_partitions(&mut r, learned)?;
        if !r.is_empty() {
            return Err(CheckpointError::Payload("trailing bytes"));
        }
        Ok(engine)
    }
}

impl Engine {
    /// The counts every state carries whole, in front.
    pub(super) fn write_counts(&self, source: &str, w: &mut Writer) {
        w.str(source);
        w.u64(self.counts.accepted);
        w.u64(self.counts.duplicates);
        w.u64(self.counts.filtered);
        w.u64(self.counts.late);
        w.u64(self.counts.truncated);
    }

    pub(super) fn write_rejected(&self, w: &mut Writer) {
        w.u64(Reject::ALL.len() as u64);
        for (r, n) in Reject::ALL.iter().zip(self.counts.rejected) {
            w.str(r.as_str());
            w.u64(n);
        }
    }

    pub(super) fn read_rejected(
        r: &mut Reader,
    ) -> Result<[u64; Reject::ALL.len()], CheckpointError> {
        let mut rejected = [0; Reject::ALL.len()];
        for _ in 0..r.count(16)? {
            let (name, n) = (r.string()?, r.u64()?);
            let reason = Reject::ALL
                .iter()
                .position(|x| x.as_str() == name)
                .ok_or(CheckpointError::Payload("unknown rejection reason"))?;
            rejected[reason] = n;
        }
        Ok(rejected)
    }

    /// Where each partition is counted to, with what a member taking it
    /// over needs.
    pub(super) fn write_partitions(&self, w: &mut Writer) {
        w.u64(self.partitions.len() as u64);
        for (&p, s) in &self.partitions {
            w.i32(p);
            w.i64(s.next_offset);
            w.u64(s.marks.len() as u64);
            for &(minute, offset) in &s.marks {
                w.i64(minute);
                w.i64(offset);
            }
            w.u64(s.origins.len() as u64);
            for (&op, &offset) in &s.origins {
                w.i32(op);
                w.i64(offset);
            }
            w.u64(s.blocks.len() as u64);
            for (&op, &(block, counted)) in &s.blocks {
                w.i32(op);
                w.i64(block);
                w.u32(counted);
            }
        }
    }

    /// Reads [`Engine::write_partitions`]: every partition unowned.
    pub(super) fn read_partitions(
        r: &mut Reader,
        learned: bool,
    ) -> Result<BTreeMap<i32, PartitionState>, CheckpointError> {
        let mut partitions = BTreeMap::new();
        for _ in 0..r.count(20)? {
            let (p, next_offset) = (r.i32()?, r.i64()?);
            let mut marks = VecDeque::new();
            for _ in 0..r.count(16)? {
                marks.push_back((r.i64()?, r.i64()?));
            }
            let mut origins = BTreeMap::new();
            for _ in 0..r.count(12)? {
                origins.insert(r.i32()?, r.i64()?);
            }
            let mut blocks = BTreeMap::new();
            for _ in 0..r.count(16)? {
                blocks.insert(r.i32()?, (r.i64()?, r.u32()?));
            }
            partitions.insert(
                p,
                PartitionState {
                    next_offset,
                    marks,
                    learned,
                    origins,
                    blocks,
                    ..PartitionState::default()
                },
            );
        }
        Ok(partitions)
    }
}
