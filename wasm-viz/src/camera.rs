//! Where the globe sits on screen and which way it faces: matrices, layout
//! (per aspect ratio, or fitted into the room the page leaves between its
//! panels), auto-rotation, pointer drag and inertia.
//!
//! The camera looks down -z at the globe from `distance` globe radii away;
//! the globe turns under it (`model = Rx(lat) * Ry(-lon)`), so `lon`/`lat`
//! is simply the place facing the viewer.

use crate::geo::Vec3;

/// devicePixelRatio above this is not worth the fill rate (4K TVs, phones).
pub const MAX_DPR: f64 = 2.0;
/// Vertical field of view.
pub const FOVY_DEG: f64 = 30.0;
/// Auto-rotation: the globe turns eastward, one revolution in two minutes.
pub const AUTO_SPIN_DEG_PER_S: f64 = -3.0;
/// The tilt the camera drifts back to: northern mid-latitudes, where most
/// orders are, face the viewer a little.
pub const DEFAULT_LAT: f64 = 20.0;
pub const LAT_LIMIT: f64 = 70.0;
/// Start over the Americas.
pub const DEFAULT_LON: f64 = -85.0;
/// How quickly a flick's spin decays back to the auto-rotation.
const INERTIA_TAU_S: f64 = 1.1;
/// After this long without input the tilt eases back to [`DEFAULT_LAT`].
const TILT_RETURN_AFTER_MS: f64 = 5_000.0;
const TILT_RETURN_TAU_S: f64 = 2.5;
const MAX_SPIN_DEG_PER_S: f64 = 540.0;
/// A pointer held still this long before release throws nothing.
const FLICK_WINDOW_MS: f64 = 90.0;
/// Frames further apart than this (hidden tab, debugger) advance only this.
const MAX_STEP_S: f64 = 0.1;

/// A 4x4 matrix, column-major as WebGL wants it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mat4(pub [f64; 16]);

impl Mat4 {
    pub const IDENTITY: Mat4 = Mat4([
        1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
    ]);

    /// Perspective projection whose image is then shifted by
    /// (`shift_x`, `shift_y`) in normalized device coordinates, which moves
    /// the globe on screen without changing its shape.
    pub fn perspective(fovy_rad: f64, aspect: f64, near: f64, far: f64, shift: (f64, f64)) -> Mat4 {
        let f = 1.0 / (fovy_rad / 2.0).tan();
        let mut m = [0.0; 16];
        m[0] = f / aspect;
        m[5] = f;
        m[8] = -shift.0;
        m[9] = -shift.1;
        m[10] = (far + near) / (near - far);
        m[11] = -1.0;
        m[14] = 2.0 * far * near / (near - far);
        Mat4(m)
    }

    pub fn translation(x: f64, y: f64, z: f64) -> Mat4 {
        let mut m = Mat4::IDENTITY;
        m.0[12] = x;
        m.0[13] = y;
        m.0[14] = z;
        m
    }

    pub fn rotation_x(a: f64) -> Mat4 {
        let (s, c) = a.sin_cos();
        let mut m = Mat4::IDENTITY;
        m.0[5] = c;
        m.0[6] = s;
        m.0[9] = -s;
        m.0[10] = c;
        m
    }

    pub fn rotation_y(a: f64) -> Mat4 {
        let (s, c) = a.sin_cos();
        let mut m = Mat4::IDENTITY;
        m.0[0] = c;
        m.0[2] = -s;
        m.0[8] = s;
        m.0[10] = c;
        m
    }

    pub fn mul(&self, o: &Mat4) -> Mat4 {
        let mut m = [0.0; 16];
        for c in 0..4 {
            for r in 0..4 {
                m[c * 4 + r] = (0..4).map(|k| self.0[k * 4 + r] * o.0[c * 4 + k]).sum();
            }
        }
        Mat4(m)
    }

    /// `self * (v, w)` as homogeneous coordinates.
    pub fn apply(&self, v: Vec3, w: f64) -> [f64; 4] {
        let m = &self.0;
        let mut out = [0.0; 4];
        for (r, o) in out.iter_mut().enumerate() {
            *o = m[r] * v.x + m[4 + r] * v.y + m[8 + r] * v.z + m[12 + r] * w;
        }
        out
    }

    /// Transpose, which for a pure rotation is its inverse.
    pub fn transpose(&self) -> Mat4 {
        let mut m = [0.0; 16];
        for c in 0..4 {
            for r in 0..4 {
                m[c * 4 + r] = self.0[r * 4 + c];
            }
        }
        Mat4(m)
    }

    pub fn to_f32(&self) -> [f32; 16] {
        self.0.map(|v| v as f32)
    }
}

/// The canvas size in CSS pixels and the (capped) device pixel ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Viewport {
    pub css_width: f64,
    pub css_height: f64,
    pub dpr: f64,
}

impl Viewport {
    /// Sanitizes what the page reports: at least 1x1, dpr in [1, MAX_DPR].
    pub fn new(css_width: f64, css_height: f64, dpr: f64) -> Viewport {
        let sane = |v: f64, lo: f64, hi: f64, default: f64| {
            if v.is_finite() {
                v.clamp(lo, hi)
            } else {
                default
            }
        };
        Viewport {
            css_width: sane(css_width, 1.0, 16_384.0, 1.0),
            css_height: sane(css_height, 1.0, 16_384.0, 1.0),
            dpr: sane(dpr, 1.0, MAX_DPR, 1.0),
        }
    }

    /// The same screen drawn with at most `max_dpr` device pixels per CSS
    /// pixel (the quality governor's tiers; as low as 0.25).
    pub fn with_max_dpr(self, max_dpr: f64) -> Viewport {
        let cap = if max_dpr.is_finite() {
            max_dpr.max(0.25)
        } else {
            1.0
        };
        Viewport {
            dpr: self.dpr.min(cap),
            ..self
        }
    }

    /// Drawing-buffer size in device pixels (what the canvas width/height
    /// attributes get).
    pub fn pixel_size(&self) -> (u32, u32) {
        let px = |css: f64| (css * self.dpr).round().clamp(1.0, 8192.0) as u32;
        (px(self.css_width), px(self.css_height))
    }

    pub fn aspect(&self) -> f64 {
        self.css_width / self.css_height
    }
}

impl Default for Viewport {
    fn default() -> Viewport {
        Viewport::new(1280.0, 720.0, 1.0)
    }
}

/// Where the globe goes for a given aspect ratio. Landscape (a TV): large,
/// nudged right so the counters have the left side. Portrait (a phone): fit
/// to the width, pushed down so the counters have the top.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    /// Camera distance from the globe centre, in globe radii.
    pub distance: f64,
    /// Globe centre in normalized device coordinates.
    pub shift: (f64, f64),
    /// Globe silhouette radius as a fraction of half the viewport height.
    pub radius_ndc_y: f64,
}

impl Layout {
    pub fn for_aspect(aspect: f64) -> Layout {
        let aspect = if aspect.is_finite() {
            aspect.clamp(0.2, 5.0)
        } else {
            1.0
        };
        let landscape = ((aspect - 1.15) / 0.45).clamp(0.0, 1.0);
        let portrait = ((0.9 - aspect) / 0.3).clamp(0.0, 1.0);
        // Radius: 0.78 of the half-height, but never wider than 0.92 of the
        // half-width.
        let radius_ndc_y = 0.78f64.min(0.92 * aspect);
        let shift = (0.13 * landscape, -0.25 * portrait);
        let k = radius_ndc_y * (FOVY_DEG.to_radians() / 2.0).tan();
        let distance = (1.0 + 1.0 / (k * k)).sqrt();
        Layout {
            distance,
            shift,
            radius_ndc_y,
        }
    }
}

/// The part of the canvas the page keeps free for the globe, between its
/// panels, in CSS pixels from the canvas's top-left corner. The page knows
/// its own layout (which changes with the screen, the fonts and the data);
/// the camera only fits the globe into what is left.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// Share of a slot's shorter side that the globe's diameter takes; the
/// margin is for the arcs, which rise above the surface.
pub const SLOT_FILL: f64 = 0.88;
/// A slot this small (CSS pixels, either side) is ignored: the page is
/// between layouts or has no room, and the default layout is better than a
/// speck.
pub const MIN_SLOT_CSS: f64 = 48.0;

impl Layout {
    /// The layout that centres the globe in `slot` (clipped to the canvas).
    /// `None` when the slot is not a usable rectangle.
    pub fn for_slot(viewport: Viewport, slot: Slot) -> Option<Layout> {
        let (w, h) = (viewport.css_width, viewport.css_height);
        let finite = [slot.x, slot.y, slot.width, slot.height]
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return None;
        }
        let left = slot.x.clamp(0.0, w);
        let top = slot.y.clamp(0.0, h);
        let right = (slot.x + slot.width).clamp(0.0, w);
        let bottom = (slot.y + slot.height).clamp(0.0, h);
        let side = (right - left).min(bottom - top);
        if side < MIN_SLOT_CSS {
            return None;
        }
        let (cx, cy) = ((left + right) / 2.0, (top + bottom) / 2.0);
        let radius_ndc_y = side / 2.0 * SLOT_FILL / (h / 2.0);
        let k = radius_ndc_y * (FOVY_DEG.to_radians() / 2.0).tan();
        Some(Layout {
            distance: (1.0 + 1.0 / (k * k)).sqrt(),
            shift: (cx / w * 2.0 - 1.0, 1.0 - cy / h * 2.0),
            radius_ndc_y,
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Drag {
    x: f64,
    y: f64,
    t_ms: f64,
    /// Smoothed drag velocity, degrees per second.
    vel: (f64, f64),
}

/// Everything a frame needs from the camera.
#[derive(Clone, Copy, Debug)]
pub struct View {
    /// Rotation of the globe (model to world).
    pub model: Mat4,
    /// Projection times view (world to clip).
    pub view_proj: Mat4,
    /// `view_proj * model`.
    pub mvp: Mat4,
    /// Camera position in model space.
    pub eye_model: Vec3,
    pub layout: Layout,
    pub viewport: Viewport,
    /// Globe silhouette radius in device pixels.
    pub globe_radius_px: f64,
}

/// The globe's orientation and its motion.
#[derive(Clone, Debug)]
pub struct Camera {
    /// Longitude facing the viewer, degrees in [-180, 180).
    pub lon: f64,
    /// Latitude facing the viewer, degrees in [-LAT_LIMIT, LAT_LIMIT].
    pub lat: f64,
    vel: (f64, f64),
    auto_spin: f64,
    /// Multiplies the auto spin: slower over busy parts of the world
    /// (`attention.rs`).
    spin_factor: f64,
    drag: Option<Drag>,
    last_ms: Option<f64>,
    last_input_ms: f64,
    viewport: Viewport,
    slot: Option<Slot>,
}

impl Default for Camera {
    fn default() -> Camera {
        Camera::new()
    }
}

impl Camera {
    pub fn new() -> Camera {
        Camera {
            lon: DEFAULT_LON,
            lat: DEFAULT_LAT,
            vel: (AUTO_SPIN_DEG_PER_S, 0.0),
            auto_spin: AUTO_SPIN_DEG_PER_S,
            spin_factor: 1.0,
            drag: None,
            last_ms: None,
            last_input_ms: f64::NEG_INFINITY,
            viewport: Viewport::default(),
            slot: None,
        }
    }

    /// The spin the globe returns to when nobody drags it, in degrees per
    /// second (0 for people who ask for reduced motion).
    pub fn set_auto_spin(&mut self, deg_per_s: f64) {
        if deg_per_s.is_finite() {
            self.auto_spin = deg_per_s.clamp(-MAX_SPIN_DEG_PER_S, MAX_SPIN_DEG_PER_S);
        }
    }

    /// Scales the auto spin (see `attention.rs`); the velocity eases to
    /// the new speed, so changes never jerk.
    pub fn set_spin_factor(&mut self, factor: f64) {
        if factor.is_finite() {
            self.spin_factor = factor.clamp(0.0, 4.0);
        }
    }

    pub fn set_viewport(&mut self, viewport: Viewport) {
        self.viewport = viewport;
    }

    pub fn viewport(&self) -> Viewport {
        self.viewport
    }

    /// Where the page wants the globe; `None` for the default layout.
    pub fn set_slot(&mut self, slot: Option<Slot>) {
        self.slot = slot;
    }

    /// The slot's layout when it is usable, else the default for the
    /// aspect ratio.
    pub fn layout(&self) -> Layout {
        self.slot
            .and_then(|slot| Layout::for_slot(self.viewport, slot))
            .unwrap_or_else(|| Layout::for_aspect(self.viewport.aspect()))
    }

    pub fn is_dragging(&self) -> bool {
        self.drag.is_some()
    }

    /// Spin velocity (lon, lat) in degrees per second.
    pub fn velocity(&self) -> (f64, f64) {
        self.vel
    }

    /// Globe silhouette radius in CSS pixels.
    pub fn globe_radius_css(&self) -> f64 {
        self.layout().radius_ndc_y * self.viewport.css_height / 2.0
    }

    /// Advances spin, inertia and tilt return to `now_ms`.
    pub fn update(&mut self, now_ms: f64) {
        if !now_ms.is_finite() {
            return;
        }
        let dt = self.last_ms.map_or(0.0, |last| {
            ((now_ms - last) / 1000.0).clamp(0.0, MAX_STEP_S)
        });
        self.last_ms = Some(now_ms);
        if self.drag.is_some() || dt == 0.0 {
            return;
        }
        let decay = (-dt / INERTIA_TAU_S).exp();
        let spin = self.auto_spin * self.spin_factor;
        self.vel.0 = spin + (self.vel.0 - spin) * decay;
        self.vel.1 *= decay;
        self.lon += self.vel.0 * dt;
        self.lat += self.vel.1 * dt;
        if now_ms - self.last_input_ms > TILT_RETURN_AFTER_MS {
            let k = 1.0 - (-dt / TILT_RETURN_TAU_S).exp();
            self.lat += (DEFAULT_LAT - self.lat) * k;
        }
        self.normalize();
    }

    pub fn pointer_down(&mut self, x: f64, y: f64, now_ms: f64) {
        if !(x.is_finite() && y.is_finite() && now_ms.is_finite()) {
            return;
        }
        self.drag = Some(Drag {
            x,
            y,
            t_ms: now_ms,
            vel: (0.0, 0.0),
        });
        self.vel = (0.0, 0.0);
        self.last_input_ms = now_ms;
    }

    pub fn pointer_move(&mut self, x: f64, y: f64, now_ms: f64) {
        if !(x.is_finite() && y.is_finite() && now_ms.is_finite()) {
            return;
        }
        let deg_per_px = (1.0 / self.globe_radius_css().max(1.0)).to_degrees();
        let Some(drag) = self.drag.as_mut() else {
            return;
        };
        let d_lon = -(x - drag.x) * deg_per_px;
        let d_lat = (y - drag.y) * deg_per_px;
        self.lon += d_lon;
        self.lat += d_lat;
        let dt = (now_ms - drag.t_ms) / 1000.0;
        if dt > 0.0 {
            let clamp = |v: f64| v.clamp(-MAX_SPIN_DEG_PER_S, MAX_SPIN_DEG_PER_S);
            let inst = (clamp(d_lon / dt), clamp(d_lat / dt));
            drag.vel.0 += (inst.0 - drag.vel.0) * 0.6;
            drag.vel.1 += (inst.1 - drag.vel.1) * 0.6;
        }
        drag.x = x;
        drag.y = y;
        drag.t_ms = now_ms;
        self.last_input_ms = now_ms;
        self.normalize();
    }

    /// Ends a drag; a recent movement keeps the globe spinning (inertia).
    pub fn pointer_up(&mut self, now_ms: f64) {
        if let Some(drag) = self.drag.take() {
            let recent = now_ms.is_finite() && now_ms - drag.t_ms <= FLICK_WINDOW_MS;
            self.vel = if recent { drag.vel } else { (0.0, 0.0) };
            if now_ms.is_finite() {
                self.last_input_ms = now_ms;
                self.last_ms = Some(now_ms);
            }
        }
    }

    fn normalize(&mut self) {
        self.lon = (self.lon + 180.0).rem_euclid(360.0) - 180.0;
        self.lat = self.lat.clamp(-LAT_LIMIT, LAT_LIMIT);
        if !(self.lon.is_finite() && self.lat.is_finite()) {
            self.lon = DEFAULT_LON;
            self.lat = DEFAULT_LAT;
        }
    }

    pub fn view(&self) -> View {
        let vp = self.viewport;
        let layout = self.layout();
        let model =
            Mat4::rotation_x(self.lat.to_radians()).mul(&Mat4::rotation_y(-self.lon.to_radians()));
        let proj = Mat4::perspective(FOVY_DEG.to_radians(), vp.aspect(), 0.1, 100.0, layout.shift);
        let view_proj = proj.mul(&Mat4::translation(0.0, 0.0, -layout.distance));
        let mvp = view_proj.mul(&model);
        let eye = model
            .transpose()
            .apply(Vec3::new(0.0, 0.0, layout.distance), 0.0);
        let (_, h_px) = vp.pixel_size();
        View {
            model,
            view_proj,
            mvp,
            eye_model: Vec3::new(eye[0], eye[1], eye[2]),
            layout,
            viewport: vp,
            globe_radius_px: layout.radius_ndc_y * f64::from(h_px) / 2.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::lat_lon_to_unit;

    fn ndc(m: &Mat4, v: Vec3) -> (f64, f64, f64) {
        let c = m.apply(v, 1.0);
        (c[0] / c[3], c[1] / c[3], c[2] / c[3])
    }

    fn camera(w: f64, h: f64) -> Camera {
        let mut cam = Camera::new();
        cam.set_viewport(Viewport::new(w, h, 1.0));
        cam
    }

    #[test]
    fn the_facing_point_projects_to_the_globe_centre() {
        for (w, h) in [(1920.0, 1080.0), (390.0, 844.0), (800.0, 800.0)] {
            let mut cam = camera(w, h);
            cam.lon = 2.35;
            cam.lat = 48.85;
            let view = cam.view();
            let (x, y, z) = ndc(&view.mvp, lat_lon_to_unit(48.85, 2.35));
            assert!((x - view.layout.shift.0).abs() < 1e-9, "{w}x{h}: {x}");
            assert!((y - view.layout.shift.1).abs() < 1e-9, "{w}x{h}: {y}");
            assert!((-1.0..1.0).contains(&z));
            // The opposite side is further away.
            let (_, _, z_back) = ndc(&view.mvp, lat_lon_to_unit(-48.85, 182.35));
            assert!(z_back > z);
        }
    }

    #[test]
    fn silhouette_radius_matches_the_layout() {
        let view = camera(1920.0, 1080.0).view();
        let d = view.layout.distance;
        // Tangent point of the camera's cone on the unit sphere, in world space.
        let p = Vec3::new(0.0, (1.0 - 1.0 / (d * d)).sqrt(), 1.0 / d);
        let (_, y, _) = ndc(&view.view_proj, p);
        assert!((y - view.layout.shift.1 - view.layout.radius_ndc_y).abs() < 1e-9);
    }

    #[test]
    fn layouts_keep_the_globe_on_screen() {
        for aspect in [0.3, 0.46, 0.75, 1.0, 1.33, 1.78, 2.4, f64::NAN] {
            let l = Layout::for_aspect(aspect);
            let a = if aspect.is_finite() { aspect } else { 1.0 };
            let r_x = l.radius_ndc_y / a;
            assert!(
                l.shift.0 + r_x <= 1.0 && l.shift.0 - r_x >= -1.0,
                "{aspect}"
            );
            assert!(l.shift.1 - l.radius_ndc_y >= -1.0, "{aspect}");
            assert!(l.distance > 1.5 && l.distance.is_finite(), "{aspect}");
        }
        // A TV puts the globe right of centre, a phone below centre.
        assert!(Layout::for_aspect(16.0 / 9.0).shift.0 > 0.0);
        assert!(Layout::for_aspect(390.0 / 844.0).shift.1 < 0.0);
    }

    #[test]
    fn a_slot_centres_and_sizes_the_globe() {
        let mut cam = camera(1920.0, 1080.0);
        cam.set_slot(Some(Slot {
            x: 500.0,
            y: 40.0,
            width: 900.0,
            height: 800.0,
        }));
        let view = cam.view();
        // Centre (950, 440) in CSS pixels, in NDC.
        assert!((view.layout.shift.0 - (950.0 / 1920.0 * 2.0 - 1.0)).abs() < 1e-12);
        assert!((view.layout.shift.1 - (1.0 - 440.0 / 1080.0 * 2.0)).abs() < 1e-12);
        // Diameter: SLOT_FILL of the shorter side, in CSS pixels.
        assert!((cam.globe_radius_css() - 400.0 * SLOT_FILL).abs() < 1e-9);
        // The facing point still lands on the centre, and the silhouette
        // is where the layout says (same check as above, off-centre).
        let (x, y, _) = ndc(&view.mvp, lat_lon_to_unit(cam.lat, cam.lon));
        assert!((x - view.layout.shift.0).abs() < 1e-9 && (y - view.layout.shift.1).abs() < 1e-9);
        let d = view.layout.distance;
        let p = Vec3::new(0.0, (1.0 - 1.0 / (d * d)).sqrt(), 1.0 / d);
        let (_, y_top, _) = ndc(&view.view_proj, p);
        assert!((y_top - view.layout.shift.1 - view.layout.radius_ndc_y).abs() < 1e-9);
    }

    #[test]
    fn unusable_slots_fall_back_to_the_default_layout() {
        let mut cam = camera(1280.0, 720.0);
        let default = cam.layout();
        for slot in [
            Slot {
                x: 0.0,
                y: 0.0,
                width: 10.0,
                height: 500.0,
            },
            Slot {
                x: f64::NAN,
                y: 0.0,
                width: 500.0,
                height: 500.0,
            },
            Slot {
                x: 5_000.0,
                y: 0.0,
                width: 500.0,
                height: 500.0,
            },
            Slot {
                x: 0.0,
                y: 0.0,
                width: f64::INFINITY,
                height: 300.0,
            },
        ] {
            cam.set_slot(Some(slot));
            assert_eq!(cam.layout(), default, "{slot:?}");
        }
        // Half off the canvas: only the visible part counts.
        cam.set_slot(Some(Slot {
            x: -400.0,
            y: 0.0,
            width: 800.0,
            height: 720.0,
        }));
        let l = cam.layout();
        assert!((l.shift.0 - (200.0 / 1280.0 * 2.0 - 1.0)).abs() < 1e-12);
        cam.set_slot(None);
        assert_eq!(cam.layout(), default);
    }

    #[test]
    fn viewport_caps_dpr_and_rejects_nonsense() {
        let vp = Viewport::new(390.0, 844.0, 3.0);
        assert_eq!(vp.dpr, 2.0);
        assert_eq!(vp.pixel_size(), (780, 1688));
        let vp = Viewport::new(0.0, f64::NAN, f64::INFINITY);
        assert_eq!(vp.pixel_size(), (1, 1));
    }

    #[test]
    fn auto_rotates_eastward_and_wraps() {
        let mut cam = camera(1280.0, 720.0);
        let lon0 = cam.lon;
        cam.update(0.0);
        for i in 1..=60 {
            cam.update(f64::from(i) * 16.0);
        }
        let moved = lon0 - cam.lon;
        assert!((moved - 3.0 * 0.96).abs() < 0.01, "{moved}");
        // A long unattended run stays in range.
        for i in 0..200_000 {
            cam.update(1000.0 + f64::from(i) * 50.0);
        }
        assert!((-180.0..180.0).contains(&cam.lon));
        assert!((cam.lat - DEFAULT_LAT).abs() < 1e-6);
    }

    #[test]
    fn drag_turns_the_globe_under_the_pointer_and_flick_keeps_spinning() {
        let mut cam = camera(1280.0, 720.0);
        cam.update(0.0);
        let (lon0, lat0) = (cam.lon, cam.lat);
        let r = cam.globe_radius_css();
        cam.pointer_down(600.0, 300.0, 100.0);
        for i in 1..=5 {
            cam.pointer_move(
                600.0 + f64::from(i) * r / 50.0,
                300.0,
                100.0 + f64::from(i) * 16.0,
            );
        }
        assert!(cam.is_dragging());
        // Dragging right by r/10 px turns the globe by 0.1 rad.
        assert!((lon0 - cam.lon - 0.1f64.to_degrees()).abs() < 1e-9);
        assert!((cam.lat - lat0).abs() < 1e-12);
        cam.pointer_up(190.0);
        let (v, _) = cam.velocity();
        assert!(v < -50.0, "flick velocity {v}");
        // Inertia decays back to the auto-rotation.
        for i in 0..900 {
            cam.update(190.0 + f64::from(i) * 16.0);
        }
        assert!((cam.velocity().0 - AUTO_SPIN_DEG_PER_S).abs() < 0.01);
    }

    #[test]
    fn a_slow_release_does_not_throw_and_tilt_is_clamped() {
        let mut cam = camera(1280.0, 720.0);
        cam.update(0.0);
        cam.pointer_down(0.0, 0.0, 0.0);
        cam.pointer_move(0.0, 100_000.0, 10.0);
        assert_eq!(cam.lat, LAT_LIMIT);
        cam.pointer_up(500.0);
        assert_eq!(cam.velocity(), (0.0, 0.0));
        cam.pointer_move(f64::NAN, 1.0, 600.0);
        cam.pointer_up(f64::NAN);
        assert!(cam.lon.is_finite() && cam.lat.is_finite());
    }

    #[test]
    fn eye_is_the_camera_in_model_space() {
        let mut cam = camera(1280.0, 720.0);
        cam.lon = 100.0;
        cam.lat = -30.0;
        let view = cam.view();
        let dir = view.eye_model.normalized().expect("nonzero");
        let facing = lat_lon_to_unit(-30.0, 100.0);
        assert!((dir - facing).length() < 1e-9);
        assert!((view.eye_model.length() - view.layout.distance).abs() < 1e-9);
    }
}
