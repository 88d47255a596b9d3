//! Sales arcs in flight and the rings where they land: pacing, lifetimes
//! and the caps that keep a phone smooth and a kiosk's memory flat.
//!
//! Each snapshot's orders are spread evenly over the next tick, so arcs
//! flow instead of pulsing at the tick rate. Everything here is bounded by
//! [`Limits`] (by default at most [`MAX_PENDING`] waiting, [`MAX_ACTIVE`]
//! in flight and [`MAX_RINGS`] landing rings), whatever the server sends;
//! the page's quality governor lowers them on a slow screen.

use std::f64::consts::PI;

use livemap_wire::{Arc as WireArc, Channel};

use crate::geo::{lat_lon_to_unit, GreatArc, Vec3};

pub const MAX_ACTIVE: usize = 600;
pub const MAX_PENDING: usize = 600;
pub const MAX_RINGS: usize = 600;
/// Trail length as a fraction of the arc.
pub const TRAIL: f64 = 0.35;
/// How long a landing ring expands and fades.
pub const RING_MS: f64 = 1_500.0;
/// How many arcs in flight the pacing aims for: enough to feel busy, few
/// enough to stay legible. [`MAX_ACTIVE`] is the hard cap above it.
pub const TARGET_ACTIVE: usize = 360;
/// The caps on what is drawn. The quality governor (`quality.rs`) scales
/// them down on screens that cannot keep up; `?bench=N` raises them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How many arcs in flight the pacing aims for.
    pub target_active: usize,
    pub max_active: usize,
    pub max_pending: usize,
    pub max_rings: usize,
}

impl Limits {
    /// These caps times `share` (the quality governor's arc share), at
    /// least one of each.
    pub fn scaled(self, share: f64) -> Limits {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let scale = |n: usize| ((n as f64 * share).ceil() as usize).max(1);
        Limits {
            target_active: scale(self.target_active),
            max_active: scale(self.max_active),
            max_pending: scale(self.max_pending),
            max_rings: scale(self.max_rings),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            target_active: TARGET_ACTIVE,
            max_active: MAX_ACTIVE,
            max_pending: MAX_PENDING,
            max_rings: MAX_RINGS,
        }
    }
}

/// Roughly how long an arc lives; with [`TARGET_ACTIVE`] it sets how many
/// arcs per tick are started.
const TYPICAL_LIFE_MS: f64 = 2_400.0;

/// Channel colours as 0xRRGGBB: distinct hues that stay clean when added
/// on a dark globe. `web/style.css` repeats them for the legend (a test
/// keeps the two in step).
pub const PALETTE: [(Channel, u32); 5] = [
    (Channel::OnlineStore, 0x3DDBC4),
    (Channel::Pos, 0xFFB547),
    (Channel::MobileApp, 0xFF5E9C),
    (Channel::Social, 0xA48BFF),
    (Channel::Other, 0x6FB6FF),
];

pub fn channel_rgb(channel: Channel) -> [f32; 3] {
    let hex = PALETTE
        .iter()
        .find(|(c, _)| *c == channel)
        .map_or(0xFFFFFF, |(_, hex)| *hex);
    [16, 8, 0].map(|shift| ((hex >> shift) & 0xFF) as f32 / 255.0)
}

/// How long the head takes from shop to buyer: longer for longer arcs, but
/// compressed so that a cross-town order is still visible.
pub fn travel_ms(angle: f64) -> f64 {
    900.0 + 1_500.0 * (angle.clamp(0.0, PI) / PI).sqrt()
}

/// Brightness/width weight from order value: $1 -> 0.75, $100 -> ~1.0,
/// $10,000 and up -> 1.25.
pub fn weight(usd_cents: u64) -> f32 {
    let dollars = (usd_cents as f64 / 100.0).max(1.0);
    (0.75 + 0.125 * dollars.log10()).clamp(0.75, 1.25) as f32
}

/// One arc in flight.
#[derive(Clone, Copy, Debug)]
pub struct LiveArc {
    pub arc: GreatArc,
    pub color: [f32; 3],
    pub weight: f32,
    pub born_ms: f64,
    pub travel_ms: f64,
    landed: bool,
}

impl LiveArc {
    pub fn new(arc: GreatArc, color: [f32; 3], weight: f32, born_ms: f64) -> LiveArc {
        LiveArc {
            arc,
            color,
            weight,
            born_ms,
            travel_ms: travel_ms(arc.angle),
            landed: false,
        }
    }

    /// Arc parameter of the head and of the end of the trail at `now_ms`,
    /// both in [0, 1]. The head reaches the buyer after `travel_ms`; the
    /// trail then drains into the landing point.
    pub fn head_tail(&self, now_ms: f64) -> (f64, f64) {
        let u = ((now_ms - self.born_ms) / self.travel_ms).max(0.0);
        (u.min(1.0), (u - TRAIL).clamp(0.0, 1.0))
    }

    /// The head glow: full while travelling, gone shortly after landing.
    pub fn head_alpha(&self, now_ms: f64) -> f64 {
        let u = ((now_ms - self.born_ms) / self.travel_ms).max(0.0);
        let fade_in = (u / 0.04).min(1.0);
        let fade_out = (1.0 - (u - 1.0) / 0.06).clamp(0.0, 1.0);
        fade_in * fade_out
    }

    pub fn lands_at_ms(&self) -> f64 {
        self.born_ms + self.travel_ms
    }

    pub fn ends_at_ms(&self) -> f64 {
        self.born_ms + self.travel_ms * (1.0 + TRAIL)
    }
}

/// An expanding ring where an order landed.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    pub center: Vec3,
    pub color: [f32; 3],
    pub weight: f32,
    pub born_ms: f64,
}

impl Ring {
    /// 0 when it appears, 1 when it is gone.
    pub fn progress(&self, now_ms: f64) -> f64 {
        ((now_ms - self.born_ms) / RING_MS).clamp(0.0, 1.0)
    }
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    arc: GreatArc,
    color: [f32; 3],
    weight: f32,
    spawn_ms: f64,
}

/// Counts for diagnostics and tests; they only grow, as u64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArcStats {
    pub received: u64,
    pub spawned: u64,
    /// Thinned out, over a cap, or too late to be worth drawing.
    pub dropped: u64,
}

#[derive(Clone, Debug, Default)]
pub struct ArcField {
    pending: Vec<Pending>,
    active: Vec<LiveArc>,
    rings: Vec<Ring>,
    /// Where the last snapshot's schedule ends, so the next one follows on.
    schedule_end_ms: f64,
    tick_ms: f64,
    stats: ArcStats,
    limits: Limits,
    /// For people who ask for reduced motion: arcs appear whole and fade,
    /// without a travelling head or landing rings.
    still: bool,
}

impl ArcField {
    pub fn new() -> ArcField {
        ArcField::default()
    }

    pub fn active(&self) -> &[LiveArc] {
        &self.active
    }

    pub fn rings(&self) -> &[Ring] {
        &self.rings
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn stats(&self) -> ArcStats {
        self.stats
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn set_reduced_motion(&mut self, still: bool) {
        self.still = still;
    }

    /// New caps; what is already over them is dropped at once (the oldest
    /// arcs and rings first, as they are nearly done).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        for (len, cap) in [
            (self.active.len(), limits.max_active),
            (self.rings.len(), limits.max_rings),
            (self.pending.len(), limits.max_pending),
        ] {
            self.stats.dropped += len.saturating_sub(cap) as u64;
        }
        let over = self.active.len().saturating_sub(limits.max_active);
        self.active.drain(..over);
        let over = self.rings.len().saturating_sub(limits.max_rings);
        self.rings.drain(..over);
        let over = self.pending.len().saturating_sub(limits.max_pending);
        self.pending.drain(..over);
    }

    /// Puts an arc in flight now, if the cap allows (the bench's
    /// synthetic arcs; live ones come through [`ArcField::schedule`]).
    pub fn insert(&mut self, arc: LiveArc) -> bool {
        let room = self.active.len() < self.limits.max_active;
        if room {
            self.active.push(arc);
        }
        room
    }

    /// Adds a ring, if the cap allows.
    pub fn insert_ring(&mut self, ring: Ring) {
        self.push_ring(ring.center, ring.color, ring.weight, ring.born_ms);
    }

    /// Queues a snapshot's arcs to start evenly over the next `tick_ms`,
    /// thinning them evenly when there are more than the caps can show.
    pub fn schedule(&mut self, arcs: &[WireArc], now_ms: f64, tick_ms: f64) {
        let tick = if tick_ms.is_finite() {
            tick_ms.clamp(50.0, 5_000.0)
        } else {
            200.0
        };
        self.tick_ms = tick;
        self.stats.received += arcs.len() as u64;
        if arcs.is_empty() || !now_ms.is_finite() {
            self.stats.dropped += arcs.len() as u64;
            return;
        }
        let limits = self.limits;
        let budget = ((limits.target_active as f64 * tick / TYPICAL_LIFE_MS).ceil() as usize)
            .clamp(1, limits.max_pending.max(1));
        let keep = arcs.len().min(budget);
        self.stats.dropped += (arcs.len() - keep) as u64;
        let start = self.schedule_end_ms.clamp(now_ms, now_ms + tick);
        let step = tick / keep as f64;
        for i in 0..keep {
            // Even stride over the snapshot, which is in event-time order.
            let a = &arcs[i * arcs.len() / keep];
            self.pending.push(Pending {
                arc: GreatArc::new(
                    lat_lon_to_unit(f64::from(a.from.lat), f64::from(a.from.lon)),
                    lat_lon_to_unit(f64::from(a.to.lat), f64::from(a.to.lon)),
                ),
                color: channel_rgb(a.channel),
                weight: weight(a.usd_cents),
                spawn_ms: start + (i as f64 + 0.5) * step,
            });
        }
        self.schedule_end_ms = start + tick;
        if self.pending.len() > limits.max_pending {
            let excess = self.pending.len() - limits.max_pending;
            self.pending.drain(..excess);
            self.stats.dropped += excess as u64;
        }
    }

    /// Starts due arcs, lands arrived ones and retires finished ones.
    pub fn update(&mut self, now_ms: f64) {
        if !now_ms.is_finite() {
            return;
        }
        // Arcs whose start was missed by more than this (a hidden tab, a
        // stalled frame) are dropped rather than released in one burst.
        let too_late = now_ms - 2.0 * self.tick_ms.max(200.0);
        let mut i = 0;
        while i < self.pending.len() {
            let p = self.pending[i];
            if p.spawn_ms > now_ms {
                i += 1;
                continue;
            }
            self.pending.swap_remove(i);
            if p.spawn_ms < too_late {
                self.stats.dropped += 1;
            } else if p.arc.is_degenerate() {
                // Shop and buyer in the same place: just the landing ring.
                self.stats.spawned += 1;
                self.push_ring(p.arc.end(), p.color, p.weight, p.spawn_ms);
            } else if self.insert(self.new_live(p)) {
                self.stats.spawned += 1;
            } else {
                self.stats.dropped += 1;
            }
        }
        for i in 0..self.active.len() {
            let a = &mut self.active[i];
            if !a.landed && now_ms >= a.lands_at_ms() {
                a.landed = true;
                let (center, color, weight, at) = (a.arc.end(), a.color, a.weight, a.lands_at_ms());
                self.push_ring(center, color, weight, at);
            }
        }
        self.active.retain(|a| a.ends_at_ms() > now_ms);
        self.rings.retain(|r| r.born_ms + RING_MS > now_ms);
    }

    fn new_live(&self, p: Pending) -> LiveArc {
        let mut live = LiveArc::new(p.arc, p.color, p.weight, p.spawn_ms);
        if self.still {
            // Born a travel time ago: already arrived, the trail draining.
            live.born_ms -= live.travel_ms;
            live.landed = true;
        }
        live
    }

    fn push_ring(&mut self, center: Vec3, color: [f32; 3], weight: f32, born_ms: f64) {
        if self.still {
            return;
        }
        if self.rings.len() < self.limits.max_rings {
            self.rings.push(Ring {
                center,
                color,
                weight,
                born_ms,
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use livemap_wire::LatLon;

    pub(crate) fn order(from: (f32, f32), to: (f32, f32), channel: Channel) -> WireArc {
        WireArc {
            from: LatLon {
                lat: from.0,
                lon: from.1,
            },
            to: LatLon {
                lat: to.0,
                lon: to.1,
            },
            usd_cents: 5_000,
            at_ms: 0,
            channel,
        }
    }

    fn toronto_to_austin(n: usize) -> Vec<WireArc> {
        vec![order((43.65, -79.38), (30.27, -97.74), Channel::OnlineStore); n]
    }

    #[test]
    fn arcs_are_spread_over_the_tick() {
        let mut f = ArcField::new();
        f.schedule(&toronto_to_austin(10), 1_000.0, 200.0);
        assert_eq!(f.pending_len(), 10);
        let mut started = Vec::new();
        for ms in (1_000..=1_200).step_by(10) {
            f.update(f64::from(ms));
            started.push(f.active().len());
        }
        // Not all at once: about one every 20 ms.
        assert_eq!(started[0], 0);
        assert_eq!(started[10], 5);
        assert_eq!(*started.last().expect("samples"), 10);
        // The next snapshot follows on where this one's schedule ended.
        f.schedule(&toronto_to_austin(1), 1_150.0, 200.0);
        f.update(1_250.0);
        assert_eq!(f.active().len(), 10);
        f.update(1_300.0);
        assert_eq!(f.active().len(), 11);
    }

    #[test]
    fn head_travels_lands_a_ring_and_the_trail_drains() {
        let mut f = ArcField::new();
        f.schedule(&toronto_to_austin(1), 0.0, 200.0);
        f.update(100.0);
        let a = f.active()[0];
        assert_eq!(a.born_ms, 100.0);
        let (head, tail) = a.head_tail(a.born_ms + a.travel_ms / 2.0);
        assert!((head - 0.5).abs() < 1e-12 && (tail - 0.15).abs() < 1e-12);
        assert!(f.rings().is_empty());
        f.update(a.lands_at_ms() + 1.0);
        assert_eq!(f.rings().len(), 1);
        let ring = f.rings()[0];
        assert!((ring.center - lat_lon_to_unit(30.27, -97.74)).length() < 1e-6);
        assert_eq!(ring.born_ms, a.lands_at_ms());
        let (head, tail) = a.head_tail(a.lands_at_ms() + a.travel_ms * 0.2);
        assert!(head == 1.0 && tail > 0.8);
        assert!(a.head_alpha(a.lands_at_ms() + a.travel_ms * 0.2) == 0.0);
        f.update(a.ends_at_ms() + 1.0);
        assert!(f.active().is_empty());
        f.update(a.lands_at_ms() + RING_MS + 1.0);
        assert!(f.rings().is_empty());
    }

    #[test]
    fn a_flood_is_thinned_to_the_target() {
        let mut f = ArcField::new();
        let mut t = 0.0;
        let mut peak = 0;
        for _ in 0..200 {
            f.schedule(&toronto_to_austin(5_000), t, 200.0);
            for _ in 0..12 {
                t += 16.7;
                f.update(t);
                peak = peak.max(f.active().len());
            }
        }
        assert!(peak <= TARGET_ACTIVE + TARGET_ACTIVE / 10, "peak {peak}");
        assert!(peak > TARGET_ACTIVE / 2, "peak {peak}");
        let s = f.stats();
        assert_eq!(s.received, 200 * 5_000);
        assert!(s.dropped > s.spawned);
    }

    #[test]
    fn hard_caps_hold_when_snapshots_come_too_fast() {
        // A snapshot every frame, each claiming a 200 ms tick: far more
        // than the pacing budget, so only the caps stand in the way.
        let mut f = ArcField::new();
        let mut t = 0.0;
        let mut peak = 0;
        for _ in 0..2_000 {
            f.schedule(&toronto_to_austin(1_000), t, 200.0);
            t += 16.7;
            f.update(t);
            peak = peak.max(f.active().len());
            assert!(f.active().len() <= MAX_ACTIVE);
            assert!(f.pending_len() <= MAX_PENDING);
            assert!(f.rings().len() <= MAX_RINGS);
        }
        assert_eq!(peak, MAX_ACTIVE);
    }

    #[test]
    fn a_hidden_tab_does_not_release_a_burst() {
        let mut f = ArcField::new();
        for i in 0..50 {
            f.schedule(&toronto_to_austin(10), f64::from(i) * 200.0, 200.0);
        }
        // No frames for 10 s, then one frame.
        f.update(10_000.0);
        assert!(f.active().len() <= 20, "{}", f.active().len());
        assert!(f.pending_len() <= MAX_PENDING);
    }

    #[test]
    fn same_place_orders_only_ring() {
        let mut f = ArcField::new();
        f.schedule(
            &[order((51.5, -0.12), (51.5, -0.12), Channel::Pos)],
            0.0,
            200.0,
        );
        f.update(150.0);
        assert!(f.active().is_empty());
        assert_eq!(f.rings().len(), 1);
        assert_eq!(f.stats().spawned, 1);
    }

    #[test]
    fn palette_and_weights() {
        for c in Channel::ALL {
            let rgb = channel_rgb(c);
            assert!(rgb.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(rgb.iter().any(|v| *v > 0.8), "{c:?} should be bright");
        }
        let distinct: std::collections::HashSet<u32> = PALETTE.iter().map(|(_, h)| *h).collect();
        assert_eq!(distinct.len(), Channel::ALL.len());
        assert!(weight(100) < weight(10_000) && weight(10_000) < weight(1_000_000));
        assert_eq!(weight(0), 0.75);
        assert_eq!(weight(u64::MAX), 1.25);
        assert!(travel_ms(0.1) < travel_ms(2.0));
    }
}
