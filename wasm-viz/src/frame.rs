//! What one frame uploads: uniforms and the per-instance arrays for arcs
//! and rings. The GL layer copies these into buffers as they are; the
//! layouts below are the contract with the shaders in `shaders.rs`.

use crate::arcs::ArcField;
use crate::camera::View;
use crate::geo::{GreatArc, Vec3};

/// Floats per arc instance:
/// `start.xyz, tangent.xyz, angle, height, head_t, tail_t, rgb, width, head_alpha, intensity`.
pub const TRAIL_FLOATS: usize = 16;
/// Floats per ring instance: `center.xyz, rgb, progress, size`.
pub const RING_FLOATS: usize = 8;
/// Largest ring radius, in globe radii (about 250 km).
pub const RING_RADIUS: f32 = 0.04;

/// The layers of a frame, as bits of [`FrameData::layers`]: the quality
/// governor leaves out the costly ones on slow screens.
pub mod layer {
    pub const BACKGROUND: u32 = 1 << 0;
    pub const STARS: u32 = 1 << 1;
    pub const GLOBE: u32 = 1 << 2;
    pub const COAST: u32 = 1 << 3;
    pub const DOTS: u32 = 1 << 4;
    pub const RINGS: u32 = 1 << 5;
    pub const TRAILS: u32 = 1 << 6;
    pub const HEADS: u32 = 1 << 7;
    pub const ALL: u32 = (1 << 8) - 1;
}

#[derive(Clone, Debug, Default)]
pub struct FrameData {
    /// Which [`layer`]s to draw.
    pub layers: u32,
    /// Segments per arc trail.
    pub trail_segments: u32,
    /// Draw the land from the coarser lattice (half the dots).
    pub coarse_dots: bool,
    /// The direction of the sun in model space, or zero when the time of
    /// day is unknown (then it is day everywhere).
    pub sun_model: [f32; 3],
    /// Model-view-projection, column-major.
    pub mvp: [f32; 16],
    /// Globe rotation (model to world).
    pub model: [f32; 16],
    /// Camera position in model space (for limb fading).
    pub eye_model: [f32; 3],
    /// Camera distance from the globe centre.
    pub distance: f32,
    /// Drawing-buffer size in device pixels.
    pub viewport_px: [f32; 2],
    /// Globe centre and silhouette radius in normalized device coordinates
    /// (radius as x and y, which differ by the aspect ratio).
    pub globe_center_ndc: [f32; 2],
    pub globe_radius_ndc: [f32; 2],
    pub dpr: f32,
    /// Arc line width in device pixels.
    pub line_width_px: f32,
    /// Land dot diameter in device pixels.
    pub dot_size_px: f32,
    /// Arc instances, [`TRAIL_FLOATS`] each.
    pub trails: Vec<f32>,
    /// Ring instances, [`RING_FLOATS`] each.
    pub rings: Vec<f32>,
}

impl FrameData {
    pub fn trail_count(&self) -> usize {
        self.trails.len() / TRAIL_FLOATS
    }

    pub fn ring_count(&self) -> usize {
        self.rings.len() / RING_FLOATS
    }
}

/// Fills `out` for the frame at `now_ms`, reusing its allocations.
/// `dot_spacing` is the land lattice spacing in radians.
pub fn build(view: &View, arcs: &ArcField, now_ms: f64, dot_spacing: f64, out: &mut FrameData) {
    let (w, h) = view.viewport.pixel_size();
    let dpr = view.viewport.dpr;
    let r_px = view.globe_radius_px;
    out.mvp = view.mvp.to_f32();
    out.model = view.model.to_f32();
    out.eye_model = view.eye_model.to_f32();
    out.distance = view.layout.distance as f32;
    out.viewport_px = [w as f32, h as f32];
    out.globe_center_ndc = [view.layout.shift.0 as f32, view.layout.shift.1 as f32];
    let r_y = view.layout.radius_ndc_y;
    out.globe_radius_ndc = [(r_y / view.viewport.aspect()) as f32, r_y as f32];
    out.dpr = dpr as f32;
    out.line_width_px = (r_px * 0.0085).clamp(1.5 * dpr, 7.0 * dpr) as f32;
    out.dot_size_px = (dot_spacing * r_px * 0.55).clamp(1.0, 8.0 * dpr) as f32;

    out.trails.clear();
    for a in arcs.active() {
        let (head, tail) = a.head_tail(now_ms);
        let head_alpha = a.head_alpha(now_ms);
        if head - tail < 1e-4 && head_alpha <= 0.0 {
            continue;
        }
        // Half of all arcs are on the far side at any moment; what the
        // globe hides entirely is not sent to be drawn at all.
        if behind_the_globe(&a.arc, tail, head, view.eye_model) {
            continue;
        }
        let intensity = a.weight.powf(1.5);
        out.trails.extend_from_slice(&a.arc.start.to_f32());
        out.trails.extend_from_slice(&a.arc.tangent.to_f32());
        out.trails.extend_from_slice(&[
            a.arc.angle as f32,
            a.arc.height as f32,
            head as f32,
            tail as f32,
        ]);
        out.trails.extend_from_slice(&a.color);
        out.trails
            .extend_from_slice(&[a.weight, head_alpha as f32, intensity]);
    }

    out.rings.clear();
    for r in arcs.rings() {
        let progress = r.progress(now_ms);
        if progress >= 1.0 || now_ms < r.born_ms {
            continue;
        }
        out.rings.extend_from_slice(&r.center.to_f32());
        out.rings.extend_from_slice(&r.color);
        out.rings
            .extend_from_slice(&[progress as f32, RING_RADIUS * r.weight]);
    }
}

/// Whether every part of `arc` between `tail` and `head` is hidden by
/// the unit globe from `eye` (model space), judged at a few points with a
/// margin for the trail's width and the head's glow. A point at radius r
/// is seen from distance d when its angle from the eye's direction is
/// within acos(1/d) + acos(1/r), the two horizons.
pub fn behind_the_globe(arc: &GreatArc, tail: f64, head: f64, eye: Vec3) -> bool {
    const SAMPLES: usize = 5;
    const MARGIN_RAD: f64 = 0.05;
    let d = eye.length();
    if d <= 1.0 {
        return false;
    }
    let eye_horizon = (1.0 / d).acos();
    (0..SAMPLES).all(|i| {
        let t = tail + (head - tail) * i as f64 / (SAMPLES - 1) as f64;
        let p = arc.point(t);
        let r = p.length().max(1.0);
        let angle = (p.dot(eye) / (r * d)).clamp(-1.0, 1.0).acos();
        angle > eye_horizon + (1.0 / r).acos() + MARGIN_RAD
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arcs::{ArcField, MAX_ACTIVE};
    use crate::camera::{Camera, Viewport};
    use crate::geo::{lat_lon_to_unit, GreatArc, Vec3};
    use livemap_wire::{Arc as WireArc, Channel, LatLon};

    fn order(from: (f32, f32), to: (f32, f32)) -> WireArc {
        WireArc {
            from: LatLon {
                lat: from.0,
                lon: from.1,
            },
            to: LatLon {
                lat: to.0,
                lon: to.1,
            },
            usd_cents: 10_000,
            at_ms: 0,
            channel: Channel::MobileApp,
        }
    }

    /// What the arc vertex shader computes for a trail vertex at `s`.
    fn shader_point(inst: &[f32], s: f32) -> Vec3 {
        let v = |i: usize| {
            Vec3::new(
                f64::from(inst[i]),
                f64::from(inst[i + 1]),
                f64::from(inst[i + 2]),
            )
        };
        let (head, tail) = (f64::from(inst[8]), f64::from(inst[9]));
        let arc = GreatArc {
            start: v(0),
            tangent: v(3),
            angle: f64::from(inst[6]),
            height: f64::from(inst[7]),
        };
        arc.point(tail + (head - tail) * f64::from(s))
    }

    #[test]
    fn arc_instances_put_the_head_where_the_arc_is() {
        let mut arcs = ArcField::new();
        arcs.schedule(&[order((43.65, -79.38), (48.85, 2.35))], 0.0, 200.0);
        arcs.update(100.0);
        let live = arcs.active()[0];
        let mut cam = Camera::new();
        cam.set_viewport(Viewport::new(1920.0, 1080.0, 1.0));
        let mut frame = FrameData::default();

        // Nothing to draw at the very instant of launch; a moment later
        // the head sits on Toronto.
        build(&cam.view(), &arcs, live.born_ms, 0.01, &mut frame);
        assert_eq!(frame.trail_count(), 0);
        build(&cam.view(), &arcs, live.born_ms + 1.0, 0.01, &mut frame);
        assert_eq!(frame.trail_count(), 1);
        let p = shader_point(&frame.trails, 1.0);
        assert!((p - lat_lon_to_unit(43.65, -79.38)).length() < 1e-3);

        // Halfway: the head is at the arc's peak, above the surface.
        build(
            &cam.view(),
            &arcs,
            live.born_ms + live.travel_ms / 2.0,
            0.01,
            &mut frame,
        );
        let head = shader_point(&frame.trails, 1.0);
        assert!((head.length() - 1.0 - live.arc.height).abs() < 1e-5);
        let tail = shader_point(&frame.trails, 0.0);
        assert!(tail.length() < head.length());
        assert_eq!(
            &frame.trails[10..13],
            &crate::arcs::channel_rgb(Channel::MobileApp)
        );

        // On landing: the head is at Paris, and a ring instance appears.
        arcs.update(live.lands_at_ms());
        build(&cam.view(), &arcs, live.lands_at_ms(), 0.01, &mut frame);
        let p = shader_point(&frame.trails, 1.0);
        assert!((p - lat_lon_to_unit(48.85, 2.35)).length() < 1e-5);
        assert_eq!(frame.ring_count(), 1);
        assert_eq!(frame.rings[6], 0.0);

        // After the trail drains, nothing is left to draw but the ring.
        arcs.update(live.ends_at_ms() + 1.0);
        build(
            &cam.view(),
            &arcs,
            live.ends_at_ms() + 1.0,
            0.01,
            &mut frame,
        );
        assert_eq!(frame.trail_count(), 0);
        assert_eq!(frame.ring_count(), 1);
        assert!(frame.rings[6] > 0.0 && frame.rings[6] < 1.0);
    }

    #[test]
    fn frame_sizes_and_uniforms_are_sane_on_tv_and_phone() {
        let arcs = ArcField::new();
        let mut frame = FrameData::default();
        for (w, h, dpr) in [
            (1920.0, 1080.0, 1.0),
            (3840.0, 2160.0, 1.0),
            (390.0, 844.0, 3.0),
        ] {
            let mut cam = Camera::new();
            cam.set_viewport(Viewport::new(w, h, dpr));
            build(&cam.view(), &arcs, 0.0, 0.0117, &mut frame);
            let d = frame.dpr;
            assert!(frame.dot_size_px >= 1.0 && frame.dot_size_px <= 8.0 * d);
            assert!(frame.line_width_px >= 1.5 * d && frame.line_width_px <= 7.0 * d);
            assert_eq!(
                frame.viewport_px,
                [(w * f64::from(d)) as f32, (h * f64::from(d)) as f32]
            );
            assert!(frame.mvp.iter().all(|v| v.is_finite()));
            assert_eq!(frame.trail_count(), 0);
        }
    }

    #[test]
    fn per_frame_upload_is_bounded() {
        let mut arcs = ArcField::new();
        let flood = vec![order((-33.87, 151.21), (40.71, -74.0)); 10_000];
        let cam = Camera::new();
        let mut frame = FrameData::default();
        let mut t = 0.0;
        for _ in 0..100 {
            arcs.schedule(&flood, t, 200.0);
            for _ in 0..12 {
                t += 16.7;
                arcs.update(t);
                build(&cam.view(), &arcs, t, 0.01, &mut frame);
                assert!(frame.trail_count() <= MAX_ACTIVE);
                assert!(frame.trails.iter().all(|v| v.is_finite()));
            }
        }
        assert!(frame.trails.capacity() <= MAX_ACTIVE * TRAIL_FLOATS * 2);
    }

    #[test]
    fn arcs_hidden_by_the_globe_are_culled_and_limb_peekers_kept() {
        let eye = Vec3::new(0.0, 0.0, 3.0);
        let at = |lat: f64, lon: f64| crate::geo::lat_lon_to_unit(lat, lon);
        // Which way the eye looks: find the lon facing +z.
        let facing = if at(0.0, 0.0).dot(eye) > 0.0 {
            0.0
        } else {
            180.0
        };
        let near = GreatArc::new(at(0.0, facing - 10.0), at(10.0, facing + 10.0));
        let far = GreatArc::new(at(0.0, facing + 170.0), at(10.0, facing + 190.0));
        assert!(!behind_the_globe(&near, 0.0, 1.0, eye));
        assert!(behind_the_globe(&far, 0.0, 1.0, eye));
        // A long arc from the far side over the limb rises high enough
        // to be seen, and so is kept.
        let over = GreatArc::new(at(0.0, facing + 150.0), at(0.0, facing - 20.0));
        assert!(!behind_the_globe(&over, 0.0, 1.0, eye));
        // Only the part drawn counts: its far-side beginning is hidden.
        assert!(behind_the_globe(&over, 0.0, 0.05, eye));
    }
}
