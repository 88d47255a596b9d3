//! Where the sales are: a decaying count of recent orders by buyer
//! longitude, which sets how fast the globe spins past each part of the
//! world. It lingers (down to [`SLOWEST`] of its normal speed) over the
//! longitudes where most orders land and hurries (up to [`FASTEST`]) over
//! empty ocean, so a viewer sees more of the sale without any jump.

use std::f64::consts::TAU;

const BINS: usize = 72;
/// Orders older than this count for less than 1/e.
const MEMORY_MS: f64 = 5.0 * 60_000.0;
/// How far a longitude's neighbours count towards it (the part of the
/// globe a viewer sees well), in degrees either side.
const REACH_DEG: f64 = 40.0;
pub const SLOWEST: f64 = 0.45;
pub const FASTEST: f64 = 1.6;

#[derive(Clone, Debug)]
pub struct Attention {
    bins: [f64; BINS],
    last_ms: Option<f64>,
    /// The interest of the busiest longitude. Decay scales every bin
    /// alike, so this only needs working out when orders are recorded.
    busiest: f64,
}

impl Default for Attention {
    fn default() -> Attention {
        Attention {
            bins: [0.0; BINS],
            last_ms: None,
            busiest: 0.0,
        }
    }
}

impl Attention {
    /// Counts orders landing at these longitudes (degrees) at `now_ms`.
    pub fn record(&mut self, lons: impl IntoIterator<Item = f64>, now_ms: f64) {
        if !now_ms.is_finite() {
            return;
        }
        self.decay_to(now_ms);
        for lon in lons.into_iter().filter(|l| l.is_finite()) {
            self.bins[bin(lon)] += 1.0;
        }
        self.busiest = (0..BINS)
            .map(|i| self.interest((i as f64 + 0.5) * 360.0 / BINS as f64 - 180.0))
            .fold(0.0, f64::max);
    }

    fn decay_to(&mut self, now_ms: f64) {
        let dt = self.last_ms.map_or(0.0, |last| (now_ms - last).max(0.0));
        self.last_ms = Some(self.last_ms.map_or(now_ms, |last| last.max(now_ms)));
        if dt > 0.0 {
            let k = (-dt / MEMORY_MS).exp();
            self.bins.iter_mut().for_each(|b| *b *= k);
            self.busiest *= k;
        }
    }

    /// How much of the recent sale lands within reach of `lon`, smoothly
    /// (a cosine window over the bins).
    fn interest(&self, lon: f64) -> f64 {
        let reach = REACH_DEG.to_radians();
        self.bins
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                let centre = (i as f64 + 0.5) * 360.0 / BINS as f64 - 180.0;
                let mut d = (centre - lon).to_radians().rem_euclid(TAU);
                if d > TAU / 2.0 {
                    d = TAU - d;
                }
                if d >= reach {
                    0.0
                } else {
                    count * 0.5 * (1.0 + (std::f64::consts::PI * d / reach).cos())
                }
            })
            .sum()
    }

    /// The spin speed, as a multiple of the normal one, while `lon` faces
    /// the viewer: 1 with no data, slower where the sale is.
    pub fn spin_factor(&self, lon: f64) -> f64 {
        if self.busiest <= 1e-9 || !lon.is_finite() {
            return 1.0;
        }
        let share = (self.interest(lon) / self.busiest).clamp(0.0, 1.0);
        FASTEST + (SLOWEST - FASTEST) * share
    }
}

fn bin(lon: f64) -> usize {
    let x = (lon + 180.0).rem_euclid(360.0) / 360.0;
    ((x * BINS as f64) as usize).min(BINS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_orders_no_bias() {
        let a = Attention::default();
        assert_eq!(a.spin_factor(0.0), 1.0);
        assert_eq!(a.spin_factor(f64::NAN), 1.0);
    }

    #[test]
    fn lingers_over_the_sale_and_hurries_over_the_ocean() {
        let mut a = Attention::default();
        // Most orders in East Asia, some in Europe, none mid-Pacific.
        a.record((0..900).map(|i| 110.0 + f64::from(i % 30)), 0.0);
        a.record((0..300).map(|i| f64::from(i % 20)), 0.0);
        let asia = a.spin_factor(120.0);
        let europe = a.spin_factor(10.0);
        let pacific = a.spin_factor(-150.0);
        assert!((asia - SLOWEST).abs() < 0.1, "{asia}");
        assert!(
            asia < europe && europe < pacific,
            "{asia} {europe} {pacific}"
        );
        assert_eq!(pacific, FASTEST);
        // Smooth: no step between neighbouring longitudes.
        for lon in -180..180 {
            let (x, y) = (
                a.spin_factor(f64::from(lon)),
                a.spin_factor(f64::from(lon) + 1.0),
            );
            assert!((x - y).abs() < 0.1, "{lon}: {x} -> {y}");
        }
    }

    #[test]
    fn old_orders_fade() {
        let mut a = Attention::default();
        a.record((0..100).map(|_| 0.0), 0.0);
        a.record((0..100).map(|_| 180.0), 30.0 * 60_000.0);
        // Half an hour later the new region dominates.
        assert!(a.spin_factor(180.0) < a.spin_factor(0.0));
        // Across the antimeridian both sides count.
        assert!((a.spin_factor(179.0) - a.spin_factor(-179.0)).abs() < 0.05);
    }
}
