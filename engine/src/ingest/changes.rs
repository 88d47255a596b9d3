//! Change records: what an aggregator's state gained since its previous
//! record, so that the records it publishes every second are as small as
//! its traffic, not as large as its state (2 MB, mostly the rankings'
//! sketches).
//!
//! A change record carries the *new values* of the elements that changed
//! (sketch cells, registers, minutes, trend buckets, countries), never
//! increments, and the small parts (counts, watermarks, partitions)
//! whole. So:
//! - The reader holding the sender's previous state reaches exactly the
//!   sender's new state ([`Engine::apply_changes`]): `export_view` of both
//!   is the same bytes (tested below).
//! - A merged state follows element by element: a sum takes `new - old`
//!   (the old value is in the reader's copy of the sender), a maximum
//!   takes `new`. Its cost grows with what changed, not with the number
//!   of senders times their state size.
//!
//! The chain is only as good as its first link: a reader must hold the
//! state the record was taken against. The server's records say which
//! that is (`kafka/partials`), and send the whole state now and then so
//! that a reader can start, or start over, from it.

use std::collections::BTreeMap;

use super::partitions::PartitionState;
use super::Engine;
use crate::aggregate::{Aggregate, AggregateChanges, BreakdownChanges, Breakdowns};
use crate::checkpoint::{CheckpointError, Reader, Writer};
use crate::decode::Reject;
use crate::event_time::EventClock;
use crate::first_sales::{FirstSales, FirstSalesChanges};
use crate::rankings::{Rankings, RankingsChanges};
use crate::trends::{TrendChanges, Trends};

/// A change record, read and checked whole before any of it is applied.
struct EngineChanges {
    counts: [u64; 5],
    rejected: [u64; Reject::ALL.len()],
    clock: EventClock,
    aggregate: AggregateChanges,
    trends: TrendChanges,
    breakdowns: BreakdownChanges,
    rankings: RankingsChanges,
    first_sales: FirstSalesChanges,
    partitions: BTreeMap<i32, PartitionState>,
}

impl Engine {
    /// What changed from `before` (this engine's state as last published)
    /// to now, as a change record's state. `source` names what the
    /// offsets belong to.
    pub fn export_changes(&self, before: &Engine, source: &str) -> Vec<u8> {
        let mut w = Writer::default();
        self.write_counts(source, &mut w);
        self.write_rejected(&mut w);
        self.clock.export(&mut w);
        self.aggregate.write_changes(&before.aggregate, &mut w);
        self.trends.write_changes(&before.trends, &mut w);
        self.breakdowns.write_changes(&before.breakdowns, &mut w);
        self.rankings.write_changes(&before.rankings, &mut w);
        self.first_sales.write_changes(&before.first_sales, &mut w);
        self.write_partitions(&mut w);
        w.buf
    }

    /// Applies [`Engine::export_changes`] of the state this engine holds,
    /// and adds the same change to `merged`: afterwards `merged` holds what
    /// a merge of every sender's newest state would.
    ///
    /// A record is read and checked whole first: on an error nothing is
    /// applied, to this engine or to `merged`.
    pub fn apply_changes(
        &mut self,
        source: &str,
        bytes: &[u8],
        merged: Option<&mut Engine>,
    ) -> Result<(), CheckpointError> {
        self.apply_changes_format(source, bytes, crate::checkpoint::FORMAT_VERSION, merged)
    }

    /// [`Engine::apply_changes`] of a record whose state is in checkpoint
    /// format `format` (5: without the first-sales filter, whose words
    /// then stay as they are).
    pub fn apply_changes_format(
        &mut self,
        source: &str,
        bytes: &[u8],
        format: u32,
        merged: Option<&mut Engine>,
    ) -> Result<(), CheckpointError> {
        let changes = self.read_changes(source, bytes, format)?;
        self.apply_read(&changes, merged);
        Ok(())
    }

    fn read_changes(
        &self,
        source: &str,
        bytes: &[u8],
        format: u32,
    ) -> Result<EngineChanges, CheckpointError> {
        let mut r = Reader::new(bytes);
        if r.string()? != source {
            return Err(CheckpointError::Payload("changes of another source"));
        }
        let changes = EngineChanges {
            counts: [r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?],
            rejected: Engine::read_rejected(&mut r)?,
            clock: EventClock::restore(&mut r, self.clock.allowed_lateness_ms())?,
            aggregate: Aggregate::read_changes(&mut r)?,
            trends: Trends::read_changes(&mut r)?,
            breakdowns: Breakdowns::read_changes(&mut r)?,
            rankings: Rankings::read_changes(&mut r)?,
            first_sales: if format >= 6 {
                FirstSales::read_changes(&mut r)?
            } else {
                FirstSalesChanges::default()
            },
            partitions: Engine::read_partitions(&mut r, false)?,
        };
        if !r.is_empty() {
            return Err(CheckpointError::Payload("trailing bytes"));
        }
        Ok(changes)
    }

    fn apply_read(&mut self, changes: &EngineChanges, mut merged: Option<&mut Engine>) {
        if let Some(m) = merged.as_deref_mut() {
            let (mine, theirs) = (&self.counts, &mut m.counts);
            let old = [
                mine.accepted,
                mine.duplicates,
                mine.filtered,
                mine.late,
                mine.truncated,
            ];
            let sums = [
                &mut theirs.accepted,
                &mut theirs.duplicates,
                &mut theirs.filtered,
                &mut theirs.late,
                &mut theirs.truncated,
            ];
            for ((sum, old), new) in sums.into_iter().zip(old).zip(changes.counts) {
                crate::aggregate::shift(sum, old, new);
            }
            let rejected = theirs.rejected.iter_mut().zip(mine.rejected);
            for ((sum, old), new) in rejected.zip(changes.rejected) {
                crate::aggregate::shift(sum, old, new);
            }
            m.clock.merge(&changes.clock);
        }
        let c = &mut self.counts;
        [c.accepted, c.duplicates, c.filtered, c.late, c.truncated] = changes.counts;
        c.rejected = changes.rejected;
        self.clock = changes.clock.clone();
        self.aggregate.apply_changes(
            &changes.aggregate,
            merged.as_deref_mut().map(|m| &mut m.aggregate),
        );
        self.trends.apply_changes(
            &changes.trends,
            merged.as_deref_mut().map(|m| &mut m.trends),
        );
        self.breakdowns.apply_changes(
            &changes.breakdowns,
            merged.as_deref_mut().map(|m| &mut m.breakdowns),
        );
        self.rankings.apply_changes(
            &changes.rankings,
            merged.as_deref_mut().map(|m| &mut m.rankings),
        );
        self.first_sales
            .apply_changes(&changes.first_sales, merged.map(|m| &mut m.first_sales));
        self.partitions = changes.partitions.clone();
    }

    /// A copy of what [`Engine::export_view`] writes (counts, sketches,
    /// series, partitions; no de-duplication filter, no arcs): what an
    /// aggregator keeps of its last published state to take the next
    /// record's changes against, and what an edge hands its snapshot
    /// stage of the merge it keeps.
    pub fn view_clone(&self) -> Engine {
        let mut copy = Engine::new(super::EngineConfig {
            dedup_max_entries: 0,
            arcs_per_tick: self.arcs_per_tick,
            future_tolerance_ms: self.future_tolerance_ms,
            allowed_lateness_ms: self.clock.allowed_lateness_ms(),
            dedup_horizon_ms: self.dedup.horizon_minutes() * crate::aggregate::MINUTE_MS,
            totals_only: self.totals_only,
            ..super::EngineConfig::default()
        });
        copy.decoder = self.decoder.clone();
        copy.aggregate = self.aggregate.clone();
        copy.counts = self.counts.clone();
        copy.replays = self.replays.clone();
        copy.trends = self.trends.clone();
        copy.breakdowns = self.breakdowns.clone();
        copy.rankings = self.rankings.clone();
        copy.first_sales = self.first_sales.clone();
        copy.partitions = self.partitions.clone();
        copy.clock = self.clock.clone();
        copy
    }

    /// Recomputes the trends of a state merged change by change (once per
    /// hand-over to the snapshot stage, not once per record).
    pub fn refresh_trends(&mut self) {
        self.trends.refresh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::EngineConfig;
    use crate::position::Position;
    use livemap_events::demo::{DemoMix, Generator};

    const SOURCE: &str = "kafka:checkouts.livemap-by-id";
    const T0: i64 = 1_795_788_000_000;

    /// Feeds `n` demo messages into `engine` from partition `p`, starting
    /// at `offset`, over `span_ms` of event time from `at`.
    fn feed(engine: &mut Engine, g: &mut Generator, p: i32, offset: &mut i64, n: i64, at: i64) {
        let mut buf = Vec::new();
        for i in 0..n {
            let t = at + i * 97;
            g.next_message(t, &mut buf);
            let position = Position {
                partition: p,
                offset: *offset,
                generation: 1,
            };
            *offset += 1;
            engine.ingest(Some(&buf), Some(position), t + 50);
        }
    }

    /// What a screen and the API show of a state, to compare a merge kept
    /// change by change with one made from scratch.
    fn shown(e: &mut Engine) -> String {
        e.refresh_trends();
        let a = e.aggregate();
        format!(
            "orders {} gmv {} carbon {} shoppers {} minutes {:?}\ncounts {:?}\ncountries {:?} channels {:?}\ntrends {:?} current {:?}\nshops {:?}\ncities {:?}\nnewest {:?}",
            a.orders,
            a.gmv_usd_cents,
            a.carbon_grams,
            a.shoppers.estimate(),
            a.minutes.minutes(),
            e.counts(),
            e.breakdowns().by_country().collect::<Vec<_>>(),
            e.breakdowns().by_channel,
            e.trends().buckets(),
            e.trends().current().iter().map(|t| (&t.category, t.change)).collect::<Vec<_>>(),
            e.rankings().shops.top(10),
            e.rankings().cities.top(10),
            e.newest_event_ms(),
        )
    }

    /// The first line where two `shown` differ, if any.
    fn first_difference(a: &str, b: &str) -> Option<(String, String)> {
        a.lines()
            .zip(b.lines())
            .find(|(x, y)| x != y)
            .map(|(x, y)| (x.chars().take(400).collect(), y.chars().take(400).collect()))
    }

    #[test]
    fn changes_rebuild_each_sender_exactly_and_the_merge_follows_them() {
        let config = EngineConfig::default();
        let mut senders: Vec<Engine> = (0..3).map(|_| Engine::new(config.clone())).collect();
        // One stream, shared out as a router shares it.
        let mut g = Generator::new(100, DemoMix::default());
        let mut offsets = [0i64; 3];
        for (i, s) in senders.iter_mut().enumerate() {
            s.assign(&[(i as i32, None)], 1);
        }
        // What each sender last published, and what the reader holds.
        let mut published: Vec<Engine> = (0..3).map(|_| Engine::new(config.clone())).collect();
        let mut held: Vec<Engine> = (0..3).map(|_| Engine::new(config.clone())).collect();
        let mut merged = Engine::new(config.clone());
        let mut record_bytes = Vec::new();
        // 40 rounds over about 97 minutes of event time (trend buckets and
        // minutes turn over), unevenly per sender.
        for round in 0..40i64 {
            for i in 0..3 {
                let n = 500 * (i as i64 + 1);
                let at = T0 + round * 146_000;
                feed(&mut senders[i], &mut g, i as i32, &mut offsets[i], n, at);
                let changes = senders[i].export_changes(&published[i], SOURCE);
                record_bytes.push(changes.len());
                held[i]
                    .apply_changes(SOURCE, &changes, Some(&mut merged))
                    .expect("applies");
                published[i] = senders[i].view_clone();
                assert!(
                    held[i].export_view(SOURCE) == senders[i].export_view(SOURCE),
                    "round {round}: the reader's copy of sender {i} is exact"
                );
            }
            let mut scratch = Engine::new(config.clone());
            for s in &senders {
                scratch.absorb(s);
            }
            let (a, b) = (shown(&mut merged), shown(&mut scratch));
            assert_eq!(first_difference(&a, &b), None, "round {round}");
        }
        assert!(
            merged.aggregate().orders > 10_000,
            "{}",
            merged.aggregate().orders
        );
        assert!(!merged.trends().current().is_empty(), "trends computed");
        // A change record is a fraction of the state it changes.
        let whole = senders[2].export_view(SOURCE).len();
        let last = *record_bytes.last().expect("records");
        assert!(
            last * 4 < whole,
            "changes {last} B against a {whole} B state"
        );
    }

    #[test]
    fn nothing_changed_is_a_small_record_and_applies_as_nothing() {
        let config = EngineConfig::default();
        let mut sender = Engine::new(config.clone());
        let mut g = Generator::new(7, DemoMix::default());
        let mut offset = 0;
        feed(&mut sender, &mut g, -1, &mut offset, 3_000, T0);
        let before = sender.view_clone();
        let changes = sender.export_changes(&before, SOURCE);
        assert!(changes.len() < 1_000, "{} B", changes.len());
        let mut held = sender.view_clone();
        let mut merged = Engine::new(config);
        merged.absorb(&held);
        let expected = shown(&mut merged);
        held.apply_changes(SOURCE, &changes, Some(&mut merged))
            .expect("applies");
        assert_eq!(shown(&mut merged), expected);
    }

    #[test]
    fn a_cut_or_foreign_change_record_is_an_error_never_a_panic() {
        let config = EngineConfig::default();
        let mut sender = Engine::new(config.clone());
        let mut g = Generator::new(9, DemoMix::default());
        let mut offset = 0;
        feed(&mut sender, &mut g, -1, &mut offset, 2_000, T0);
        let changes = sender.export_changes(&Engine::new(config.clone()), SOURCE);
        for cut in (0..changes.len()).step_by(changes.len() / 97 + 1) {
            let mut held = Engine::new(config.clone());
            let mut merged = Engine::new(config.clone());
            assert!(held
                .apply_changes(SOURCE, &changes[..cut], Some(&mut merged))
                .is_err());
        }
        let mut held = Engine::new(config.clone());
        assert!(held.apply_changes("another", &changes, None).is_err());
        // A record that fails to read changes nothing: cut at its end, all
        // of it but its partitions reads, and none of it applies.
        let mut held = Engine::new(config.clone());
        let mut merged = Engine::new(config.clone());
        assert!(held
            .apply_changes(SOURCE, &changes[..changes.len() - 1], Some(&mut merged))
            .is_err());
        assert_eq!(merged.aggregate().orders, 0);
        assert_eq!(held.counts().accepted, 0);
        // Flipped bytes: an error or a state, never a panic.
        for i in (0..changes.len()).step_by(changes.len() / 211 + 1) {
            let mut bad = changes.clone();
            bad[i] ^= 0xA5;
            let mut held = Engine::new(config.clone());
            let mut merged = Engine::new(config.clone());
            let _ = held.apply_changes(SOURCE, &bad, Some(&mut merged));
        }
    }
}
