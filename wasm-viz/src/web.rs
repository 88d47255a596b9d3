//! The JavaScript API (wasm32 only): a thin wrapper that forwards to
//! [`Scene`] and draws with the GL renderer.

use wasm_bindgen::prelude::*;
use web_sys::HtmlCanvasElement;

use crate::camera::{Slot, Viewport};
use crate::flat;
use crate::frame::FrameData;
use crate::gl::Renderer;
use crate::land;
use crate::scene::Scene;

/// The globe on one canvas.
///
/// ```js
/// const globe = new Globe(canvas);          // throws if no WebGL2
/// globe.resize(innerWidth, innerHeight, devicePixelRatio);
/// globe.ingest(new Uint8Array(buf), performance.now()); // throws on bad bytes
/// requestAnimationFrame(function loop(t) { globe.frame(t); requestAnimationFrame(loop); });
/// const [gmvCents, opm, shoppers, carbonKg, orders] = globe.counters(performance.now());
/// globe.set_globe_slot(x, y, w, h);         // the room the panels leave, CSS px
/// if (globe.board_version() !== seen) panels = JSON.parse(globe.board_json());
/// ```
#[wasm_bindgen]
pub struct Globe {
    scene: Scene,
    /// `None` for [`Globe::without_graphics`].
    gfx: Option<(Renderer, HtmlCanvasElement)>,
    frame: FrameData,
}

fn new_scene() -> Scene {
    let dots = land::count_land(land::LAND_MASK_BIN).unwrap_or(1);
    Scene::new(land::dot_spacing(dots))
}

#[wasm_bindgen]
impl Globe {
    /// Sets up WebGL2 on `canvas`, multisampled unless `antialias` is
    /// false. Throws (with the GL info log, for shader errors) when that is
    /// impossible.
    #[wasm_bindgen(constructor)]
    pub fn new(canvas: HtmlCanvasElement, antialias: Option<bool>) -> Result<Globe, JsError> {
        let renderer = Renderer::new(&canvas, antialias.unwrap_or(true))?;
        let (w, h) = (canvas.client_width(), canvas.client_height());
        let mut globe = Globe {
            scene: new_scene(),
            gfx: Some((renderer, canvas)),
            frame: FrameData::default(),
        };
        globe.resize(f64::from(w.max(1)), f64::from(h.max(1)), 1.0);
        Ok(globe)
    }

    /// A globe that draws nothing but still decodes snapshots and runs the
    /// counters, for screens without WebGL2.
    #[wasm_bindgen(js_name = withoutGraphics)]
    pub fn without_graphics() -> Globe {
        Globe {
            scene: new_scene(),
            gfx: None,
            frame: FrameData::default(),
        }
    }

    /// Applies one FlatBuffers snapshot. Returns false for a repeat of the
    /// current version; throws if the bytes are not a snapshot.
    pub fn ingest(&mut self, bytes: &[u8], now_ms: f64) -> Result<bool, JsError> {
        Ok(self.scene.ingest(bytes, now_ms)?)
    }

    /// Advances to `now_ms` (a requestAnimationFrame timestamp) and draws.
    pub fn frame(&mut self, now_ms: f64) {
        let tier = self.scene.quality_tier();
        self.scene.advance(now_ms);
        if self.scene.quality_tier() != tier {
            self.fit_canvas();
        }
        if let Some((renderer, _)) = self.gfx.as_mut() {
            self.scene.build_frame(now_ms, &mut self.frame);
            renderer.draw(&self.frame);
        }
    }

    /// The canvas's CSS size and devicePixelRatio (capped at 2, and by the
    /// quality tier).
    pub fn resize(&mut self, css_width: f64, css_height: f64, dpr: f64) {
        self.scene.resize(Viewport::new(css_width, css_height, dpr));
        self.fit_canvas();
    }

    /// The rectangle of the canvas (CSS pixels from its top-left corner)
    /// the page leaves free for the globe; the globe is centred and sized
    /// to fit it. One too small to use (say 0 x 0) restores the default
    /// layout.
    pub fn set_globe_slot(&mut self, x: f64, y: f64, width: f64, height: f64) {
        self.scene.camera_mut().set_slot(Some(Slot {
            x,
            y,
            width,
            height,
        }));
    }

    /// For the flat map of screens without WebGL2: the land dots as x, y
    /// pairs, from (0, 0) at 180°W 90°N to (1, 1) at 180°E 90°S.
    pub fn flat_land(&self) -> Vec<f32> {
        land::parse_land(land::LAND_MASK_BIN)
            .map(|dots| flat::land(&dots))
            .unwrap_or_default()
    }

    /// The arcs in flight at `now_ms` for the flat map, as polylines
    /// `[n, r, g, b, alpha, x0, y0, ..]` one after another (see `flat.rs`).
    pub fn flat_arcs(&self, now_ms: f64) -> Vec<f32> {
        let mut out = Vec::new();
        flat::arcs(self.scene.arcs(), now_ms, &mut out);
        out
    }

    /// Sizes the drawing buffer to the scene's viewport.
    fn fit_canvas(&mut self) {
        let (w, h) = self.scene.viewport().pixel_size();
        if let Some((_, canvas)) = &self.gfx {
            if canvas.width() != w {
                canvas.set_width(w);
            }
            if canvas.height() != h {
                canvas.set_height(h);
            }
        }
    }

    /// Bumps whenever the panels' data changes; cheap enough to ask every
    /// frame, so the page fetches [`Globe::board_json`] only then.
    pub fn board_version(&self) -> f64 {
        self.scene.board().version() as f64
    }

    /// Trends, breakdowns, rankings and the newest minutes from the last
    /// snapshot, as JSON (shape in `board.rs`).
    pub fn board_json(&self) -> String {
        self.scene.board().to_json()
    }

    /// The wall clock (`Date.now()`), for the night side of the globe; a
    /// non-finite value turns night off.
    pub fn set_clock(&mut self, utc_ms: f64) {
        self.scene.set_clock(Some(utc_ms));
    }

    /// The quality tier (0 is the best; see `quality.rs`).
    pub fn quality(&self) -> u32 {
        self.scene.quality_tier() as u32
    }

    /// Fixes the quality tier; a negative number lets frame times choose.
    pub fn set_quality(&mut self, tier: i32) {
        self.scene.set_quality(usize::try_from(tier).ok());
        self.fit_canvas();
    }

    /// Follows `prefers-reduced-motion`: no spin, no travelling heads or
    /// rings, counters without the roll.
    pub fn set_reduced_motion(&mut self, reduce: bool) {
        self.scene.set_reduced_motion(reduce);
    }

    /// `?bench=N`: from now on, keeps `arcs` made-up arcs in flight and
    /// the bench's 2,000 rings, whatever snapshots say (at most 100,000
    /// arcs).
    pub fn start_bench(&mut self, arcs: u32) {
        let land = land::parse_land(land::LAND_MASK_BIN)
            .map(|dots| dots.iter().map(|p| p.unit()).collect())
            .unwrap_or_default();
        self.scene.start_bench(arcs.min(100_000) as usize, land);
    }

    /// Draws only these layers (bits, in the order background, stars,
    /// globe, coastlines, dots, rings, trails, heads): for
    /// profiling one layer's cost.
    pub fn set_layers(&mut self, layers: u32) {
        self.scene.set_layers(layers);
    }

    /// Segments per arc trail (2 to 64; 16 by default).
    pub fn set_trail_segments(&mut self, segments: u32) {
        self.scene.set_trail_segments(segments);
    }

    /// Pointer position in CSS pixels; only differences matter.
    pub fn pointer_down(&mut self, x: f64, y: f64, now_ms: f64) {
        self.scene.camera_mut().pointer_down(x, y, now_ms);
    }

    pub fn pointer_move(&mut self, x: f64, y: f64, now_ms: f64) {
        self.scene.camera_mut().pointer_move(x, y, now_ms);
    }

    pub fn pointer_up(&mut self, now_ms: f64) {
        self.scene.camera_mut().pointer_up(now_ms);
    }

    /// `[gmv_usd_cents, orders_per_minute, unique_shoppers, carbon_kg, orders]`
    /// as displayed at `now_ms` (eased; totals never decrease).
    pub fn counters(&mut self, now_ms: f64) -> Vec<f64> {
        self.scene.counters(now_ms).to_vec()
    }

    /// Version of the last snapshot applied (0 before the first).
    pub fn version(&self) -> f64 {
        self.scene.version().map_or(0.0, |v| v as f64)
    }

    /// Version of the last keyframe applied (0 before the first): the
    /// long-poll's `k`.
    pub fn keyframe_version(&self) -> f64 {
        self.scene.keyframe_version().map_or(0.0, |v| v as f64)
    }

    //// Whether the last snapshot said its data is stale.
    pub fn stale(&self) -> bool {
        self.scene.stale()
    }

    /// Moments (first sales, milestones) to draw over the globe now: five
    /// floats each (x, y in CSS pixels of the canvas, age 0..1, kind 0 a
    /// first sale / 1 a milestone, a milestone's globe radius).
    pub fn moment_marks(&self, now_ms: f64) -> Vec<f32> {
        self.scene.moment_marks(now_ms)
    }

    /// The moments' marks on the flat map: four floats each (x, y on the
    /// map from 0 to 1, age 0..1, kind 0 a first sale / 1 a milestone).
    pub fn flat_moment_marks(&self, now_ms: f64) -> Vec<f32> {
        self.scene.moments().flat_marks(now_ms)
    }

    /// The newest moment's number: `moments_json` is new when it moves.
    pub fn moments_seq(&self) -> f64 {
        self.scene.moments().seq() as f64
    }

    /// The last few moments, oldest first, as JSON for the page to
    /// announce (see `moments.rs`).
    pub fn moments_json(&self) -> String {
        self.scene.moments().json()
    }

    /// The anomaly flags the operator shows the public (usually none),
    /// comma-separated.
    pub fn alerts(&self) -> String {
        self.scene.alerts().join(",")
    }

    /// Browsers watching now, as the last snapshot said.
    pub fn viewers(&self) -> f64 {
        self.scene.viewers() as f64
    }

    /// Arcs in flight right now.
    pub fn active_arcs(&self) -> u32 {
        self.scene.arcs().active().len() as u32
    }

    /// True once the WebGL context is lost; the page should make a new Globe.
    pub fn context_lost(&self) -> bool {
        self.gfx.as_ref().is_some_and(|(r, _)| r.is_lost())
    }
}
