//! Adaptive quality: the page reports every frame's time, and the governor
//! steps the drawing down a tier when the last two seconds did not hold
//! [`TARGET_FPS`], and back up after a calm spell at full speed. A tier
//! caps the device pixel ratio (the drawing buffer shrinks and the browser
//! scales it up), the segments of an arc trail, the share of arcs drawn,
//! and the density of the land's dots (and whether coastlines are drawn).
//! A step back up that proves too much is not retried for twice as long,
//! so a screen at its limit does not flicker between two tiers.

/// What one tier draws.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tier {
    /// The largest device pixel ratio drawn (below 1: fewer pixels than
    /// the screen has).
    pub max_dpr: f64,
    pub trail_segments: u32,
    /// Share of the arc caps (`arcs::Limits`) kept.
    pub arc_share: f64,
    /// Land drawn from the coarser lattice: half the dots, and no
    /// coastlines.
    pub coarse_dots: bool,
}

/// Best first. A new page starts at [`START_TIER`].
pub const TIERS: [Tier; 5] = [
    Tier {
        max_dpr: 2.0,
        trail_segments: 24,
        arc_share: 1.0,
        coarse_dots: false,
    },
    Tier {
        max_dpr: 1.5,
        trail_segments: 16,
        arc_share: 1.0,
        coarse_dots: false,
    },
    Tier {
        max_dpr: 1.0,
        trail_segments: 12,
        arc_share: 0.75,
        coarse_dots: false,
    },
    Tier {
        max_dpr: 0.75,
        trail_segments: 8,
        arc_share: 0.5,
        coarse_dots: true,
    },
    Tier {
        max_dpr: 0.5,
        trail_segments: 6,
        arc_share: 0.35,
        coarse_dots: true,
    },
];
pub const START_TIER: usize = 1;
/// Below this, a window counts as too slow (GitHub's globe uses the same).
pub const TARGET_FPS: f64 = 55.0;
/// At or above this a window counts as calm.
const CALM_FPS: f64 = 58.0;
const WINDOW_MS: f64 = 2_000.0;
/// Calm time needed before trying a better tier; doubles after a failed
/// try, up to [`MAX_UP_WAIT_MS`].
const UP_WAIT_MS: f64 = 10_000.0;
const MAX_UP_WAIT_MS: f64 = 160_000.0;
/// A gap longer than this (a hidden tab, a debugger, a stalled machine)
/// says nothing about drawing speed: the window starts again.
const MAX_GAP_MS: f64 = 250.0;

#[derive(Clone, Debug)]
pub struct Governor {
    tier: usize,
    fixed: bool,
    last_ms: Option<f64>,
    window_start_ms: f64,
    window_frames: u32,
    calm_ms: f64,
    up_wait_ms: f64,
    /// When the last step up happened, to notice it failing.
    stepped_up_at_ms: Option<f64>,
}

impl Default for Governor {
    fn default() -> Governor {
        Governor::new()
    }
}

impl Governor {
    pub fn new() -> Governor {
        Governor {
            tier: START_TIER,
            fixed: false,
            last_ms: None,
            window_start_ms: 0.0,
            window_frames: 0,
            calm_ms: 0.0,
            up_wait_ms: UP_WAIT_MS,
            stepped_up_at_ms: None,
        }
    }

    /// A governor that stays at `tier` (benchmarks, `?quality=N`).
    pub fn fixed(tier: usize) -> Governor {
        Governor {
            tier: tier.min(TIERS.len() - 1),
            fixed: true,
            ..Governor::new()
        }
    }

    pub fn tier_index(&self) -> usize {
        self.tier
    }

    pub fn tier(&self) -> Tier {
        TIERS[self.tier]
    }

    /// Records a frame drawn at `now_ms`; returns the new tier when it
    /// changes.
    pub fn frame(&mut self, now_ms: f64) -> Option<usize> {
        if self.fixed || !now_ms.is_finite() {
            return None;
        }
        let last = self.last_ms.replace(now_ms);
        let gap = last.map(|l| now_ms - l);
        if !gap.is_some_and(|g| (0.0..=MAX_GAP_MS).contains(&g)) {
            self.window_start_ms = now_ms;
            self.window_frames = 0;
            return None;
        }
        self.window_frames += 1;
        let span = now_ms - self.window_start_ms;
        if span < WINDOW_MS {
            return None;
        }
        let fps = f64::from(self.window_frames) * 1000.0 / span;
        self.window_start_ms = now_ms;
        self.window_frames = 0;
        if fps < TARGET_FPS {
            self.calm_ms = 0.0;
            // A step up that could not hold: wait longer before the next.
            if self
                .stepped_up_at_ms
                .is_some_and(|at| now_ms - at <= 2.0 * WINDOW_MS + MAX_GAP_MS)
            {
                self.up_wait_ms = (self.up_wait_ms * 2.0).min(MAX_UP_WAIT_MS);
            }
            self.stepped_up_at_ms = None;
            if self.tier + 1 < TIERS.len() {
                self.tier += 1;
                return Some(self.tier);
            }
            return None;
        }
        if fps >= CALM_FPS {
            self.calm_ms += span;
            if self.calm_ms >= self.up_wait_ms && self.tier > 0 {
                self.calm_ms = 0.0;
                self.tier -= 1;
                self.stepped_up_at_ms = Some(now_ms);
                return Some(self.tier);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds frames every `interval_ms` for `ms`; returns the changes.
    fn run(g: &mut Governor, start_ms: f64, ms: f64, interval_ms: f64) -> (f64, Vec<usize>) {
        let mut changes = Vec::new();
        let mut t = start_ms;
        while t < start_ms + ms {
            t += interval_ms;
            if let Some(tier) = g.frame(t) {
                changes.push(tier);
            }
        }
        (t, changes)
    }

    #[test]
    fn steps_down_while_slow_and_stops_at_the_last_tier() {
        let mut g = Governor::new();
        // 20 fps: one step down every two-second window.
        let (_, changes) = run(&mut g, 0.0, 60_000.0, 50.0);
        assert_eq!(changes, vec![2, 3, 4]);
        assert_eq!(g.tier(), TIERS[4]);
    }

    #[test]
    fn a_fast_screen_climbs_to_the_best_tier_after_calm_spells() {
        let mut g = Governor::new();
        let (t, changes) = run(&mut g, 0.0, 9_000.0, 16.7);
        assert!(changes.is_empty(), "no step before 10 s of calm");
        let (_, changes) = run(&mut g, t, 5_000.0, 16.7);
        assert_eq!(changes, vec![0]);
        assert_eq!(g.tier().max_dpr, 2.0);
    }

    #[test]
    fn a_step_up_that_fails_is_retried_less_often() {
        let mut g = Governor::new();
        // Holds 60 fps at tier 1, but tier 0 is too much: it drops back,
        // and the next try waits 20 s instead of 10.
        let (t, changes) = run(&mut g, 0.0, 12_000.0, 16.7);
        assert_eq!(changes, vec![0]);
        let (t, changes) = run(&mut g, t, 2_100.0, 30.0);
        assert_eq!(changes, vec![1]);
        let (t, changes) = run(&mut g, t, 15_000.0, 16.7);
        assert!(changes.is_empty(), "{changes:?}");
        let (_, changes) = run(&mut g, t, 6_000.0, 16.7);
        assert_eq!(changes, vec![0]);
    }

    #[test]
    fn pauses_and_stalls_are_not_slowness() {
        let mut g = Governor::new();
        let mut t = 0.0;
        for _ in 0..100 {
            // A frame, then a hidden tab for a second: never a full window.
            t += 16.7;
            assert_eq!(g.frame(t), None);
            t += 1_000.0;
            assert_eq!(g.frame(t), None);
        }
        assert_eq!(g.tier_index(), START_TIER);
        assert_eq!(g.frame(f64::NAN), None);
    }

    #[test]
    fn a_fixed_governor_never_moves() {
        let mut g = Governor::fixed(9);
        assert_eq!(g.tier_index(), TIERS.len() - 1);
        let (_, changes) = run(&mut g, 0.0, 30_000.0, 100.0);
        assert!(changes.is_empty());
    }

    /// The light each column of pixels gets from a straight trail `width`
    /// device pixels wide, at `angle` from the rows (0 to 45°) and `offset`
    /// from a pixel centre, as the rasterizer and fragment shader see it:
    /// the pixels whose centres fall inside the ribbon (`reach` to each
    /// side), each lit by `light(distance)`.
    fn column_light(reach: f32, light: impl Fn(f32) -> f32, angle: f32, offset: f32) -> f32 {
        let cos = angle.to_radians().cos();
        (-8..=8)
            .map(|row| (row as f32 - offset) * cos)
            .filter(|d| d.abs() < reach)
            .map(|d| light(d.abs()))
            .sum()
    }

    /// Whether trails of a profile are drawn as unbroken lines: at every
    /// angle, every column a trail crosses gets light, and about the same
    /// wherever the line falls between pixel centres (a dotted line is
    /// runs of lit and of dark columns). `profile` gives, for a trail at
    /// `axis_cos` to the rows, how far the ribbon reaches to each side
    /// and its light at a distance.
    fn unbroken<L: Fn(f32) -> f32 + Copy>(profile: impl Fn(f32) -> (f32, L)) -> Result<(), String> {
        for angle in (0..=45).step_by(5).map(|a| a as f32) {
            let (reach, light) = profile(angle.to_radians().cos());
            let columns: Vec<f32> = (0..40)
                .map(|i| column_light(reach, light, angle, i as f32 / 40.0))
                .collect();
            let (lo, hi) = columns
                .iter()
                .fold((f32::MAX, 0.0f32), |(lo, hi), &c| (lo.min(c), hi.max(c)));
            if lo <= 0.0 || hi > 1.1 * lo {
                return Err(format!("at {angle}°: columns get {lo} to {hi}"));
            }
        }
        Ok(())
    }

    #[test]
    fn every_tier_draws_trails_as_unbroken_lines() {
        use crate::arcs::{weight, ArcField};
        use crate::camera::{Camera, Viewport};
        use crate::frame::{build, FrameData};
        use crate::shaders::{trail_light, trail_profile, TAIL_WIDTH};
        let mut frame = FrameData::default();
        for (i, tier) in TIERS.iter().enumerate() {
            for (w, h, dpr) in [
                (1280.0, 720.0, 1.0),
                (1920.0, 1080.0, 1.0),
                (3840.0, 2160.0, 1.0),
                (390.0, 844.0, 3.0),
            ] {
                // The line width the frame asks for at this tier.
                let mut cam = Camera::new();
                cam.set_viewport(Viewport::new(w, h, dpr).with_max_dpr(tier.max_dpr));
                build(&cam.view(), &ArcField::new(), 0.0, 0.0117, &mut frame);
                // From a $0 order's tail to the largest order's head.
                let light = [weight(0), weight(u64::MAX)];
                for width in [TAIL_WIDTH, 0.5, 1.0]
                    .iter()
                    .flat_map(|s| light.map(|l| frame.line_width_px * l * s))
                {
                    let result = unbroken(|axis_cos| {
                        let (core, ramp) = trail_profile(width, axis_cos);
                        (0.5 * (core + ramp), move |d| trail_light(d, core, ramp))
                    });
                    assert!(
                        result.is_ok(),
                        "tier {i} at {w}x{h}@{dpr}, width {width} px: {result:?}"
                    );
                    // A column gets the light of the trail's own width.
                    for angle in [0.0f32, 30.0] {
                        let cos = angle.to_radians().cos();
                        let (core, ramp) = trail_profile(width, cos);
                        let reach = 0.5 * (core + ramp);
                        let column =
                            column_light(reach, |d| trail_light(d, core, ramp), angle, 0.3);
                        assert!(
                            (column * cos - core).abs() < 0.1 * core,
                            "{column} vs {core}"
                        );
                    }
                }
            }
        }
        // What the tiers drew before: a ribbon exactly the trail's width,
        // softened towards its edges. Under about a pixel and a half it
        // breaks into dots, as the two cheapest tiers showed.
        let before = |width: f32| {
            let half = 0.5 * width;
            let smooth = |x: f32| {
                let t = ((x - 0.35) / 0.65).clamp(0.0, 1.0);
                t * t * (3.0 - 2.0 * t)
            };
            unbroken(|_| (half, move |d: f32| 1.0 - smooth(d / half)))
        };
        assert!(before(0.5 * 0.75 * TAIL_WIDTH).is_err());
        assert!(before(1.0).is_err());
    }

    #[test]
    fn tiers_only_get_cheaper() {
        for pair in TIERS.windows(2) {
            assert!(pair[1].max_dpr < pair[0].max_dpr);
            assert!(pair[1].trail_segments < pair[0].trail_segments);
            assert!(pair[1].arc_share <= pair[0].arc_share);
            assert!(pair[1].coarse_dots >= pair[0].coarse_dots);
        }
        assert_eq!(
            TIERS[START_TIER].trail_segments,
            crate::shaders::TRAIL_SEGMENTS
        );
    }
}
