//! The ingest path for one message: decode → de-duplicate → aggregate →
//! offer an arc. One [`Engine`] owns all the state this path changes.
//!
//! Previous stage: [`crate::source`] delivers batches of raw messages.
//! Next stage: [`crate::snapshot`] reads the engine on every tick.

use livemap_events::money::FxTable;

use crate::aggregate::Aggregate;
use crate::arcs::{ArcSampler, Candidate};
use crate::decode::{Decoded, Decoder, Reject};
use crate::dedup::{Dedup, Seen};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub fx: FxTable,
    pub dedup_horizon_ms: i64,
    pub dedup_max_entries: usize,
    pub arcs_per_tick: usize,
    /// How far past the wall clock an event time may be.
    pub future_tolerance_ms: i64,
    pub seed: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            fx: FxTable::default(),
            dedup_horizon_ms: 60 * 60_000,
            dedup_max_entries: 10_000_000,
            arcs_per_tick: 40,
            future_tolerance_ms: 5 * 60_000,
            seed: 0,
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

#[derive(Debug)]
pub struct Engine {
    decoder: Decoder,
    dedup: Dedup,
    pub aggregate: Aggregate,
    pub counts: IngestCounts,
    sampler: ArcSampler,
    future_tolerance_ms: i64,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            decoder: Decoder::new(config.fx),
            dedup: Dedup::new(config.dedup_horizon_ms, config.dedup_max_entries),
            aggregate: Aggregate::default(),
            counts: IngestCounts::default(),
            sampler: ArcSampler::new(config.arcs_per_tick, config.seed),
            future_tolerance_ms: config.future_tolerance_ms,
        }
    }

    /// Takes one message value (`None` for a tombstone). `now_ms` is the
    /// wall clock, read once per batch by the caller.
    pub fn ingest(&mut self, payload: Option<&[u8]>, now_ms: i64) {
        let checkout = match self.decoder.decode(payload) {
            Decoded::Checkout(c) => c,
            Decoded::Filtered(_) => {
                self.counts.filtered += 1;
                return;
            }
            Decoded::Rejected(r) => return self.reject(r),
        };
        if checkout.event_time_ms > now_ms.saturating_add(self.future_tolerance_ms) {
            return self.reject(Reject::FutureTime);
        }
        if self
            .dedup
            .check(checkout.event_id_hash, checkout.event_time_ms)
            == Seen::Duplicate
        {
            self.counts.duplicates += 1;
            return;
        }
        self.counts.accepted += 1;
        self.aggregate.add(
            checkout.usd_cents,
            checkout.carbon_grams,
            checkout.buyer_hash,
            checkout.event_time_ms,
        );
        if let Some(buyer) = checkout.buyer {
            self.sampler.offer(Candidate {
                shop: (checkout.shop_lat, checkout.shop_lon),
                buyer,
                usd_cents: checkout.usd_cents,
                at_ms: checkout.event_time_ms,
                channel: checkout.channel,
            });
        }
    }

    fn reject(&mut self, r: Reject) {
        self.counts.rejected[r as usize] += 1;
    }

    /// This tick's sampled arcs (coarsened); the next tick starts empty.
    pub fn take_arcs(&mut self) -> Vec<livemap_wire::Arc> {
        self.sampler.take()
    }

    /// Event ids the de-duplication filter currently remembers.
    pub fn dedup_entries(&self) -> usize {
        self.dedup.len()
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
            engine.ingest(Some(&buf), NOW + i * 3);
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
    fn far_future_events_are_rejected_not_counted() {
        let mut g = Generator::new(5, DemoMix::default());
        let mut engine = Engine::new(EngineConfig::default());
        let msg = g.checkout(NOW + 3_600_000);
        engine.ingest(Some(&msg), NOW);
        assert_eq!(engine.counts.rejected[Reject::FutureTime as usize], 1);
        assert_eq!(engine.aggregate.orders, 0);
        assert_eq!(
            engine.counts.rejected_by_reason(),
            vec![("future_time".to_owned(), 1)]
        );
    }
}
