//! Event time that no clock can poison: per-partition watermarks, and the
//! rule that picks the minute the public's per-minute rates describe.
//!
//! Upstream clocks are untrusted. The rules, in the order they apply:
//!
//! 1. **Nothing is ahead of the server's clock.** An order whose event
//!    time is ahead of the server's clock, but within
//!    `--future-tolerance-secs`, is taken as happening now: its minute,
//!    its trend bucket, its de-duplication minute and the watermarks use
//!    the server's clock instead. (Further ahead it is rejected,
//!    `future_time`.) One producer with a fast clock can no longer open a
//!    minute that has not begun.
//! 2. **Each partition keeps its own watermark**: the newest event time
//!    counted from it (after rule 1), and when, by the server's clock, it
//!    last counted one. An order is late (`ingest.late`: in the totals,
//!    not in its minute) when it is older than its *own partition's*
//!    watermark minus the allowed lateness, so a partition resuming
//!    behind the others (after a rebalance or a restart) is not late: its
//!    orders land in their minutes.
//! 3. **The sale's watermark** is the newest partition watermark. It never
//!    goes back, and it is what the de-duplication horizon, trend buckets
//!    and the per-minute series advance with.
//! 4. **The last full minute** (what `rates` shows) is the minute before
//!    the oldest watermark among the partitions that are *live*: counted
//!    an order within the last [`LIVE_MS`] of server time, and within the
//!    allowed lateness of the sale's watermark. A partition further behind
//!    cannot change the minutes it would hold back (its orders are late
//!    there), and an idle one holds nothing back. The minute shown never
//!    goes back, and never passes the minute before the sale's watermark.
//!
//! Merging (an edge's view of many aggregators) takes the newest
//! watermark per partition and the later minute shown.

use std::collections::BTreeMap;

use crate::aggregate::MINUTE_MS;
use crate::checkpoint::{CheckpointError, Reader, Writer};

/// A partition that counted nothing for this long (server time) no
/// longer holds the minute shown back.
pub const LIVE_MS: i64 = 10_000;

/// The partition key of an unpartitioned source (the demo).
pub const UNPARTITIONED: i32 = -1;

/// One partition's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The newest event time counted, never past the server's clock.
    pub event_ms: i64,
    /// When it last counted an order, by the server's clock.
    pub seen_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventClock {
    marks: BTreeMap<i32, Mark>,
    /// The sale's watermark: the newest of the marks, kept on its own so
    /// that it never goes back when a mark is dropped.
    newest_ms: i64,
    /// The last full minute shown so far.
    shown_minute: Option<i64>,
    allowed_lateness_ms: i64,
}

/// At most this many partitions are tracked: more than any topic has,
/// and a bound on what a corrupt record can make a reader hold.
const MAX_MARKS: usize = 100_000;

impl EventClock {
    pub fn new(allowed_lateness_ms: i64) -> Self {
        EventClock {
            marks: BTreeMap::new(),
            newest_ms: i64::MIN,
            shown_minute: None,
            allowed_lateness_ms,
        }
    }

    /// Rule 1: the time an event counts at.
    pub fn effective(event_ms: i64, now_ms: i64) -> i64 {
        event_ms.min(now_ms)
    }

    /// Counts an order of `event_ms` (already [`EventClock::effective`])
    /// from `partition` at `now_ms`; returns whether it is late (rule 2).
    pub fn observe(&mut self, partition: i32, event_ms: i64, now_ms: i64) -> bool {
        if self.marks.len() >= MAX_MARKS && !self.marks.contains_key(&partition) {
            // Past the bound every partition shares one mark: late by the
            // oldest rule, never lost.
            return event_ms < self.newest_ms.saturating_sub(self.allowed_lateness_ms);
        }
        let mark = self.marks.entry(partition).or_insert(Mark {
            event_ms,
            seen_at_ms: now_ms,
        });
        let late = event_ms < mark.event_ms.saturating_sub(self.allowed_lateness_ms);
        mark.event_ms = mark.event_ms.max(event_ms);
        mark.seen_at_ms = mark.seen_at_ms.max(now_ms);
        self.newest_ms = self.newest_ms.max(event_ms);
        late
    }

    /// Rule 3: the sale's watermark, if any order was counted.
    pub fn newest_ms(&self) -> Option<i64> {
        (self.newest_ms > i64::MIN).then_some(self.newest_ms)
    }

    /// Rule 4: the minute whose orders and sales the public sees as the
    /// rates, at `now_ms`. Remembers it, so it never goes back.
    pub fn last_full_minute(&mut self, now_ms: i64) -> Option<i64> {
        let newest = self.newest_ms()?;
        let floor = newest.saturating_sub(self.allowed_lateness_ms);
        let holding = self
            .marks
            .values()
            .filter(|m| now_ms - m.seen_at_ms <= LIVE_MS && m.event_ms >= floor)
            .map(|m| m.event_ms)
            .min()
            .unwrap_or(newest);
        // At most the minute before the sale's watermark's, since the
        // holding watermark is never past it.
        let candidate = holding.div_euclid(MINUTE_MS) - 1;
        let shown = self.shown_minute.map_or(candidate, |s| s.max(candidate));
        self.shown_minute = Some(shown);
        Some(shown)
    }

    /// How far behind its partition's watermark an order may be.
    pub fn allowed_lateness_ms(&self) -> i64 {
        self.allowed_lateness_ms
    }

    /// The watermark of one partition.
    pub fn mark(&self, partition: i32) -> Option<Mark> {
        self.marks.get(&partition).copied()
    }

    pub fn merge(&mut self, other: &EventClock) {
        for (p, m) in &other.marks {
            if self.marks.len() >= MAX_MARKS && !self.marks.contains_key(p) {
                break;
            }
            let mine = self.marks.entry(*p).or_insert(*m);
            mine.event_ms = mine.event_ms.max(m.event_ms);
            mine.seen_at_ms = mine.seen_at_ms.max(m.seen_at_ms);
        }
        self.newest_ms = self.newest_ms.max(other.newest_ms);
        self.shown_minute = match (self.shown_minute, other.shown_minute) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Keeps the later minute shown of `earlier` (the same view before a
    /// re-merge), so a re-merged edge never shows an older minute.
    pub fn keep_shown(&mut self, earlier: &EventClock) {
        if let Some(s) = earlier.shown_minute {
            self.shown_minute = Some(self.shown_minute.map_or(s, |m| m.max(s)));
        }
    }

    pub fn export(&self, w: &mut Writer) {
        w.i64(self.newest_ms);
        w.i64(self.shown_minute.unwrap_or(i64::MIN));
        w.u64(self.marks.len() as u64);
        for (p, m) in &self.marks {
            w.i32(*p);
            w.i64(m.event_ms);
            w.i64(m.seen_at_ms);
        }
    }

    pub fn restore(r: &mut Reader, allowed_lateness_ms: i64) -> Result<Self, CheckpointError> {
        let mut c = EventClock::new(allowed_lateness_ms);
        c.newest_ms = r.i64()?;
        c.shown_minute = Some(r.i64()?).filter(|&m| m > i64::MIN);
        let n = r.count(20)?;
        if n > MAX_MARKS {
            return Err(CheckpointError::Payload("too many partition watermarks"));
        }
        for _ in 0..n {
            let p = r.i32()?;
            let (event_ms, seen_at_ms) = (r.i64()?, r.i64()?);
            c.marks.insert(
                p,
                Mark {
                    event_ms,
                    seen_at_ms,
                },
            );
        }
        Ok(c)
    }

    /// A clock from a state written before partitions had watermarks
    /// (checkpoint format 4): only the sale's watermark is known.
    pub fn from_newest(newest_ms: i64, allowed_lateness_ms: i64) -> Self {
        EventClock {
            newest_ms,
            ..EventClock::new(allowed_lateness_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_788_000_000; // a minute boundary
    const LATE: i64 = 5 * MINUTE_MS;

    fn minute(ms: i64) -> i64 {
        ms.div_euclid(MINUTE_MS)
    }

    #[test]
    fn a_fast_producer_cannot_open_a_minute_that_has_not_begun() {
        let mut c = EventClock::new(LATE);
        let now = T + 3 * MINUTE_MS + 30_000;
        for s in 0..210 {
            c.observe(0, T + s * 1_000, now);
        }
        // Four minutes ahead: taken as now.
        let ahead = EventClock::effective(now + 4 * MINUTE_MS, now);
        assert_eq!(ahead, now);
        assert!(!c.observe(1, ahead, now));
        assert_eq!(c.newest_ms(), Some(now));
        // The minute shown is the one before now's, not three ahead.
        assert_eq!(c.last_full_minute(now), Some(minute(now) - 1));
        // And on-time orders of the last three minutes are not late.
        assert!(!c.observe(0, T + 10_000, now));
    }

    #[test]
    fn a_partition_resuming_behind_is_not_late_and_cannot_pull_the_minute_back() {
        let mut c = EventClock::new(LATE);
        let now = T + 10 * MINUTE_MS + 30_000;
        c.observe(0, now - 1_000, now);
        c.observe(1, now - 2_000, now);
        assert_eq!(c.last_full_minute(now), Some(minute(now) - 1));
        // Partition 2 resumes three minutes behind (within the lateness).
        assert!(!c.observe(2, now - 3 * MINUTE_MS, now));
        assert_eq!(
            c.last_full_minute(now),
            Some(minute(now) - 1),
            "the minute shown never goes back"
        );
        // Ten minutes behind: beyond the lateness, it holds nothing back,
        // and its own orders are not late by its own watermark.
        assert!(!c.observe(3, now - 10 * MINUTE_MS, now));
        assert!(!c.observe(3, now - 10 * MINUTE_MS + 1_000, now));
        // A minute on, partition 2 is still catching up: the minute waits.
        let later = now + MINUTE_MS;
        c.observe(0, later - 1_000, later);
        c.observe(1, later - 1_000, later);
        c.observe(2, now - 2 * MINUTE_MS, later);
        assert_eq!(c.last_full_minute(later), Some(minute(now) - 1));
        // Caught up: the minute moves on.
        c.observe(2, later - 500, later);
        assert_eq!(c.last_full_minute(later), Some(minute(later) - 1));
    }

    #[test]
    fn an_idle_partition_holds_nothing_back() {
        let mut c = EventClock::new(LATE);
        c.observe(0, T, T);
        c.observe(1, T + 30_000, T + 30_000);
        let now = T + 2 * MINUTE_MS + 5_000;
        c.observe(1, now, now);
        // Partition 0 last counted two minutes ago: idle.
        assert_eq!(c.last_full_minute(now), Some(minute(now) - 1));
    }

    #[test]
    fn merging_keeps_the_newest_of_each_partition_and_the_later_minute() {
        let mut a = EventClock::new(LATE);
        let mut b = EventClock::new(LATE);
        a.observe(0, T + 1_000, T + 1_000);
        b.observe(0, T + 5_000, T + 5_000);
        b.observe(1, T + 2 * MINUTE_MS, T + 2 * MINUTE_MS);
        b.last_full_minute(T + 2 * MINUTE_MS);
        a.merge(&b);
        assert_eq!(a.mark(0).map(|m| m.event_ms), Some(T + 5_000));
        assert_eq!(a.newest_ms(), Some(T + 2 * MINUTE_MS));
        let mut w = Writer::default();
        a.export(&mut w);
        let back = EventClock::restore(&mut Reader::new(&w.buf), LATE).expect("restores");
        assert_eq!(back, a);
    }
}
