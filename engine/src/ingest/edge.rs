//! What an edge does with an engine: merges the aggregators' states into
//! it, and queues the arcs they sampled so they spread over the ticks.
//! (An aggregator's and a single process's engine hand their own sampled
//! arcs out through `take_arcs` too.)

use super::Engine;

impl Engine {
    /// This tick's sampled arcs (coarsened); the next tick starts empty.
    /// Arcs that arrived from elsewhere come first, a tick's worth at most,
    /// the newest: what is left waits a tick, or is dropped as the queue
    /// overflows, so a screen shows arcs late only as long as it must.
    pub fn take_arcs(&mut self) -> Vec<livemap_wire::Arc> {
        let n = self.arcs_per_tick.min(self.arriving_arcs.len());
        let from = self.arriving_arcs.len() - n;
        let mut arcs: Vec<livemap_wire::Arc> = self.arriving_arcs.drain(from..).collect();
        arcs.extend(self.sampler.take());
        arcs
    }

    /// Queues arcs sampled by another engine. At most `backlog_ticks`
    /// ticks' worth wait: the oldest go first, as a screen would rather
    /// skip arcs than show them late.
    pub fn push_arcs(&mut self, arcs: &[livemap_wire::Arc], backlog_ticks: usize) {
        self.arriving_arcs.extend(arcs.iter().cloned());
        let cap = self.arcs_per_tick.saturating_mul(backlog_ticks.max(1));
        while self.arriving_arcs.len() > cap {
            self.arriving_arcs.pop_front();
        }
    }

    /// Queues a first sale to be shown, found here or (on an edge)
    /// announced by an aggregator; past [`super::PENDING_FIRST_SALES`]
    /// waiting, the oldest is dropped.
    pub fn queue_first_sale(&mut self, sale: crate::first_sales::FirstSale) {
        if self.pending_first_sales.len() == super::PENDING_FIRST_SALES {
            self.pending_first_sales.pop_front();
        }
        self.pending_first_sales.push_back(sale);
    }

    /// The first sales waiting, oldest first; the queue starts empty.
    pub fn take_first_sales(&mut self) -> Vec<crate::first_sales::FirstSale> {
        self.pending_first_sales.drain(..).collect()
    }

    /// Whether this state knows the shop has sold (an edge checks a first
    /// sale announced by one aggregator against the others' states).
    pub fn has_sold(&self, shop_hash: u64) -> bool {
        self.first_sales.contains(shop_hash)
    }

    /// Adds another engine's counts to this one: what an edge does with
    /// the aggregators' partial states. Offsets and the de-duplication
    /// filter are not merged; an edge counts nothing itself.
    pub fn absorb(&mut self, other: &Engine) {
        use crate::aggregate::Merge;
        self.counts.merge(&other.counts);
        self.replays.already_counted += other.replays.already_counted;
        self.replays.not_owned += other.replays.not_owned;
        self.replays.rerouted += other.replays.rerouted;
        self.replays.skipped_at_resume += other.replays.skipped_at_resume;
        self.aggregate.merge(&other.aggregate);
        self.trends.merge(&other.trends);
        self.breakdowns.merge(&other.breakdowns);
        self.rankings.merge(&other.rankings);
        self.first_sales.merge(&other.first_sales);
        self.clock.merge(&other.clock);
    }

    /// Takes the counts of `merged` and keeps this engine's arcs waiting
    /// to be shown: an edge swaps in a new merge without losing them.
    /// The minute the rates show is kept too: it never goes back.
    pub fn replace_counts(&mut self, mut merged: Engine) {
        let arcs = std::mem::take(&mut self.arriving_arcs);
        let first_sales = std::mem::take(&mut self.pending_first_sales);
        merged.clock.keep_shown(&self.clock);
        *self = merged;
        self.arriving_arcs = arcs;
        self.pending_first_sales = first_sales;
    }
}
