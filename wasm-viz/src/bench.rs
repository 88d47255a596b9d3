//! `?bench=N`: a scene of N arcs always in flight and [`BENCH_RINGS`]
//! rings, made up here, so that a harness can measure the renderer alone,
//! without a server (docs/BENCHMARKS.md compares it with globe.gl on the
//! same scene). Arcs join land dots picked at random; each starts again
//! elsewhere when it ends, so the count never dips.

use crate::arcs::{ArcField, Limits, LiveArc, Ring, PALETTE, RING_MS, TRAIL};
use crate::geo::{GreatArc, Vec3};

/// The "points" of the benchmark's scene: rings kept alive at all times.
pub const BENCH_RINGS: usize = 2_000;

#[derive(Clone, Debug)]
pub struct Synthetic {
    arcs: usize,
    land: Vec<Vec3>,
    rng: u64,
    started: bool,
}

impl Synthetic {
    /// `land`: where arcs may start and end (unit vectors; the land dots).
    pub fn new(arcs: usize, land: Vec<Vec3>) -> Synthetic {
        Synthetic {
            arcs,
            land,
            rng: 0x9E37_79B9_7F4A_7C15,
            started: false,
        }
    }

    /// Caps that fit exactly this scene.
    pub fn limits(&self) -> Limits {
        Limits {
            target_active: self.arcs,
            max_active: self.arcs,
            max_pending: 0,
            max_rings: BENCH_RINGS,
        }
    }

    /// Refills `field` to the scene's counts at `now_ms`. The first fill
    /// spreads the arcs and rings over their lifetimes, so that they do
    /// not all start, land and end together.
    pub fn top_up(&mut self, field: &mut ArcField, now_ms: f64) {
        if self.land.is_empty() || !now_ms.is_finite() {
            return;
        }
        let spread = !self.started;
        self.started = true;
        // A pick of the same place twice is skipped; the bound on tries
        // keeps a land of one place from looping forever.
        let mut tries = 2 * self.arcs.saturating_sub(field.active().len());
        while field.active().len() < self.arcs && tries > 0 {
            tries -= 1;
            let arc = GreatArc::new(self.any_place(), self.any_place());
            if arc.is_degenerate() {
                continue;
            }
            let (color, weight) = self.look();
            let mut live = LiveArc::new(arc, color, weight, now_ms);
            if spread {
                live.born_ms -= self.unit() * live.travel_ms * (1.0 + TRAIL);
            }
            if !field.insert(live) {
                break;
            }
        }
        for _ in field.rings().len()..BENCH_RINGS {
            let (color, weight) = self.look();
            let age = if spread { self.unit() * RING_MS } else { 0.0 };
            field.insert_ring(Ring {
                center: self.any_place(),
                color,
                weight,
                born_ms: now_ms - age,
            });
        }
    }

    fn look(&mut self) -> ([f32; 3], f32) {
        let (_, hex) = PALETTE[(self.next() % PALETTE.len() as u64) as usize];
        let color = [16, 8, 0].map(|shift| ((hex >> shift) & 0xFF) as f32 / 255.0);
        (color, 0.75 + 0.5 * self.unit() as f32)
    }

    fn any_place(&mut self) -> Vec3 {
        let i = (self.next() % self.land.len() as u64) as usize;
        self.land[i]
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// splitmix64: small, fast, and good enough to scatter arcs.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameData;
    use crate::geo::lat_lon_to_unit;
    use crate::land;
    use crate::scene::Scene;

    fn land() -> Vec<Vec3> {
        land::parse_land(land::LAND_MASK_BIN)
            .expect("land")
            .iter()
            .map(|p| p.unit())
            .collect()
    }

    #[test]
    fn keeps_exactly_n_arcs_and_the_rings_alive_over_time() {
        let mut bench = Synthetic::new(1_000, land());
        let mut field = ArcField::new();
        field.set_limits(bench.limits());
        let mut births = Vec::new();
        for step in 0..600 {
            let now = 10_000.0 + f64::from(step) * 16.7;
            field.update(now);
            bench.top_up(&mut field, now);
            assert_eq!(field.active().len(), 1_000, "step {step}");
            assert_eq!(field.rings().len(), BENCH_RINGS, "step {step}");
            if step == 0 {
                births = field.active().iter().map(|a| a.born_ms).collect();
            }
        }
        // The first fill is spread out: arcs are at every stage of life.
        let young = births.iter().filter(|&&b| b > 10_000.0 - 500.0).count();
        assert!(
            (50..400).contains(&young),
            "{young} of 1000 born in the last 0.5 s"
        );
    }

    #[test]
    fn a_bench_scene_draws_every_arc_and_ring_in_sight() {
        let mut scene = Scene::new(0.0117);
        scene.start_bench(5_000, land());
        scene.advance(1_000.0);
        assert_eq!(scene.arcs().active().len(), 5_000);
        let mut out = FrameData::default();
        scene.build_frame(1_000.0, &mut out);
        let eye = scene.camera().view().eye_model;
        let in_sight = scene
            .arcs()
            .active()
            .iter()
            .filter(|a| {
                let (head, tail) = a.head_tail(1_000.0);
                !crate::frame::behind_the_globe(&a.arc, tail, head, eye)
            })
            .count();
        assert_eq!(out.trail_count(), in_sight);
        assert!(in_sight > 2_500, "{in_sight} of 5000 in sight");
        assert_eq!(out.ring_count(), BENCH_RINGS);
        assert!(out.trails.iter().all(|v| v.is_finite()));
        // Bench mode ignores the caps a live scene has.
        assert!(out.trail_count() > crate::arcs::MAX_ACTIVE);
    }

    #[test]
    fn nowhere_to_go_means_no_arcs_and_no_hang() {
        let mut bench = Synthetic::new(10, Vec::new());
        let mut field = ArcField::new();
        bench.top_up(&mut field, 0.0);
        assert!(field.active().is_empty());
        // One place only: every arc would be degenerate.
        let mut bench = Synthetic::new(10, vec![lat_lon_to_unit(0.0, 0.0)]);
        bench.top_up(&mut field, 0.0);
        assert!(field.active().is_empty());
    }
}
