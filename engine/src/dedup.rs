//! De-duplication by `event_id`, over a horizon of event time.
//!
//! Delivery is at-least-once: the same event can come again, on any
//! partition, minutes later. The filter remembers the 64-bit hash of every
//! event id whose event time is within `horizon` of the newest event time
//! seen (the watermark), and forgets older ones minute by minute. Memory is
//! bounded by `max_entries`: past it the oldest minutes are forgotten early
//! and counted, so an operator can see the horizon shrink.
//!
//! Filters merge: the union of two filters' ids, trimmed to the later
//! watermark's horizon, is the filter one instance fed both streams would
//! hold (while both stay within `max_entries`). Merging states does not
//! undo counting: two members that each counted a copy of one event both
//! counted it; keeping that from happening is the scale-out design's job.
//!
//! A 64-bit hash can collide: with 10 million ids remembered, the chance
//! that one new id is mistaken for a duplicate is about 5e-13.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::checkpoint::{CheckpointError, Reader, Writer};

const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    First,
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct Dedup {
    horizon_minutes: i64,
    max_entries: usize,
    /// Id hash → the event-time minute it was filed under.
    ids: HashMap<u64, i64, BuildHasherDefault<PassThrough>>,
    /// Event-time minute → ids filed under it, for eviction in order.
    by_minute: BTreeMap<i64, Vec<u64>>,
    watermark_minute: i64,
    evicted_early: u64,
}

impl Dedup {
    pub fn new(horizon_ms: i64, max_entries: usize) -> Self {
        Dedup {
            horizon_minutes: (horizon_ms / MINUTE_MS).max(1),
            max_entries: max_entries.max(1),
            ids: HashMap::default(),
            by_minute: BTreeMap::new(),
            watermark_minute: i64::MIN,
            evicted_early: 0,
        }
    }

    /// How many minutes of event time an id is remembered.
    pub fn horizon_minutes(&self) -> i64 {
        self.horizon_minutes
    }

    /// Records an event id and says whether it was seen before.
    pub fn check(&mut self, id_hash: u64, event_time_ms: i64) -> Seen {
        if self.ids.contains_key(&id_hash) {
            return Seen::Duplicate;
        }
        let minute = event_time_ms.div_euclid(MINUTE_MS);
        if minute < self.watermark_minute.saturating_sub(self.horizon_minutes) {
            // Already past the horizon: it would be forgotten at the next
            // minute anyway, and keeping it would make the state depend on
            // arrival order.
            return Seen::First;
        }
        self.file(id_hash, minute);
        Seen::First
    }

    fn file(&mut self, id_hash: u64, minute: i64) {
        self.ids.insert(id_hash, minute);
        self.by_minute.entry(minute).or_default().push(id_hash);
        if minute > self.watermark_minute {
            self.watermark_minute = minute;
            self.evict_before(self.watermark_minute - self.horizon_minutes);
        }
        self.enforce_limit();
    }

    fn enforce_limit(&mut self) {
        while self.ids.len() > self.max_entries {
            let Some((&oldest, _)) = self.by_minute.first_key_value() else {
                break;
            };
            let before = self.ids.len();
            self.evict_before(oldest + 1);
            self.evicted_early += (before - self.ids.len()) as u64;
        }
    }

    /// Every remembered id with its minute, sorted: the filter's content.
    pub fn entries(&self) -> Vec<(u64, i64)> {
        let mut v: Vec<(u64, i64)> = self.ids.iter().map(|(&h, &m)| (h, m)).collect();
        v.sort_unstable();
        v
    }

    fn evict_before(&mut self, minute: i64) {
        while let Some(entry) = self.by_minute.first_entry() {
            if *entry.key() >= minute {
                break;
            }
            let (m, hashes) = entry.remove_entry();
            for h in hashes {
                // A re-filed id may belong to a newer minute now; keep it.
                if self.ids.get(&h) == Some(&m) {
                    self.ids.remove(&h);
                }
            }
        }
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn export(&self, w: &mut Writer) {
        w.i64(self.watermark_minute);
        w.u64(self.evicted_early);
        w.u64(self.ids.len() as u64);
        for (minute, hashes) in &self.by_minute {
            for h in hashes {
                if self.ids.get(h) == Some(minute) {
                    w.u64(*h);
                    w.i64(*minute);
                }
            }
        }
    }

    /// Restores what [`Dedup::export`] wrote, under the current limits.
    pub fn restore(&mut self, r: &mut Reader) -> Result<(), CheckpointError> {
        self.watermark_minute = r.i64()?;
        self.evicted_early = r.u64()?;
        let n = r.count(16)?;
        self.ids.reserve(n);
        for _ in 0..n {
            let (h, minute) = (r.u64()?, r.i64()?);
            self.ids.insert(h, minute);
            self.by_minute.entry(minute).or_default().push(h);
        }
        Ok(())
    }

    /// Ids forgotten before their horizon because of the memory bound.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }
}

impl crate::aggregate::Merge for Dedup {
    fn merge(&mut self, other: &Self) {
        self.evicted_early += other.evicted_early;
        if other.watermark_minute > self.watermark_minute {
            self.watermark_minute = other.watermark_minute;
            self.evict_before(self.watermark_minute - self.horizon_minutes);
        }
        let horizon_start = self.watermark_minute.saturating_sub(self.horizon_minutes);
        for (minute, hashes) in other.by_minute.range(horizon_start..) {
            for h in hashes {
                if other.ids.get(h) != Some(minute) {
                    continue;
                }
                match self.ids.get(h) {
                    // The same id on both sides: it was first seen at the
                    // earlier of the two times.
                    Some(mine) if mine <= minute => {}
                    _ => {
                        self.ids.insert(*h, *minute);
                        self.by_minute.entry(*minute).or_default().push(*h);
                    }
                }
            }
        }
        self.enforce_limit();
    }
}

/// The keys are already xxh3 hashes: hashing them again is wasted work.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_788_000_000;

    #[test]
    fn repeats_within_the_horizon_are_duplicates() {
        let mut d = Dedup::new(3_600_000, 1_000_000);
        assert_eq!(d.check(1, T0), Seen::First);
        assert_eq!(d.check(2, T0 + 1), Seen::First);
        assert_eq!(d.check(1, T0 + 59 * MINUTE_MS), Seen::Duplicate);
        // Out of order: an older event time than the watermark is fine.
        assert_eq!(d.check(3, T0 + 30 * MINUTE_MS), Seen::First);
        assert_eq!(d.check(3, T0 - 5 * MINUTE_MS), Seen::Duplicate);
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn ids_older_than_the_horizon_are_forgotten() {
        let mut d = Dedup::new(60 * MINUTE_MS, 1_000_000);
        d.check(1, T0);
        d.check(2, T0 + 30 * MINUTE_MS);
        d.check(3, T0 + 61 * MINUTE_MS);
        assert_eq!(d.len(), 2, "id 1 is past the horizon");
        assert_eq!(d.check(1, T0), Seen::First);
        assert_eq!(d.check(2, T0), Seen::Duplicate);
    }

    #[test]
    fn export_and_restore_keep_every_id() {
        let mut d = Dedup::new(60 * MINUTE_MS, 1_000_000);
        for i in 0..1_000u64 {
            d.check(i, T0 + (i as i64) * 7_000);
        }
        let mut w = Writer::default();
        d.export(&mut w);
        let mut back = Dedup::new(60 * MINUTE_MS, 1_000_000);
        back.restore(&mut Reader::new(&w.buf)).expect("restores");
        assert_eq!(back.len(), d.len());
        for i in 0..1_000u64 {
            assert_eq!(
                back.check(i, T0 + (i as i64) * 7_000),
                d.check(i, T0 + (i as i64) * 7_000)
            );
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// Any split of a stream of ids (repeats and out-of-order times
        /// included), merged in any order, remembers exactly what one
        /// filter fed the whole stream remembers.
        #[test]
        fn merging_any_split_equals_the_whole(
            events in proptest::collection::vec((0u64..300, 0usize..3), 0..300),
        ) {
            use crate::aggregate::Merge;
            let new = || Dedup::new(60 * MINUTE_MS, 1_000_000);
            let mut whole = new();
            let mut parts = [new(), new(), new()];
            // An event's time follows from its id, as for real redeliveries;
            // 300 ids span 100 minutes, more than the horizon.
            for &(id, owner) in &events {
                let at = T0 + id as i64 * 20_000;
                whole.check(id, at);
                parts[owner].check(id, at);
            }
            let mut merged = new();
            for p in parts.iter().rev() {
                merged.merge(p);
            }
            prop_assert_eq!(merged.entries(), whole.entries());
            let (mut ab, mut ba) = (parts[0].clone(), parts[1].clone());
            ab.merge(&parts[1]);
            ba.merge(&parts[0]);
            prop_assert_eq!(ab.entries(), ba.entries());
            let mut identity = whole.clone();
            identity.merge(&new());
            prop_assert_eq!(identity.entries(), whole.entries());
        }
    }

    #[test]
    fn memory_is_bounded_by_dropping_the_oldest_minutes() {
        let mut d = Dedup::new(600 * MINUTE_MS, 1_000);
        for i in 0..5_000u64 {
            d.check(i, T0 + (i as i64) * 1_000);
        }
        assert!(d.len() <= 1_000);
        assert!(d.evicted_early() >= 4_000);
        assert_eq!(d.check(4_999, T0), Seen::Duplicate, "the newest are kept");
    }
}
