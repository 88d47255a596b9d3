//! Arc sampling and coarsening: which orders the browsers get to draw, and
//! how precisely.
//!
//! Coordinates are snapped to the centre of a roughly equal-area grid of
//! 0.1° of latitude (11.1 km) by as many cells of longitude as fit in that
//! row at about 11 km each (`livemap_wire::grid`), so no coordinate that
//! leaves the server is finer than about 10 km, at any latitude.
//!
//! Sampling is per tick and bounded. Each destination region (a 2° cell)
//! keeps a small uniform reservoir; at the end of the tick regions are
//! drawn with weight sqrt(orders in the region), so a megacity still shows
//! more arcs than a town, but not so many that the rest of the world
//! disappears.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

use livemap_wire::{Arc, Channel, LatLon};

/// How many arcs each region keeps per tick before the final draw.
const REGION_RESERVOIR: usize = 4;
/// Size of a sampling region in degrees.
const REGION_DEG: f64 = 2.0;

// The grid lives with the wire format, which can only carry its cells.
pub use livemap_wire::grid::{coarsen, is_coarsened};

/// One order that could be drawn, with precise coordinates (server only).
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub shop: (f64, f64),
    pub buyer: (f64, f64),
    pub usd_cents: u64,
    pub at_ms: i64,
    pub channel: Channel,
}

struct Region {
    seen: u64,
    kept: Vec<Candidate>,
}

/// Collects candidates during a tick and draws the tick's sample.
pub struct ArcSampler {
    per_tick: usize,
    regions: HashMap<(i32, i32), Region>,
    rng: SmallRng,
}

impl std::fmt::Debug for ArcSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArcSampler")
            .field("per_tick", &self.per_tick)
            .field("regions", &self.regions.len())
            .finish()
    }
}

impl ArcSampler {
    pub fn new(per_tick: usize, seed: u64) -> Self {
        ArcSampler {
            per_tick,
            regions: HashMap::new(),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub fn offer(&mut self, c: Candidate) {
        let key = (
            ((c.buyer.0 + 90.0) / REGION_DEG).floor() as i32,
            ((c.buyer.1 + 180.0) / REGION_DEG).floor() as i32,
        );
        let region = self.regions.entry(key).or_insert_with(|| Region {
            seen: 0,
            kept: Vec::with_capacity(REGION_RESERVOIR),
        });
        region.seen += 1;
        if region.kept.len() < REGION_RESERVOIR {
            region.kept.push(c);
        } else {
            // Reservoir sampling keeps a uniform sample of the region.
            let j = self.rng.random_range(0..region.seen) as usize;
            if j < REGION_RESERVOIR {
                region.kept[j] = c;
            }
        }
    }

    /// Draws at most `per_tick` arcs from this tick's candidates, oldest
    /// first, coarsened, and starts the next tick empty.
    pub fn take(&mut self) -> Vec<Arc> {
        // Efraimidis-Spirakis weighted sampling without replacement: each
        // kept arc gets key u^(1/w), and the largest keys win. A region's
        // weight sqrt(seen) is shared among the arcs it kept.
        let mut keyed: Vec<(f64, Candidate)> = Vec::new();
        for region in self.regions.values() {
            let w = (region.seen as f64).sqrt() / region.kept.len() as f64;
            for c in &region.kept {
                let u: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
                keyed.push((u.powf(1.0 / w), *c));
            }
        }
        self.regions.clear();
        let n = self.per_tick.min(keyed.len());
        if n < keyed.len() {
            keyed.select_nth_unstable_by(n, |a, b| b.0.total_cmp(&a.0));
            keyed.truncate(n);
        }
        let mut arcs: Vec<Arc> = keyed.into_iter().map(|(_, c)| to_wire(&c)).collect();
        arcs.sort_by_key(|a| a.at_ms);
        arcs
    }
}

fn to_wire(c: &Candidate) -> Arc {
    let point = |(lat, lon): (f64, f64)| {
        let (lat, lon) = coarsen(lat, lon);
        LatLon {
            lat: lat as f32,
            lon: lon as f32,
        }
    };
    Arc {
        from: point(c.shop),
        to: point(c.buyer),
        usd_cents: c.usd_cents,
        at_ms: c.at_ms,
        channel: c.channel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livemap_events::geo::great_circle_km;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn coarsening_moves_points_under_8_km_and_is_idempotent(lat in -90.0f64..=90.0, lon in -180.0f64..=180.0) {
            let (clat, clon) = coarsen(lat, lon);
            // Near the poles the cells are short slivers: allow the
            // diagonal of an 11 km cell there.
            let limit = if lat.abs() > 89.8 { 12.0 } else { 8.0 };
            prop_assert!(great_circle_km(lat, lon, clat, clon) < limit);
            prop_assert_eq!(coarsen(clat, clon), (clat, clon));
            prop_assert!(is_coarsened(clat as f32, clon as f32));
        }
    }

    #[test]
    fn grid_cells_are_about_ten_km_wide_everywhere() {
        for lat in [0.05, 30.05, 60.05, 80.05] {
            let (_, lon_a) = coarsen(lat, 10.0);
            let row = livemap_wire::grid::cell_of(lat, 0.0).row;
            let width = 360.0 / f64::from(livemap_wire::grid::cells_in_row(row));
            let (_, lon_b) = coarsen(lat, lon_a + width);
            let km = great_circle_km(lat, lon_a, lat, lon_b);
            assert!((10.0..12.0).contains(&km), "at {lat}°: {km} km");
        }
        // A point anywhere in a cell reads back as that cell's centre.
        assert_eq!(coarsen(30.2672, -97.7431), coarsen(30.2601, -97.7401));
        assert!(!is_coarsened(30.2672, -97.7431));
    }

    fn candidate(buyer: (f64, f64), at_ms: i64) -> Candidate {
        Candidate {
            shop: (43.65, -79.38),
            buyer,
            usd_cents: 100,
            at_ms,
            channel: Channel::OnlineStore,
        }
    }

    #[test]
    fn sample_is_bounded_ordered_and_coarsened() {
        let mut s = ArcSampler::new(50, 1);
        for i in 0..10_000 {
            s.offer(candidate(
                (-60.0 + (i % 120) as f64, -170.0 + (i % 340) as f64),
                1_000 - i,
            ));
        }
        let arcs = s.take();
        assert_eq!(arcs.len(), 50);
        assert!(arcs.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(arcs
            .iter()
            .all(|a| is_coarsened(a.to.lat, a.to.lon) && is_coarsened(a.from.lat, a.from.lon)));
        assert!(s.take().is_empty(), "each tick starts empty");
    }

    #[test]
    fn a_megacity_does_not_drown_the_rest() {
        let big = (40.71, -74.0);
        let towns: Vec<(f64, f64)> = (0..10)
            .map(|i| (-30.0 + 5.0 * i as f64, 20.0 + 7.0 * i as f64))
            .collect();
        let mut big_share = 0.0;
        let rounds = 200;
        for round in 0..rounds {
            let mut s = ArcSampler::new(20, round);
            for i in 0..1_000 {
                s.offer(candidate(big, i));
            }
            for (j, &t) in towns.iter().enumerate() {
                for i in 0..10 {
                    s.offer(candidate(t, (j * 10 + i) as i64));
                }
            }
            let arcs = s.take();
            let (clat, clon) = coarsen(big.0, big.1);
            let from_big = arcs
                .iter()
                .filter(|a| a.to.lat == clat as f32 && a.to.lon == clon as f32)
                .count();
            big_share += from_big as f64 / arcs.len() as f64;
        }
        let big_share = big_share / rounds as f64;
        // Drawn by volume it would be 91 %; the reservoir caps it at 4 arcs
        // of 20, and the rest go to the towns.
        assert!(big_share < 0.5, "megacity share {big_share}");
        assert!(big_share > 0.05, "megacity still shows: {big_share}");
    }
}
