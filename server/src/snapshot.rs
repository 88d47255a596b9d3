//! Snapshot stage: on every tick, the engine's state becomes one versioned,
//! immutable snapshot.
//!
//! Versions start at the wall-clock millisecond the process started and
//! grow by one per tick. They never go back while the process lives, and
//! because a tick takes far longer than a millisecond, a restarted server
//! also starts above every version its predecessor published.
//!
//! Previous stage: [`crate::ingest`]. Next stage: [`crate::encode`].

use std::collections::VecDeque;

use livemap_wire::{Arc, Channel, Ingest, Rates, Slice, Snapshot, Totals};

use crate::aggregate::MINUTE_MS;
use crate::ingest::Engine;

/// How many recent arcs `/api/snapshot` lists.
pub const RECENT_ARCS: usize = 100;
/// How many countries the binary stream carries (the JSON has them all).
pub const STREAM_COUNTRIES: usize = 20;

#[derive(Debug)]
pub struct Snapshotter {
    version: u64,
    tick_ms: u32,
    recent_arcs: VecDeque<Arc>,
}

/// A tick's snapshot, plus what only the JSON view shows: a longer arc
/// history and every country.
#[derive(Debug, Clone)]
pub struct Built {
    pub snapshot: Snapshot,
    pub recent_arcs: Vec<Arc>,
    pub all_countries: Vec<Slice>,
}

impl Snapshotter {
    pub fn new(start_ms: i64, tick_ms: u32) -> Self {
        Snapshotter {
            version: u64::try_from(start_ms).unwrap_or(0),
            tick_ms,
            recent_arcs: VecDeque::with_capacity(RECENT_ARCS),
        }
    }

    /// The version the next snapshot will carry, minus one: what a client
    /// that has seen nothing yet compares against.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn build(&mut self, engine: &mut Engine, now_ms: i64, stale: bool) -> Built {
        self.version += 1;
        let arcs = engine.take_arcs();
        for a in &arcs {
            if self.recent_arcs.len() == RECENT_ARCS {
                self.recent_arcs.pop_front();
            }
            self.recent_arcs.push_back(*a);
        }
        let mut countries: Vec<Slice> = engine
            .breakdowns
            .by_country
            .iter()
            .map(|(c, x)| Slice {
                key: String::from_utf8_lossy(c).into_owned(),
                orders: x.orders,
                usd_cents: x.usd_cents,
            })
            .collect();
        countries.sort_by(|a, b| {
            b.usd_cents
                .cmp(&a.usd_cents)
                .then_with(|| a.key.cmp(&b.key))
        });
        let channels = Channel::ALL
            .iter()
            .zip(&engine.breakdowns.by_channel)
            .map(|(c, x)| Slice {
                key: c.as_str().to_owned(),
                orders: x.orders,
                usd_cents: x.usd_cents,
            })
            .collect();
        let agg = &engine.aggregate;
        let rates =
            agg.minutes
                .last_full_minute()
                .map_or_else(Rates::default, |(minute, bucket)| Rates {
                    orders_per_minute: bucket.orders as f64,
                    gmv_usd_cents_per_minute: bucket.usd_cents,
                    minute_start_ms: minute * MINUTE_MS,
                });
        let snapshot = Snapshot {
            version: self.version,
            generated_at_ms: now_ms,
            stale,
            totals: Totals {
                orders: agg.orders,
                gmv_usd_cents: agg.gmv_usd_cents,
                unique_shoppers: agg.shoppers.estimate(),
                carbon_grams: agg.carbon_grams,
            },
            rates,
            ingest: Ingest {
                accepted: engine.counts.accepted,
                duplicates: engine.counts.duplicates,
                filtered: engine.counts.filtered,
                rejected: engine.counts.rejected_by_reason(),
                late: engine.counts.late,
            },
            trends: engine.trends.current().to_vec(),
            arcs,
            tick_ms: self.tick_ms,
            countries: countries.iter().take(STREAM_COUNTRIES).cloned().collect(),
            channels,
            ..Snapshot::default()
        };
        Built {
            snapshot,
            recent_arcs: self.recent_arcs.iter().copied().collect(),
            all_countries: countries,
        }
    }
}
