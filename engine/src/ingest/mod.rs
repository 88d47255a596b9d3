//! The ingest path for one message: decode → de-duplicate → aggregate →
//! offer an arc. One [`Engine`] owns all the state this path changes; its
//! other jobs each have a file: `partitions.rs` (which partitions it
//! counts, from where, and hand-overs), `codec.rs` (its state as bytes)
//! and `edge.rs` (merging other engines' states, queueing their arcs).
//!
//! Previous stage: the server's `source` delivers batches of raw messages.
//! Next stage: the server's `snapshot` reads the engine on every tick.

use std::collections::{BTreeMap, VecDeque};

use livemap_events::money::FxTable;

mod changes;
mod codec;
mod edge;
mod partitions;

use partitions::PartitionState;
pub use partitions::{Handover, Resume};

use crate::aggregate::{Aggregate, Breakdowns};
use crate::arcs::{ArcSampler, Candidate};
use crate::decode::{Decoded, Decoder, Reject};
use crate::dedup::{Dedup, Seen};
use crate::event_time::{EventClock, UNPARTITIONED};
use crate::first_sales::{shop_hash, FirstSale, FirstSales};
use crate::position::{Origin, Position};
use crate::rankings::{Rankings, ShopLabel};
use crate::trends::Trends;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub fx: FxTable,
    pub dedup_horizon_ms: i64,
    pub dedup_max_entries: usize,
    pub arcs_per_tick: usize,
    /// How far past the wall clock an event time may be.
    pub future_tolerance_ms: i64,
    /// How far behind the newest event time an order may be and still
    /// land in its own minute.
    pub allowed_lateness_ms: i64,
    /// Orders above this total are rejected (`implausible_total`).
    pub max_order_usd_cents: u64,
    pub seed: u64,
    /// Counts totals, the per-minute series and arcs only: trends,
    /// breakdowns and rankings stay empty. The ingest benchmark uses it to
    /// measure what they cost.
    pub totals_only: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            fx: FxTable::default(),
            dedup_horizon_ms: 60 * 60_000,
            dedup_max_entries: 10_000_000,
            arcs_per_tick: 40,
            future_tolerance_ms: 5 * 60_000,
            allowed_lateness_ms: 5 * 60_000,
            max_order_usd_cents: crate::decode::DEFAULT_MAX_ORDER_USD_CENTS,
            seed: 0,
            totals_only: false,
        }
    }
}

/// What happened to each message, as counted for `ingest.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestCounts {
    pub accepted: u64,
    pub duplicates: u64,
    pub filtered: u64,
    pub rejected: [u64; Reject::ALL.len()],
    /// Accepted orders that came later than the allowed lateness.
    pub late: u64,
    /// Strings of accepted orders cut to their size limit (category
    /// levels, cities): the order counts, the string is kept shorter.
    pub truncated: u64,
}

impl crate::aggregate::Merge for IngestCounts {
    fn merge(&mut self, other: &Self) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.filtered += other.filtered;
        self.late += other.late;
        self.truncated += other.truncated;
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
    }
}

impl IngestCounts {
    /// Every reason seen, with its count, in a stable order.
    pub fn rejected_by_reason(&self) -> Vec<(String, u64)> {
        Reject::ALL
            .iter()
            .zip(self.rejected)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.as_str().to_owned(), n))
            .collect()
    }
}

/// Messages the engine saw again and did not count: the price of
/// at-least-once sources, kept apart from `ingest.*`, which describes events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replays {
    /// Below the partition's next offset: already in the state (their ids
    /// still teach the de-duplication filter).
    pub already_counted: u64,
    /// From a partition this engine no longer owns, or an older assignment.
    pub not_owned: u64,
    /// Routed again after a router failed or handed over (same origin).
    pub rerouted: u64,
    /// Offsets between where an assigned partition was to resume and the
    /// first message read after it: never read, so never counted. Zero
    /// unless the broker skipped records (or transaction markers sit
    /// there).
    pub skipped_at_resume: u64,
}

/// First sales waiting for a tick: more than a screen shows at once. At
/// the start of a sale thousands of shops sell for the first time each
/// second; the oldest waiting go first.
pub const PENDING_FIRST_SALES: usize = 64;

#[derive(Debug)]
pub struct Engine {
    decoder: Decoder,
    dedup: Dedup,
    aggregate: Aggregate,
    counts: IngestCounts,
    replays: Replays,
    trends: Trends,
    breakdowns: Breakdowns,
    rankings: Rankings,
    /// Which shops have sold: a shop's first sale is a moment.
    first_sales: FirstSales,
    /// First sales not yet taken by a tick (or, on an edge, announced by
    /// aggregators), newest last; at most [`PENDING_FIRST_SALES`].
    pending_first_sales: VecDeque<FirstSale>,
    partitions: BTreeMap<i32, PartitionState>,
    sampler: ArcSampler,
    /// Arcs sampled elsewhere (by aggregators, for an edge), handed out a
    /// tick's worth at a time so they spread over the ticks.
    arriving_arcs: VecDeque<livemap_wire::Arc>,
    arcs_per_tick: usize,
    future_tolerance_ms: i64,
    totals_only: bool,
    /// Per-partition watermarks and the minute the public's rates show
    /// (see [`crate::event_time`] for the rules).
    clock: EventClock,
    /// Set when this state is older than the group's committed offsets
    /// say (restored from the previous checkpoint because the newest was
    /// unreadable): those offsets were this process's own progress, lost
    /// with the newest checkpoint, so counting resumes where this state
    /// ends, not where the group does. Not persisted.
    own_positions_only: bool,
}

/// Read access to the state: only the engine's own methods change it (the
/// server reads it into snapshots and metrics).
impl Engine {
    /// Exact totals, the per-minute series and unique shoppers.
    pub fn aggregate(&self) -> &Aggregate {
        &self.aggregate
    }

    /// What happened to each message, as `ingest.*` reports it.
    pub fn counts(&self) -> &IngestCounts {
        &self.counts
    }

    /// Messages seen again and not counted.
    pub fn replays(&self) -> &Replays {
        &self.replays
    }

    pub fn trends(&self) -> &Trends {
        &self.trends
    }

    pub fn breakdowns(&self) -> &Breakdowns {
        &self.breakdowns
    }

    pub fn rankings(&self) -> &Rankings {
        &self.rankings
    }

    pub fn first_sales(&self) -> &FirstSales {
        &self.first_sales
    }
}

impl Engine {
    /// The sale's watermark: the newest event time counted (never past
    /// the server's clock), if any order was.
    pub fn newest_event_ms(&self) -> Option<i64> {
        self.clock.newest_ms()
    }

    /// The minute the public's per-minute rates describe, at `now_ms`
    /// ([`EventClock::last_full_minute`]); it never goes back.
    pub fn last_full_minute(&mut self, now_ms: i64) -> Option<i64> {
        self.clock.last_full_minute(now_ms)
    }

    pub fn new(config: EngineConfig) -> Self {
        Engine {
            decoder: Decoder::new(config.fx).with_max_order_usd_cents(config.max_order_usd_cents),
            dedup: Dedup::new(config.dedup_horizon_ms, config.dedup_max_entries),
            aggregate: Aggregate::default(),
            counts: IngestCounts::default(),
            replays: Replays::default(),
            trends: Trends::new(),
            breakdowns: Breakdowns::default(),
            rankings: Rankings::default(),
            first_sales: FirstSales::default(),
            pending_first_sales: VecDeque::new(),
            partitions: BTreeMap::new(),
            sampler: ArcSampler::new(config.arcs_per_tick, config.seed),
            arriving_arcs: VecDeque::new(),
            arcs_per_tick: config.arcs_per_tick,
            future_tolerance_ms: config.future_tolerance_ms,
            totals_only: config.totals_only,
            clock: EventClock::new(config.allowed_lateness_ms),
            own_positions_only: false,
        }
    }

    /// Takes one message value (`None` for a tombstone) and, for
    /// partitioned sources, where it was read. A message at or past the
    /// partition's next offset is counted and moves the offset on; one
    /// before it is a replay and is skipped, which makes counting
    /// idempotent across restarts and rebalances. `now_ms` is the wall
    /// clock, read once per batch by the caller.
    pub fn ingest(&mut self, payload: Option<&[u8]>, position: Option<Position>, now_ms: i64) {
        self.ingest_routed(payload, position, None, now_ms);
    }

    /// [`Engine::ingest`] for a message that an aggregator's router re-keyed
    /// by event id. A router that fails or hands its partition over sends
    /// some messages again; per origin partition, each by-id partition
    /// remembers the furthest origin offset it counted, and a copy at or
    /// before it is skipped, so the router's at-least-once is exact here.
    pub fn ingest_routed(
        &mut self,
        payload: Option<&[u8]>,
        position: Option<Position>,
        origin: Option<Origin>,
        now_ms: i64,
    ) {
        let Some(pos) = position else {
            self.count(payload, UNPARTITIONED, now_ms);
            return;
        };
        match self.partitions.get_mut(&pos.partition) {
            Some(p) if p.owned && p.generation == pos.generation => {
                if let Some(at) = p.resume_at.filter(|&at| pos.offset >= at) {
                    p.resume_at = None;
                    if pos.offset > at {
                        let skipped = pos.offset - at;
                        tracing::warn!(
                            partition = pos.partition,
                            resume_at = at,
                            first_read = pos.offset,
                            "offsets skipped where the partition resumed"
                        );
                        self.replays.skipped_at_resume += skipped.unsigned_abs();
                    }
                }
                if pos.offset < p.next_offset {
                    self.replays.already_counted += 1;
                    self.learn(payload, now_ms);
                    return;
                }
                p.next_offset = pos.offset + 1;
                match origin {
                    Some(Origin {
                        partition,
                        filtered: Some(block),
                        ..
                    }) => {
                        // Markers of a block count from its start, so only
                        // what a marker adds to the block is new.
                        let (index, counted) = p.blocks.entry(partition).or_insert((-1, 0));
                        let added = match block.block.cmp(index) {
                            std::cmp::Ordering::Less => 0,
                            std::cmp::Ordering::Equal => block.count.saturating_sub(*counted),
                            std::cmp::Ordering::Greater => block.count,
                        };
                        if added > 0 {
                            *index = block.block;
                            *counted = block.count;
                        }
                        if added == 0 {
                            self.replays.rerouted += 1;
                        }
                        self.counts.filtered += u64::from(added);
                        return;
                    }
                    Some(o) => {
                        let furthest = p.origins.entry(o.partition).or_insert(-1);
                        if o.offset <= *furthest {
                            self.replays.rerouted += 1;
                            return;
                        }
                        *furthest = o.offset;
                    }
                    None => {}
                }
            }
            _ => {
                self.replays.not_owned += 1;
                return;
            }
        }
        if let Some(event_time_ms) = self.count(payload, pos.partition, now_ms) {
            let horizon = self.dedup.horizon_minutes();
            if let Some(p) = self.partitions.get_mut(&pos.partition) {
                p.mark(pos.offset, event_time_ms, horizon);
            }
        }
    }

    /// Teaches the de-duplication filter an event that is already counted,
    /// so a later copy of it is known for a duplicate.
    fn learn(&mut self, payload: Option<&[u8]>, now_ms: i64) {
        if let Decoded::Checkout(c) = self.decoder.decode(payload) {
            if c.event_time_ms <= now_ms.saturating_add(self.future_tolerance_ms) {
                let at = EventClock::effective(c.event_time_ms, now_ms);
                self.dedup.check(c.event_id_hash, at);
            }
        }
    }

    /// Counts one message from `partition`; returns the event time (as
    /// counted: never past `now_ms`) of a checkout that passed decoding
    /// (counted or a duplicate).
    fn count(&mut self, payload: Option<&[u8]>, partition: i32, now_ms: i64) -> Option<i64> {
        let checkout = match self.decoder.decode(payload) {
            Decoded::Checkout(c) => c,
            Decoded::Filtered(_) => {
                self.counts.filtered += 1;
                return None;
            }
            Decoded::Rejected(r) => {
                self.reject(r);
                return None;
            }
        };
        if checkout.event_time_ms > now_ms.saturating_add(self.future_tolerance_ms) {
            self.reject(Reject::FutureTime);
            return None;
        }
        // A clock ahead of ours (within the tolerance) is taken as ours:
        // from here on, the order happened at `at`.
        let at = EventClock::effective(checkout.event_time_ms, now_ms);
        if self.dedup.check(checkout.event_id_hash, at) == Seen::Duplicate {
            self.counts.duplicates += 1;
            return Some(at);
        }
        self.counts.accepted += 1;
        self.counts.truncated += u64::from(checkout.truncated);
        let late = self.clock.observe(partition, at, now_ms);
        if late {
            self.counts.late += 1;
        }
        if !self.totals_only {
            for (category, quantity) in &checkout.items {
                self.trends.add(category, *quantity, at);
            }
            self.breakdowns
                .add(checkout.buyer_country, checkout.channel, checkout.usd_cents);
            let shop = ShopLabel {
                id: checkout.shop_id,
                country: checkout.shop_country,
                lat: checkout.shop_lat as f32,
                lon: checkout.shop_lon as f32,
            };
            let city = checkout
                .buyer_city
                .as_deref()
                .map(|c| (c, checkout.buyer_country));
            self.rankings.add(shop, checkout.buyer_hash, city);
            let hash = shop_hash(checkout.shop_id);
            if self.first_sales.record(hash, at) {
                let (lat, lon) = crate::arcs::coarsen(checkout.shop_lat, checkout.shop_lon);
                self.queue_first_sale(FirstSale {
                    shop_hash: hash,
                    lat: lat as f32,
                    lon: lon as f32,
                    country: checkout.shop_country,
                    at_ms: at,
                });
            }
        }
        self.aggregate.add(
            checkout.usd_cents,
            checkout.carbon_grams,
            checkout.buyer_hash,
            at,
            !late,
        );
        if let Some(buyer) = checkout.buyer {
            self.sampler.offer(Candidate {
                shop: (checkout.shop_lat, checkout.shop_lon),
                buyer,
                usd_cents: checkout.usd_cents,
                at_ms: at,
                channel: checkout.channel,
            });
        }
        Some(at)
    }

    fn reject(&mut self, r: Reject) {
        self.counts.rejected[r as usize] += 1;
    }

    /// Event ids the de-duplication filter currently remembers.
    pub fn dedup_entries(&self) -> usize {
        self.dedup.len()
    }

    /// Ids the de-duplication filter forgot early to stay within memory.
    pub fn dedup_evicted_early(&self) -> u64 {
        self.dedup.evicted_early()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livemap_events::demo::{DemoMix, Generator, Kind};
    use std::collections::HashSet;

    const NOW: i64 = 1_795_788_191_123;

    #[test]
    fn counts_match_the_generator_exactly() {
        let mut g = Generator::new(
            5,
            DemoMix {
                malformed: 0.01,
                ..DemoMix::default()
            },
        );
        let mut engine = Engine::new(EngineConfig::default());
        let mut buf = Vec::new();
        let (mut accepted, mut dups, mut filtered, mut rejected) = (0u64, 0u64, 0u64, 0u64);
        let mut cents = 0u64;
        let decoder = Decoder::new(FxTable::default());
        let mut ids = HashSet::new();
        for i in 0..100_000 {
            let kind = g.next_message(NOW + i * 3, &mut buf);
            match kind {
                Kind::Checkout => {
                    accepted += 1;
                    if let Decoded::Checkout(c) = decoder.decode(Some(&buf)) {
                        cents += c.usd_cents;
                        assert!(ids.insert(c.event_id_hash));
                    }
                }
                Kind::Duplicate => dups += 1,
                Kind::TestOrder | Kind::OtherType => filtered += 1,
                Kind::Malformed(_) => rejected += 1,
            }
            engine.ingest(Some(&buf), None, NOW + i * 3);
        }
        assert!(dups > 0 && rejected > 0);
        assert_eq!(engine.counts.accepted, accepted);
        assert_eq!(engine.counts.duplicates, dups);
        assert_eq!(engine.counts.filtered, filtered);
        assert_eq!(engine.counts.rejected.iter().sum::<u64>(), rejected);
        assert_eq!(engine.aggregate.orders, accepted);
        assert_eq!(engine.aggregate.gmv_usd_cents, cents);
    }

    #[test]
    fn each_shop_is_announced_once_at_its_first_sale_and_never_on_a_replay() {
        let mut g = Generator::new(77, DemoMix::default());
        let decoder = Decoder::new(FxTable::default());
        let mut engine = Engine::new(EngineConfig::default());
        engine.assign(&[(0, None)], 1);
        let mut buf = Vec::new();
        let mut shops = HashSet::new();
        let mut announced = Vec::new();
        let mut log = Vec::new();
        for i in 0..20_000i64 {
            let at = NOW + i * 3;
            if g.next_message(at, &mut buf) == Kind::Checkout {
                if let Decoded::Checkout(c) = decoder.decode(Some(&buf)) {
                    shops.insert(shop_hash(c.shop_id));
                }
            }
            log.push(buf.clone());
            engine.ingest(Some(&buf), pos(0, i, 1), at);
            if i % 20 == 0 {
                announced.extend(engine.take_first_sales());
            }
        }
        announced.extend(engine.take_first_sales());
        let distinct: HashSet<u64> = announced.iter().map(|s| s.shop_hash).collect();
        assert_eq!(distinct.len(), announced.len(), "no shop twice");
        assert_eq!(distinct, shops, "every shop once");
        assert!(announced
            .iter()
            .all(|s| crate::arcs::is_coarsened(s.lat, s.lon)));
        // Read again (a replay below the partition's offset): nothing new.
        for (i, m) in log.iter().enumerate() {
            engine.ingest(Some(m), pos(0, i as i64, 1), NOW + 60_000);
        }
        assert!(engine.take_first_sales().is_empty());
    }

    fn pos(partition: i32, offset: i64, generation: u64) -> Option<Position> {
        Some(Position {
            partition,
            offset,
            generation,
        })
    }

    fn at(next_offset: i64) -> Option<Handover> {
        Some(Handover::at(next_offset))
    }

    fn resume(partition: i32, count_from: Option<i64>, read_from: Option<i64>) -> Resume {
        Resume {
            partition,
            count_from,
            read_from,
        }
    }

    #[test]
    fn a_member_taking_over_relearns_the_ids_and_counts_a_late_copy_once() {
        let mut g = Generator::new(31, DemoMix::default());
        // Three minutes of checkouts on one partition, one every 2 s.
        let msgs: Vec<Vec<u8>> = (0..90).map(|i| g.checkout(NOW + i * 2_000)).collect();
        let mut old = Engine::new(EngineConfig::default());
        old.assign(&[(0, None)], 1);
        for (i, m) in msgs.iter().enumerate().take(60) {
            old.ingest(Some(m), pos(0, i as i64, 1), NOW + 200_000);
        }
        let handed = old.handover(0).expect("partition 0 was counted");
        assert_eq!(handed.next_offset, 60);
        assert!(
            handed.marks.len() >= 2,
            "a mark per minute: {:?}",
            handed.marks
        );

        let mut new = Engine::new(EngineConfig::default());
        let r = new.assign(&[(0, Some(handed))], 1);
        assert_eq!(r, vec![resume(0, Some(60), Some(0))]);
        // The log from the first mark on, then a late copy of message 10.
        let log: Vec<&Vec<u8>> = msgs.iter().chain([&msgs[10]]).collect();
        for (i, m) in log.iter().enumerate() {
            new.ingest(Some(m), pos(0, i as i64, 1), NOW + 200_000);
        }
        assert_eq!(old.counts.accepted + new.counts.accepted, 90);
        assert_eq!(new.counts.duplicates, 1, "the late copy is known");
        assert_eq!(new.replays.already_counted, 60);
        assert_eq!(new.positions(), vec![(0, 91)]);

        // Restored from a record without the filter, the old owner re-reads
        // its own partition from the first mark too; from a checkpoint with
        // the filter, it need not.
        let view = old.export_view("kafka:checkouts");
        let mut restored =
            Engine::restore(EngineConfig::default(), "kafka:checkouts", &view).expect("restores");
        assert_eq!(
            restored.assign(&[(0, None)], 2),
            vec![resume(0, Some(60), Some(0))]
        );
        let full = old.export("kafka:checkouts");
        let mut restored =
            Engine::restore(EngineConfig::default(), "kafka:checkouts", &full).expect("restores");
        assert_eq!(
            restored.assign(&[(0, None)], 2),
            vec![resume(0, Some(60), Some(60))]
        );
    }

    #[test]
    fn routed_copies_and_filtered_blocks_count_once() {
        let mut g = Generator::new(41, DemoMix::default());
        let mut e = Engine::new(EngineConfig::default());
        e.assign(&[(0, None)], 1);
        let one = |offset| {
            Some(Origin {
                partition: 3,
                offset,
                filtered: None,
            })
        };
        let block = |block, offset, count| {
            Some(Origin {
                partition: 3,
                offset,
                filtered: Some(crate::position::FilteredBlock { block, count }),
            })
        };
        let checkout = g.checkout(NOW);
        // A checkout, then the same origin sent again by a restarted router.
        e.ingest_routed(Some(&checkout), pos(0, 0, 1), one(17), NOW);
        e.ingest_routed(Some(&checkout), pos(0, 1, 1), one(17), NOW);
        // Markers of block 0 grow; a copy, the next block, a stale one.
        for (i, (b, last, count)) in [
            (0, 100, 5),
            (0, 400, 9),
            (0, 400, 9),
            (1, 4_200, 3),
            (0, 400, 9),
            (1, 4_300, 7),
        ]
        .into_iter()
        .enumerate()
        {
            e.ingest_routed(None, pos(0, 2 + i as i64, 1), block(b, last, count), NOW);
        }
        assert_eq!(e.counts.accepted, 1);
        assert_eq!(e.counts.duplicates, 0, "a rerouted copy is not a duplicate");
        assert_eq!(e.counts.filtered, 9 + 7);
        assert_eq!(e.replays.rerouted, 3);
    }

    #[test]
    fn replayed_offsets_are_skipped_and_foreign_partitions_ignored() {
        let mut g = Generator::new(9, DemoMix::default());
        let msgs: Vec<Vec<u8>> = (0..10).map(|i| g.checkout(NOW + i)).collect();
        let mut e = Engine::new(EngineConfig::default());
        assert_eq!(e.assign(&[(0, None)], 1), vec![resume(0, None, None)]);
        for (i, m) in msgs.iter().enumerate() {
            e.ingest(Some(m), pos(0, i as i64, 1), NOW);
        }
        // The same offsets again (a restart from an older commit): skipped.
        for (i, m) in msgs.iter().enumerate().take(5) {
            e.ingest(Some(m), pos(0, i as i64, 1), NOW);
        }
        // A partition never assigned, and an older assignment: ignored.
        e.ingest(Some(&msgs[0]), pos(1, 0, 1), NOW);
        e.ingest(Some(&msgs[0]), pos(0, 10, 0), NOW);
        assert_eq!(e.counts.accepted, 10);
        assert_eq!(
            e.counts.duplicates, 0,
            "replays are not duplicates of events"
        );
        assert_eq!(
            e.replays,
            Replays {
                already_counted: 5,
                not_owned: 2,
                rerouted: 0,
                skipped_at_resume: 0,
            }
        );
        assert_eq!(e.positions(), vec![(0, 10)]);
        e.revoke(&[0]);
        e.ingest(Some(&g.checkout(NOW)), pos(0, 10, 1), NOW);
        assert_eq!(e.counts.accepted, 10, "revoked partitions are not counted");
        assert_eq!(
            e.assign(&[(0, at(4))], 2),
            vec![resume(0, Some(10), Some(10))],
            "the state is ahead of the group"
        );
        e.revoke(&[0]);
        assert_eq!(
            e.assign(&[(0, at(25))], 3),
            vec![resume(0, Some(25), Some(25))],
            "another member counted 10..25"
        );
        assert_eq!(e.positions(), vec![(0, 25)]);
        // A broker that starts the read past the resume offset: the
        // offsets never read are counted, once.
        e.ingest(Some(&g.checkout(NOW)), pos(0, 30, 3), NOW);
        e.ingest(Some(&g.checkout(NOW)), pos(0, 31, 3), NOW);
        assert_eq!(e.replays.skipped_at_resume, 5);
        assert_eq!(e.counts.accepted, 12);
    }

    #[test]
    fn export_then_restore_continues_exactly() {
        let mut g = Generator::new(
            21,
            DemoMix {
                malformed: 0.01,
                ..DemoMix::default()
            },
        );
        let mut buf = Vec::new();
        let msgs: Vec<Vec<u8>> = (0..20_000)
            .map(|i| {
                g.next_message(NOW + i * 5, &mut buf);
                buf.clone()
            })
            .collect();
        let run = |e: &mut Engine, range: std::ops::Range<usize>| {
            for i in range {
                e.ingest(
                    Some(&msgs[i]),
                    pos((i % 4) as i32, (i / 4) as i64, 1),
                    NOW + i as i64 * 5,
                );
            }
        };
        let mut whole = Engine::new(EngineConfig::default());
        whole.assign(&[(0, None), (1, None), (2, None), (3, None)], 1);
        run(&mut whole, 0..20_000);

        let mut first = Engine::new(EngineConfig::default());
        first.assign(&[(0, None), (1, None), (2, None), (3, None)], 1);
        run(&mut first, 0..12_000);
        let saved = first.export("kafka:checkouts");
        // Work after the checkpoint is lost with the process...
        run(&mut first, 12_000..13_000);
        let mut second =
            Engine::restore(EngineConfig::default(), "kafka:checkouts", &saved).expect("restores");
        assert!(Engine::restore(EngineConfig::default(), "kafka:other", &saved).is_err());
        second.assign(&[(0, at(0)), (1, None), (2, None), (3, None)], 1);
        // ...and the source replays from an older commit.
        run(&mut second, 8_000..20_000);
        assert_eq!(second.counts, whole.counts);
        assert_eq!(second.aggregate.orders, whole.aggregate.orders);
        assert_eq!(
            second.aggregate.gmv_usd_cents,
            whole.aggregate.gmv_usd_cents
        );
        assert_eq!(second.aggregate.carbon_grams, whole.aggregate.carbon_grams);
        assert_eq!(second.aggregate.shoppers, whole.aggregate.shoppers);
        assert_eq!(second.breakdowns, whole.breakdowns);
        assert_eq!(second.rankings, whole.rankings);
        assert_eq!(second.trends.current(), whole.trends.current());
        assert_eq!(second.positions(), whole.positions());
        assert!(second.replays.already_counted >= 4_000);
    }

    #[test]
    fn corrupt_state_is_refused_not_trusted() {
        let mut e = Engine::new(EngineConfig::default());
        e.assign(&[(0, None)], 1);
        let saved = e.export("demo");
        for cut in [0, 1, 10, saved.len() / 2, saved.len() - 1] {
            assert!(
                Engine::restore(EngineConfig::default(), "demo", &saved[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn orders_past_the_allowed_lateness_count_in_totals_but_not_their_minute() {
        let mut g = Generator::new(13, DemoMix::default());
        let mut e = Engine::new(EngineConfig::default());
        let t = NOW - NOW % 60_000;
        for (at, _) in [
            (t + 10 * 60_000, 0),
            (t + 6 * 60_000, 0),
            (t + 4 * 60_000, 0),
        ] {
            let mut v: serde_json::Value = serde_json::from_slice(&g.checkout(at)).expect("json");
            v["occurred_at"] = serde_json::json!(livemap_events::time::format_rfc3339_ms(at));
            e.ingest(Some(v.to_string().as_bytes()), None, t + 20 * 60_000);
        }
        // Newest at +10 min; +6 is 4 minutes late (allowed); +4 is 6 (late).
        assert_eq!(e.counts.accepted, 3);
        assert_eq!(e.counts.late, 1);
        assert_eq!(e.aggregate.orders, 3);
        let minute = |m: i64| e.aggregate.minutes.get(t / 60_000 + m).orders;
        assert_eq!((minute(10), minute(6), minute(4)), (1, 1, 0));
    }

    #[test]
    fn ingest_counts_merge_by_sum() {
        use crate::aggregate::Merge;
        let mut g = Generator::new(
            17,
            DemoMix {
                malformed: 0.05,
                ..DemoMix::default()
            },
        );
        let mut buf = Vec::new();
        let msgs: Vec<Vec<u8>> = (0..4_000)
            .map(|i| {
                g.next_message(NOW + i, &mut buf);
                buf.clone()
            })
            .collect();
        let run = |range: std::ops::Range<usize>| {
            let mut e = Engine::new(EngineConfig::default());
            for m in &msgs[range] {
                e.ingest(Some(m), None, NOW);
            }
            e.counts
        };
        // Filtered and rejected split exactly; accepted + duplicates too,
        // since a split can only move a repeat from one to the other.
        let whole = run(0..4_000);
        let mut merged = run(0..1_500);
        merged.merge(&run(1_500..4_000));
        assert_eq!(merged.filtered, whole.filtered);
        assert_eq!(merged.rejected, whole.rejected);
        assert_eq!(
            merged.accepted + merged.duplicates,
            whole.accepted + whole.duplicates
        );
        let mut identity = whole.clone();
        identity.merge(&IngestCounts::default());
        assert_eq!(identity, whole);
    }

    #[test]
    fn one_fast_producer_clock_neither_blanks_the_rates_nor_makes_orders_late() {
        let mut g = Generator::new(23, DemoMix::default());
        let mut e = Engine::new(EngineConfig::default());
        e.assign(&[(0, None), (1, None), (2, None)], 1);
        let now = NOW - NOW % 60_000 + 30_000;
        let at = |e: &mut Engine, g: &mut Generator, p: i32, o: i64, t: i64, now: i64| {
            let mut v: serde_json::Value = serde_json::from_slice(&g.checkout(t)).expect("json");
            v["occurred_at"] = serde_json::json!(livemap_events::time::format_rfc3339_ms(t));
            e.ingest(Some(v.to_string().as_bytes()), pos(p, o, 1), now);
        };
        // One order four minutes ahead, on partition 2, first.
        at(&mut e, &mut g, 2, 0, now + 4 * 60_000, now);
        // Then 1,800 on-time orders of the last three minutes, in order.
        for i in 0..1_800i64 {
            let t = now - 180_000 + i * 100;
            at(&mut e, &mut g, (i % 2) as i32, i / 2, t, now);
        }
        assert_eq!(e.counts.accepted, 1_801);
        assert_eq!(e.counts.late, 0, "on-time orders are not late");
        let minute = e.last_full_minute(now).expect("a minute");
        assert_eq!(minute, now / 60_000 - 1, "the minute before now's");
        let shown = e.aggregate.minutes.get(minute).orders;
        assert_eq!(shown, 600, "a whole minute of orders, not zero");
        assert_eq!(e.newest_event_ms(), Some(now), "nothing past the clock");
    }

    #[test]
    fn far_future_events_are_rejected_not_counted() {
        let mut g = Generator::new(5, DemoMix::default());
        let mut engine = Engine::new(EngineConfig::default());
        let msg = g.checkout(NOW + 3_600_000);
        engine.ingest(Some(&msg), None, NOW);
        assert_eq!(engine.counts.rejected[Reject::FutureTime as usize], 1);
        assert_eq!(engine.aggregate.orders, 0);
        assert_eq!(
            engine.counts.rejected_by_reason(),
            vec![("future_time".to_owned(), 1)]
        );
    }
}
