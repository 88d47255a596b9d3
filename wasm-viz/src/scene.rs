//! Everything the page shows, without the browser: snapshots in, camera and
//! arcs advanced, frame data and the panels' board out. The wasm `Globe` is
//! this plus a GL renderer; tests drive this directly.

use livemap_wire::{DecodeError, Snapshot};

use crate::arcs::{ArcField, Limits};
use crate::attention::Attention;
use crate::bench::Synthetic;
use crate::board::Board;
use crate::camera::{Camera, Viewport};
use crate::counters::{self, Counters};
use crate::frame::{self, FrameData};
use crate::geo::Vec3;
use crate::moments::Moments;
use crate::quality::Governor;

/// Used when a snapshot does not say (`tick_ms` 0).
pub const DEFAULT_TICK_MS: f64 = 200.0;
/// Root offset plus file identifier: nothing shorter can be a snapshot.
const MIN_SNAPSHOT_BYTES: usize = 8;

#[derive(Clone, Debug)]
pub struct Scene {
    camera: Camera,
    arcs: ArcField,
    counters: Counters,
    board: Board,
    version: Option<u64>,
    /// The version of the last keyframe applied: what a long-poll asks
    /// past (`k`), so that the server sends lists only when they are new.
    keyframe_version: Option<u64>,
    stale: bool,
    /// Browsers watching now, as the last snapshot said.
    viewers: u64,
    /// First sales and milestones: marks over the globe, announcements
    /// for the page.
    moments: Moments,
    /// Anomaly flags the operator shows the public (usually none).
    alerts: Vec<String>,
    tick_ms: f64,
    dot_spacing: f64,
    /// `?bench=N`: made-up arcs instead of a server's.
    bench: Option<Synthetic>,
    /// Which `frame::layer`s are drawn.
    layers: u32,
    trail_segments: u32,
    coarse_dots: bool,
    /// Set for profiling (`?segments=N`): wins over the quality tier's.
    segments_override: Option<u32>,
    quality: Governor,
    attention: Attention,
    /// Wall-clock time (ms since the Unix epoch), for day and night.
    utc_ms: Option<f64>,
    /// The viewport the page reports; the camera's is this at the
    /// quality tier's pixel ratio.
    page_viewport: Viewport,
}

impl Scene {
    /// `dot_spacing`: land lattice spacing in radians (sets dot size).
    pub fn new(dot_spacing: f64) -> Scene {
        Scene {
            camera: Camera::new(),
            arcs: ArcField::new(),
            counters: Counters::new(),
            board: Board::new(),
            version: None,
            keyframe_version: None,
            stale: false,
            viewers: 0,
            moments: Moments::new(),
            alerts: Vec::new(),
            tick_ms: DEFAULT_TICK_MS,
            dot_spacing,
            bench: None,
            layers: frame::layer::ALL,
            trail_segments: crate::shaders::TRAIL_SEGMENTS,
            coarse_dots: false,
            segments_override: None,
            quality: Governor::new(),
            attention: Attention::default(),
            utc_ms: None,
            page_viewport: Viewport::default(),
        }
    }

    /// Decodes and applies one snapshot buffer. `Ok(false)` means it was a
    /// repeat of the current version and changed nothing.
    pub fn ingest(&mut self, bytes: &[u8], now_ms: f64) -> Result<bool, DecodeError> {
        // `livemap_wire::decode` panics (inside flatbuffers' identifier
        // check) on fewer than 8 bytes; in wasm a panic is a trap that
        // leaves the Globe unusable, so refuse those here.
        if bytes.len() < MIN_SNAPSHOT_BYTES {
            return Err(DecodeError::WrongIdentifier);
        }
        let snapshot = livemap_wire::decode(bytes)?;
        Ok(self.apply(&snapshot, now_ms))
    }

    pub fn apply(&mut self, s: &Snapshot, now_ms: f64) -> bool {
        self.stale = s.stale;
        self.viewers = s.viewers;
        if self.version == Some(s.version) {
            return false;
        }
        // The first snapshot a page gets is a keyframe that may be seconds
        // old: its moments happened before the viewer came, and are not
        // shown as news.
        if self.version.is_some() {
            self.moments.add(&s.moments, now_ms);
        }
        self.alerts = s
            .alerts
            .iter()
            .take(4)
            .map(|a| a.chars().take(32).collect())
            .collect();
        // A lower version is accepted too: the server restarted. Totals
        // still never go backwards on screen (see counters.rs).
        self.version = Some(s.version);
        self.tick_ms = if s.tick_ms == 0 {
            DEFAULT_TICK_MS
        } else {
            f64::from(s.tick_ms)
        };
        self.arcs.schedule(&s.arcs, now_ms, self.tick_ms);
        self.attention
            .record(s.arcs.iter().map(|a| f64::from(a.to.lon)), now_ms);
        self.counters.set(s, now_ms, self.tick_ms);
        if s.keyframe {
            self.keyframe_version = Some(s.version);
        }
        self.board.set(s);
        true
    }

    pub fn resize(&mut self, viewport: Viewport) {
        self.page_viewport = viewport;
        self.apply_quality();
    }

    /// Fixes the quality tier (`quality::TIERS`), or with `None` lets the
    /// governor choose from frame times again.
    pub fn set_quality(&mut self, tier: Option<usize>) {
        self.quality = tier.map_or_else(Governor::new, Governor::fixed);
        self.apply_quality();
    }

    pub fn quality_tier(&self) -> usize {
        self.quality.tier_index()
    }

    /// Reduced motion: no spin, counters jump to new values, arcs appear
    /// whole and fade without landing rings.
    pub fn set_reduced_motion(&mut self, still: bool) {
        let spin = if still {
            0.0
        } else {
            crate::camera::AUTO_SPIN_DEG_PER_S
        };
        self.camera.set_auto_spin(spin);
        self.arcs.set_reduced_motion(still);
        self.counters.set_reduced_motion(still);
    }

    fn apply_quality(&mut self) {
        let tier = self.quality.tier();
        self.camera
            .set_viewport(self.page_viewport.with_max_dpr(tier.max_dpr));
        self.trail_segments = self.segments_override.unwrap_or(tier.trail_segments);
        self.coarse_dots = tier.coarse_dots;
        let limits = match &self.bench {
            Some(bench) => bench.limits(),
            None => Limits::default().scaled(tier.arc_share),
        };
        self.arcs.set_limits(limits);
    }

    pub fn viewport(&self) -> Viewport {
        self.camera.viewport()
    }

    pub fn camera_mut(&mut self) -> &mut Camera {
        &mut self.camera
    }

    pub fn camera(&self) -> &Camera {
        &self.camera
    }

    pub fn arcs(&self) -> &ArcField {
        &self.arcs
    }

    /// Moves time on to `now_ms` (rotation, arcs), and lets the quality
    /// governor see the frame.
    pub fn advance(&mut self, now_ms: f64) {
        if self.quality.frame(now_ms).is_some() {
            self.apply_quality();
        }
        let factor = self.attention.spin_factor(self.camera.lon);
        self.camera.set_spin_factor(factor);
        self.camera.update(now_ms);
        self.arcs.update(now_ms);
        self.moments.update(now_ms);
        if let Some(bench) = self.bench.as_mut() {
            bench.top_up(&mut self.arcs, now_ms);
        }
    }

    /// Keeps `arcs` made-up arcs between places in `land` in flight, and
    /// the bench's rings, from now on (see `bench.rs`).
    /// The quality tier stays where it is (the starting one unless
    /// [`Scene::set_quality`] chose), so that a benchmark measures one
    /// known configuration.
    pub fn start_bench(&mut self, arcs: usize, land: Vec<Vec3>) {
        self.bench = Some(Synthetic::new(arcs, land));
        self.quality = Governor::fixed(self.quality.tier_index());
        self.apply_quality();
    }

    pub fn build_frame(&self, now_ms: f64, out: &mut FrameData) {
        frame::build(
            &self.camera.view(),
            &self.arcs,
            now_ms,
            // The coarse lattice has half the points: √2 the spacing.
            if self.coarse_dots {
                self.dot_spacing * std::f64::consts::SQRT_2
            } else {
                self.dot_spacing
            },
            out,
        );
        out.coarse_dots = self.coarse_dots;
        out.layers = self.layers;
        out.trail_segments = self.trail_segments;
        out.sun_model = self.utc_ms.map_or([0.0; 3], |utc| {
            let (lat, lon) = crate::sun::subsolar(utc);
            crate::geo::lat_lon_to_unit(lat, lon).to_f32()
        });
    }

    /// Segments per arc trail (at least 2, at most 64).
    pub fn set_trail_segments(&mut self, segments: u32) {
        self.segments_override = Some(segments.clamp(2, 64));
        self.apply_quality();
    }

    /// The wall clock (ms since the Unix epoch): the night side of the
    /// globe is shaded from then on; `None` turns that off.
    pub fn set_clock(&mut self, utc_ms: Option<f64>) {
        self.utc_ms = utc_ms.filter(|t| t.is_finite());
    }

    /// Draws only these `frame::layer`s from now on.
    pub fn set_layers(&mut self, layers: u32) {
        self.layers = layers & frame::layer::ALL;
    }

    pub fn counters(&mut self, now_ms: f64) -> [f64; counters::COUNT] {
        self.counters.values(now_ms)
    }

    /// What the panels show, from the latest snapshot.
    pub fn board(&self) -> &Board {
        &self.board
    }

    pub fn version(&self) -> Option<u64> {
        self.version
    }

    pub fn moments(&self) -> &Moments {
        &self.moments
    }

    /// The moments' marks to draw over the globe now (see
    /// [`Moments::marks`]).
    pub fn moment_marks(&self, now_ms: f64) -> Vec<f32> {
        self.moments
            .marks(&self.camera.view(), self.camera.globe_radius_css(), now_ms)
    }

    /// The anomaly flags shown to the public, if the operator turned
    /// that on (`alerts` of the snapshot).
    pub fn alerts(&self) -> &[String] {
        &self.alerts
    }

    pub fn keyframe_version(&self) -> Option<u64> {
        self.keyframe_version
    }

    pub fn stale(&self) -> bool {
        self.stale
    }

    /// Browsers watching now, as the last snapshot said.
    pub fn viewers(&self) -> u64 {
        self.viewers
    }

    pub fn tick_ms(&self) -> f64 {
        self.tick_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livemap_wire::{Arc, Channel, LatLon, Rates, Totals};

    fn snapshot(version: u64, arcs: usize) -> Vec<u8> {
        let arc = Arc {
            from: LatLon {
                lat: 43.65,
                lon: -79.38,
            },
            to: LatLon {
                lat: 30.27,
                lon: -97.74,
            },
            usd_cents: 4_200,
            at_ms: 0,
            channel: Channel::Social,
        };
        livemap_wire::encode(&Snapshot {
            version,
            stale: version & 1 == 0,
            totals: Totals {
                orders: version * 10,
                gmv_usd_cents: version * 123_456,
                unique_shoppers: version * 7,
                carbon_grams: version * 1_500,
            },
            rates: Rates {
                orders_per_minute: 600.0,
                ..Rates::default()
            },
            arcs: vec![arc; arcs],
            tick_ms: 250,
            keyframe: true,
            ..Snapshot::default()
        })
    }

    #[test]
    fn ingests_real_snapshot_bytes() {
        let mut scene = Scene::new(0.0117);
        assert!(scene.ingest(&snapshot(1, 5), 0.0).expect("decodes"));
        assert_eq!(scene.version(), Some(1));
        assert!(!scene.stale());
        assert_eq!(scene.tick_ms(), 250.0);
        assert_eq!(scene.counters(0.0), [123_456.0, 600.0, 7.0, 1.5, 10.0]);
        for t in 0..20 {
            scene.advance(f64::from(t) * 16.0);
        }
        assert_eq!(scene.arcs().active().len(), 5);
        let mut frame = FrameData::default();
        scene.build_frame(320.0, &mut frame);
        assert_eq!(frame.trail_count(), 5);
    }

    #[test]
    fn moments_are_news_only_after_the_first_snapshot() {
        let with_moment = |version: u64| {
            livemap_wire::encode(&Snapshot {
                version,
                moments: vec![livemap_wire::Moment {
                    kind: livemap_wire::MomentKind::Milestone,
                    usd_cents: 100_000_000,
                    ..livemap_wire::Moment::default()
                }],
                ..Snapshot::default()
            })
        };
        let mut scene = Scene::new(0.0117);
        assert!(scene.ingest(&with_moment(1), 0.0).expect("decodes"));
        assert_eq!(
            scene.moments().seq(),
            0,
            "the joining keyframe's moment is old"
        );
        assert!(scene.ingest(&with_moment(2), 200.0).expect("decodes"));
        assert_eq!(scene.moments().seq(), 1);
        assert!(!scene.ingest(&with_moment(2), 300.0).expect("decodes"));
        assert_eq!(scene.moments().seq(), 1, "a repeat is not news");
    }

    #[test]
    fn repeats_are_ignored_and_bad_bytes_rejected() {
        let mut scene = Scene::new(0.0117);
        let bytes = snapshot(2, 3);
        assert!(scene.ingest(&bytes, 0.0).expect("decodes"));
        assert!(!scene.ingest(&bytes, 10.0).expect("decodes"));
        assert!(scene.stale());
        assert_eq!(scene.arcs().pending_len(), 3);
        assert!(scene.ingest(b"garbage", 0.0).is_err());
        assert!(scene.ingest(&bytes[..bytes.len() / 2], 0.0).is_err());
        for n in 0..8 {
            assert!(scene.ingest(&bytes[..n], 0.0).is_err(), "{n} bytes");
        }
        // A restarted server (lower version) is followed.
        assert!(scene.ingest(&snapshot(1, 0), 20.0).expect("decodes"));
        assert_eq!(scene.version(), Some(1));
        assert_eq!(scene.counters(1_000.0)[0], 2.0 * 123_456.0);
    }

    #[test]
    fn the_board_follows_new_snapshots_only() {
        let mut scene = Scene::new(0.0117);
        assert_eq!(scene.board().version(), 0);
        let with_trend = |version| {
            livemap_wire::encode(&Snapshot {
                version,
                trends: vec![livemap_wire::Trend {
                    category: format!("Category {version}"),
                    change: 0.5,
                }],
                keyframe: true,
                ..Snapshot::default()
            })
        };
        assert!(scene.ingest(&with_trend(10), 0.0).expect("decodes"));
        assert_eq!(scene.board().version(), 1);
        assert_eq!(scene.board().trends()[0].category, "Category 10");
        // A repeat changes nothing; a new snapshot with new lists moves it.
        assert!(!scene.ingest(&with_trend(10), 1.0).expect("decodes"));
        assert_eq!(scene.board().version(), 1);
        assert!(scene.ingest(&with_trend(11), 2.0).expect("decodes"));
        assert_eq!(scene.board().version(), 2);
        assert!(scene.board().to_json().contains("\"Category 11\""));
    }

    /// In wasm a panic is a trap that breaks the Globe for good, so no
    /// corruption of a real snapshot may panic (errors are fine).
    #[test]
    fn corrupted_snapshots_never_panic() {
        let good = snapshot(3, 4);
        let mut scene = Scene::new(0.0117);
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                let _ = scene.ingest(&bad, 0.0);
            }
            let _ = scene.ingest(&good[..i], 0.0);
            let _ = scene.ingest(&good[i..], 0.0);
        }
        for _ in 0..200 {
            scene.advance(1_000.0);
        }
        let mut frame = FrameData::default();
        scene.build_frame(1_000.0, &mut frame);
        assert!(frame.trails.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn the_globe_lingers_where_orders_land() {
        let mut scene = Scene::new(0.0117);
        let base = crate::camera::AUTO_SPIN_DEG_PER_S.abs();
        // The camera starts over the Americas, where these orders land.
        assert!(scene.ingest(&snapshot(1, 50), 0.0).expect("decodes"));
        for t in 0..200 {
            scene.advance(f64::from(t) * 16.0);
        }
        let slow = scene.camera().velocity().0.abs();
        assert!(
            slow < base * 0.7,
            "{slow} deg/s over the sale, {base} normally"
        );
        // Reduced motion: no spin at all.
        scene.set_reduced_motion(true);
        for t in 200..2_000 {
            scene.advance(f64::from(t) * 16.0);
        }
        assert!(scene.camera().velocity().0.abs() < 0.01);
    }

    #[test]
    fn the_sun_is_where_the_clock_says() {
        let mut scene = Scene::new(0.0117);
        let mut out = FrameData::default();
        scene.build_frame(0.0, &mut out);
        assert_eq!(out.sun_model, [0.0; 3], "no clock, no night");
        // Noon UTC at an equinox: the sun over the Gulf of Guinea.
        scene.set_clock(Some(1_774_008_000_000.0));
        scene.build_frame(0.0, &mut out);
        let gulf = crate::geo::lat_lon_to_unit(0.0, 0.0).to_f32();
        let dot: f32 = out.sun_model.iter().zip(gulf).map(|(a, b)| a * b).sum();
        assert!(dot > 0.99, "{:?}", out.sun_model);
    }
}
