//! The headline numbers, ticking smoothly between snapshots.
//!
//! Each snapshot sets new targets; the displayed value eases from wherever
//! it is to the target over about one tick, so a steady stream of snapshots
//! reads as a steadily rolling counter. Running totals never go backwards on
//! screen: a lower total (a lagging replica, an out-of-order long-poll
//! answer) is ignored, and a large jump still eases rather than snapping.
//! Only the very first snapshot snaps, so a fresh page does not count up
//! from zero.

use livemap_wire::Snapshot;

/// Indices into [`Counters::values`] (and the JS `Float64Array`).
pub const GMV_USD_CENTS: usize = 0;
pub const ORDERS_PER_MINUTE: usize = 1;
pub const UNIQUE_SHOPPERS: usize = 2;
pub const CARBON_KG: usize = 3;
pub const ORDERS: usize = 4;
pub const COUNT: usize = 5;

/// Easing time as a multiple of the tick: a little over one, so the next
/// target usually arrives before the last one is reached and the roll does
/// not stutter at the tick rate.
const EASE_TICKS: f64 = 1.25;

#[derive(Clone, Copy, Debug, Default)]
struct Eased {
    from: f64,
    to: f64,
    start_ms: f64,
    duration_ms: f64,
}

impl Eased {
    fn at(&self, now_ms: f64) -> f64 {
        if self.duration_ms <= 0.0 {
            return self.to;
        }
        let t = ((now_ms - self.start_ms) / self.duration_ms).clamp(0.0, 1.0);
        // Ease-out quadratic: monotone in t, no overshoot.
        let e = 1.0 - (1.0 - t) * (1.0 - t);
        self.from + (self.to - self.from) * e
    }

    fn retarget(&mut self, target: f64, now_ms: f64, duration_ms: f64) {
        self.from = self.at(now_ms);
        self.to = target;
        self.start_ms = now_ms;
        self.duration_ms = duration_ms;
    }
}

#[derive(Clone, Debug, Default)]
pub struct Counters {
    eased: [Eased; COUNT],
    /// Last value handed out per counter, to keep totals monotonic even if
    /// the caller's clock steps back.
    shown: [f64; COUNT],
    started: bool,
    /// For reduced motion: new values are shown at once, not rolled to.
    still: bool,
}

fn targets(s: &Snapshot) -> [f64; COUNT] {
    let rate = s.rates.orders_per_minute;
    [
        s.totals.gmv_usd_cents as f64,
        if rate.is_finite() { rate.max(0.0) } else { 0.0 },
        s.totals.unique_shoppers as f64,
        s.totals.carbon_grams as f64 / 1000.0,
        s.totals.orders as f64,
    ]
}

/// Whether a counter is a running total (never shown going down).
fn is_total(i: usize) -> bool {
    i != ORDERS_PER_MINUTE
}

impl Counters {
    pub fn new() -> Counters {
        Counters::default()
    }

    pub fn set_reduced_motion(&mut self, still: bool) {
        self.still = still;
    }

    pub fn set(&mut self, snapshot: &Snapshot, now_ms: f64, tick_ms: f64) {
        if !now_ms.is_finite() {
            return;
        }
        let tick = if tick_ms.is_finite() {
            tick_ms.clamp(50.0, 5_000.0)
        } else {
            200.0
        };
        let targets = targets(snapshot);
        for (i, (e, target)) in self.eased.iter_mut().zip(targets).enumerate() {
            if !self.started {
                *e = Eased {
                    from: target,
                    to: target,
                    start_ms: now_ms,
                    duration_ms: 0.0,
                };
                self.shown[i] = target;
                continue;
            }
            let target = if is_total(i) {
                target.max(e.to)
            } else {
                target
            };
            let duration = if self.still { 0.0 } else { tick * EASE_TICKS };
            e.retarget(target, now_ms, duration);
        }
        self.started = true;
    }

    /// The values to display at `now_ms`, in the index order above.
    pub fn values(&mut self, now_ms: f64) -> [f64; COUNT] {
        let mut out = [0.0; COUNT];
        for (i, o) in out.iter_mut().enumerate() {
            let v = self.eased[i].at(if now_ms.is_finite() { now_ms } else { 0.0 });
            *o = if is_total(i) { v.max(self.shown[i]) } else { v };
            self.shown[i] = *o;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livemap_wire::{Rates, Totals};

    fn snap(gmv: u64, opm: f64) -> Snapshot {
        Snapshot {
            totals: Totals {
                orders: gmv / 1000,
                gmv_usd_cents: gmv,
                unique_shoppers: gmv / 2000,
                carbon_grams: gmv * 3,
            },
            rates: Rates {
                orders_per_minute: opm,
                ..Rates::default()
            },
            ..Snapshot::default()
        }
    }

    #[test]
    fn first_snapshot_snaps_then_eases_within_about_a_tick() {
        let mut c = Counters::new();
        c.set(&snap(1_000_000, 60.0), 0.0, 200.0);
        assert_eq!(c.values(0.0), [1_000_000.0, 60.0, 500.0, 3_000.0, 1_000.0]);
        c.set(&snap(2_000_000, 90.0), 100.0, 200.0);
        let mid = c.values(200.0);
        assert!(mid[GMV_USD_CENTS] > 1_000_000.0 && mid[GMV_USD_CENTS] < 2_000_000.0);
        assert!(mid[ORDERS_PER_MINUTE] > 60.0 && mid[ORDERS_PER_MINUTE] < 90.0);
        let done = c.values(100.0 + 200.0 * EASE_TICKS);
        assert_eq!(done, [2_000_000.0, 90.0, 1_000.0, 6_000.0, 2_000.0]);
    }

    #[test]
    fn totals_never_go_backwards() {
        let mut c = Counters::new();
        let mut last = [0.0; COUNT];
        let mut t = 0.0;
        // Rising with a lower total mixed in and frames at odd times,
        // including a clock that steps back.
        for (i, gmv) in [100, 5_000, 4_000, 9_000_000, 9_000_001, 10, 9_500_000]
            .iter()
            .enumerate()
        {
            c.set(&snap(*gmv, 1.0), t, 200.0);
            for dt in [0.0, 17.0, 33.0, 90.0, 40.0, 180.0, 400.0] {
                let v = c.values(t + dt);
                for k in [GMV_USD_CENTS, UNIQUE_SHOPPERS, CARBON_KG, ORDERS] {
                    assert!(
                        v[k] >= last[k],
                        "step {i}, counter {k}: {} < {}",
                        v[k],
                        last[k]
                    );
                }
                last = v;
            }
            t += 200.0;
        }
        assert_eq!(last[GMV_USD_CENTS], 9_500_000.0);
    }

    #[test]
    fn a_big_jump_still_eases() {
        let mut c = Counters::new();
        c.set(&snap(0, 0.0), 0.0, 200.0);
        c.set(&snap(1_000_000_000_000, 0.0), 0.0, 200.0);
        let early = c.values(20.0)[GMV_USD_CENTS];
        assert!(early > 0.0 && early < 1_000_000_000_000.0);
        assert_eq!(c.values(1_000.0)[GMV_USD_CENTS], 1_000_000_000_000.0);
    }

    #[test]
    fn rate_may_fall_and_nonsense_is_contained() {
        let mut c = Counters::new();
        c.set(&snap(0, 120.0), 0.0, 200.0);
        c.set(&snap(0, 30.0), 0.0, 200.0);
        assert_eq!(c.values(1_000.0)[ORDERS_PER_MINUTE], 30.0);
        c.set(&snap(0, f64::NAN), 1_000.0, f64::NAN);
        assert_eq!(c.values(2_000.0)[ORDERS_PER_MINUTE], 0.0);
        assert!(c.values(f64::NAN).iter().all(|v| v.is_finite()));
    }
}
