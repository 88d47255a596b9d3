//! Moments for the audience: a shop's first sale of the event and the
//! sale's total passing a milestone, as snapshots announce them (the
//! server decides what is a moment; see the schema's `Moment`).
//!
//! Each moment becomes a *mark* drawn over the globe for [`MARK_MS`]: a
//! burst where the shop is (only while that side faces the viewer), or,
//! for a milestone, a halo around the whole globe. Marks are a handful of
//! page elements placed from [`Moments::marks`] each frame, not GL draws:
//! they cost the renderer nothing, and they stay sharp at every quality
//! tier. Each moment is also an *announcement* for the page to write out,
//! in its live region for screen readers included ([`Moments::json`]).

use std::collections::VecDeque;
use std::fmt::Write as _;

use livemap_wire::{Moment, MomentKind};

use crate::camera::View;
use crate::geo::{lat_lon_to_unit, Vec3};

/// How long a mark is drawn.
pub const MARK_MS: f64 = 4_000.0;
/// Most marks at once: the newest win.
pub const MAX_MARKS: usize = 8;
/// Announcements kept for the page (the newest).
pub const MAX_ANNOUNCEMENTS: usize = 8;
/// Longest place or country kept, in characters.
const MAX_TEXT_CHARS: usize = 64;
/// Floats per mark in [`Moments::marks`].
pub const MARK_FLOATS: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Mark {
    kind: MomentKind,
    /// On the unit sphere (first sales).
    at: Vec3,
    /// The same on the flat map (`flat::project`).
    flat: (f64, f64),
    born_ms: f64,
}

/// One moment as the page announces it.
#[derive(Clone, Debug, PartialEq)]
struct Announcement {
    /// Grows by one per announcement: the page's cursor.
    seq: u64,
    kind: MomentKind,
    place: String,
    country: String,
    usd_cents: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Moments {
    marks: VecDeque<Mark>,
    announcements: VecDeque<Announcement>,
    seq: u64,
}

fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT_CHARS)
        .collect()
}

impl Moments {
    pub fn new() -> Moments {
        Moments::default()
    }

    /// Takes a new snapshot's moments (never a repeat's: the scene
    /// applies each version once).
    pub fn add(&mut self, moments: &[Moment], now_ms: f64) {
        for m in moments {
            let (lat, lon) = (f64::from(m.shop.lat), f64::from(m.shop.lon));
            let (at, flat) = if m.kind == MomentKind::FirstSale {
                if !(lat.is_finite() && lon.is_finite()) {
                    continue;
                }
                (lat_lon_to_unit(lat, lon), crate::flat::project(lat, lon))
            } else {
                (Vec3::new(0.0, 0.0, 0.0), (0.5, 0.5))
            };
            if self.marks.len() == MAX_MARKS {
                self.marks.pop_front();
            }
            self.marks.push_back(Mark {
                kind: m.kind,
                at,
                flat,
                born_ms: now_ms,
            });
            self.seq += 1;
            if self.announcements.len() == MAX_ANNOUNCEMENTS {
                self.announcements.pop_front();
            }
            self.announcements.push_back(Announcement {
                seq: self.seq,
                kind: m.kind,
                place: clean(&m.place),
                country: clean(&m.country),
                usd_cents: m.usd_cents,
            });
        }
    }

    /// The newest announcement's number (0 before any): the page asks
    /// for [`Moments::json`] only when it moves.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Forgets marks older than [`MARK_MS`].
    pub fn update(&mut self, now_ms: f64) {
        while self
            .marks
            .front()
            .is_some_and(|m| now_ms - m.born_ms > MARK_MS)
        {
            self.marks.pop_front();
        }
    }

    /// The marks to draw now, in CSS pixels of the canvas:
    /// [`MARK_FLOATS`] per mark: x, y, age (0 new → 1 gone), kind (0 a
    /// first sale, 1 a milestone) and size (a milestone's globe radius;
    /// 0 for a first sale). A first sale on the far side is left out.
    pub fn marks(&self, view: &View, globe_radius_css: f64, now_ms: f64) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.marks.len() * MARK_FLOATS);
        let vp = view.viewport;
        for m in &self.marks {
            let age = ((now_ms - m.born_ms) / MARK_MS).clamp(0.0, 1.0);
            let (point, kind, size) = match m.kind {
                MomentKind::FirstSale => {
                    // Facing the viewer: the eye is on the point's side.
                    let to_eye = view.eye_model - m.at;
                    if m.at.dot(to_eye) <= 0.0 {
                        continue;
                    }
                    (m.at, 0.0, 0.0)
                }
                MomentKind::Milestone => (Vec3::new(0.0, 0.0, 0.0), 1.0, globe_radius_css),
            };
            let c = view.mvp.apply(point, 1.0);
            if c[3] <= 0.0 {
                continue;
            }
            let (x, y) = (c[0] / c[3], c[1] / c[3]);
            out.extend([
                ((x + 1.0) / 2.0 * vp.css_width) as f32,
                ((1.0 - y) / 2.0 * vp.css_height) as f32,
                age as f32,
                kind,
                size as f32,
            ]);
        }
        out
    }

    /// The marks for the flat map of screens without WebGL2: four floats
    /// each, x and y on the map (0..1, as `flat.rs`; a milestone at the
    /// map's centre), age (0..1) and kind (0 a first sale, 1 a
    /// milestone).
    pub fn flat_marks(&self, now_ms: f64) -> Vec<f32> {
        self.marks
            .iter()
            .flat_map(|m| {
                let age = ((now_ms - m.born_ms) / MARK_MS).clamp(0.0, 1.0);
                let kind = if m.kind == MomentKind::Milestone {
                    1.0
                } else {
                    0.0
                };
                [m.flat.0 as f32, m.flat.1 as f32, age as f32, kind]
            })
            .collect()
    }

    /// The announcements kept, oldest first, as JSON for the page:
    /// `[{"seq":3,"kind":"first_sale","place":"Lyon","country":"FR"},
    /// {"seq":4,"kind":"milestone","usd_cents":100000000}]`.
    pub fn json(&self) -> String {
        let mut out = String::from("[");
        for (i, a) in self.announcements.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"seq\":{},\"kind\":\"{}\"", a.seq, a.kind.as_str());
            match a.kind {
                MomentKind::FirstSale => {
                    out.push_str(",\"place\":");
                    crate::board::push_string(&mut out, &a.place);
                    out.push_str(",\"country\":");
                    crate::board::push_string(&mut out, &a.country);
                }
                MomentKind::Milestone => {
                    let _ = write!(out, ",\"usd_cents\":{}", a.usd_cents);
                }
            }
            out.push('}');
        }
        out.push(']');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::{Camera, Viewport};
    use livemap_wire::LatLon;

    fn first_sale(lat: f32, lon: f32, place: &str) -> Moment {
        Moment {
            kind: MomentKind::FirstSale,
            shop: LatLon { lat, lon },
            place: place.into(),
            country: "FR".into(),
            ..Moment::default()
        }
    }

    fn camera_facing(lat: f64, lon: f64) -> Camera {
        let mut cam = Camera::new();
        cam.set_viewport(Viewport::new(1280.0, 720.0, 1.0));
        cam.lat = lat;
        cam.lon = lon;
        cam
    }

    #[test]
    fn a_first_sale_is_marked_where_the_shop_is_while_its_side_faces_us() {
        let mut m = Moments::new();
        m.add(&[first_sale(45.75, 4.85, "Lyon")], 1_000.0);
        let cam = camera_facing(45.75, 4.85);
        let view = cam.view();
        let marks = m.marks(&view, cam.globe_radius_css(), 1_500.0);
        assert_eq!(marks.len(), MARK_FLOATS);
        // Facing it, the shop is the globe's centre on screen.
        let centre = view.mvp.apply(Vec3::new(0.0, 0.0, 0.0), 1.0);
        let cx = ((centre[0] / centre[3] + 1.0) / 2.0 * 1280.0) as f32;
        let cy = ((1.0 - centre[1] / centre[3]) / 2.0 * 720.0) as f32;
        assert!(
            (marks[0] - cx).abs() < 1.0 && (marks[1] - cy).abs() < 1.0,
            "{marks:?}"
        );
        assert!((marks[2] - 0.125).abs() < 1e-6, "age {}", marks[2]);
        assert_eq!(marks[3], 0.0);
        // From the other side of the world it is hidden.
        let far = camera_facing(-45.75, -175.15).view();
        assert!(m.marks(&far, 100.0, 1_500.0).is_empty());
        // The flat map shows it wherever it is.
        let flat = m.flat_marks(1_500.0);
        let (x, y) = crate::flat::project(45.75, 4.85);
        assert!((f64::from(flat[0]) - x).abs() < 1e-4 && (f64::from(flat[1]) - y).abs() < 1e-4);
        assert_eq!(flat[3], 0.0);
    }

    #[test]
    fn a_milestone_circles_the_globe_and_marks_expire() {
        let mut m = Moments::new();
        m.add(
            &[Moment {
                kind: MomentKind::Milestone,
                usd_cents: 1_000_000_000,
                ..Moment::default()
            }],
            0.0,
        );
        let cam = camera_facing(20.0, -85.0);
        let marks = m.marks(&cam.view(), cam.globe_radius_css(), 10.0);
        assert_eq!(marks[3], 1.0);
        assert!((f64::from(marks[4]) - cam.globe_radius_css()).abs() < 1.0);
        m.update(MARK_MS + 1.0);
        assert!(m.marks(&cam.view(), 1.0, MARK_MS + 1.0).is_empty());
        // The announcement stays for the page.
        assert_eq!(m.seq(), 1);
        assert_eq!(
            m.json(),
            "[{\"seq\":1,\"kind\":\"milestone\",\"usd_cents\":1000000000}]"
        );
    }

    #[test]
    fn marks_and_announcements_are_capped_and_text_is_cleaned() {
        let mut m = Moments::new();
        let many: Vec<Moment> = (0..50)
            .map(|i| first_sale(10.0, i as f32, &format!("Town{i}\u{7}\"x\"")))
            .collect();
        m.add(&many, 0.0);
        assert_eq!(m.marks.len(), MAX_MARKS);
        assert_eq!(m.announcements.len(), MAX_ANNOUNCEMENTS);
        assert_eq!(m.seq(), 50);
        let json = m.json();
        assert!(json.starts_with("[{\"seq\":43,"), "{json}");
        assert!(json.contains("\"place\":\"Town49\\\"x\\\"\""), "{json}");
        assert!(!json.contains('\u{7}'));
        // A point that is not one is dropped, not drawn at NaN.
        m.add(&[first_sale(f32::NAN, 0.0, "")], 0.0);
        assert_eq!(m.seq(), 50);
    }
}
