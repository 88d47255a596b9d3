//! Globe geometry: latitude/longitude to unit vectors and great-circle arcs
//! that rise above the surface.
//!
//! Model space: the globe is the unit sphere, +y is the north pole, lat 0 /
//! lon 0 is +z and lon 90°E is +x. The arc shader evaluates the same formula
//! as [`GreatArc::point`] from the same four numbers (start, tangent, angle,
//! height), so what is tested here is what is drawn.

use std::f64::consts::PI;
use std::ops::{Add, Mul, Neg, Sub};

/// A 3-vector in model space.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Vec3 {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

impl Vec3 {
    pub const X: Vec3 = Vec3::new(1.0, 0.0, 0.0);
    pub const Y: Vec3 = Vec3::new(0.0, 1.0, 0.0);
    pub const Z: Vec3 = Vec3::new(0.0, 0.0, 1.0);

    pub const fn new(x: f64, y: f64, z: f64) -> Vec3 {
        Vec3 { x, y, z }
    }

    pub fn dot(self, o: Vec3) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    pub fn cross(self, o: Vec3) -> Vec3 {
        Vec3::new(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }

    pub fn length(self) -> f64 {
        self.dot(self).sqrt()
    }

    /// The unit vector in the same direction, or `None` for a (near) zero
    /// vector, so callers must decide what a degenerate direction means.
    pub fn normalized(self) -> Option<Vec3> {
        let len = self.length();
        (len > 1e-12 && len.is_finite()).then(|| self * (1.0 / len))
    }

    pub fn to_f32(self) -> [f32; 3] {
        [self.x as f32, self.y as f32, self.z as f32]
    }
}

impl Add for Vec3 {
    type Output = Vec3;
    fn add(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}

impl Sub for Vec3 {
    type Output = Vec3;
    fn sub(self, o: Vec3) -> Vec3 {
        Vec3::new(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}

impl Mul<f64> for Vec3 {
    type Output = Vec3;
    fn mul(self, k: f64) -> Vec3 {
        Vec3::new(self.x * k, self.y * k, self.z * k)
    }
}

impl Neg for Vec3 {
    type Output = Vec3;
    fn neg(self) -> Vec3 {
        self * -1.0
    }
}

/// The unit vector for a latitude/longitude in degrees. Out-of-range or
/// non-finite input is clamped/zeroed rather than producing NaN, because it
/// comes straight off the wire.
pub fn lat_lon_to_unit(lat_deg: f64, lon_deg: f64) -> Vec3 {
    let lat = if lat_deg.is_finite() {
        lat_deg.clamp(-90.0, 90.0)
    } else {
        0.0
    };
    let lon = if lon_deg.is_finite() { lon_deg } else { 0.0 };
    let (lat, lon) = (lat.to_radians(), lon.to_radians());
    Vec3::new(lat.cos() * lon.sin(), lat.sin(), lat.cos() * lon.cos())
}

/// The inverse of [`lat_lon_to_unit`], in degrees (lon in (-180, 180]).
pub fn unit_to_lat_lon(v: Vec3) -> (f64, f64) {
    let lat = v.y.clamp(-1.0, 1.0).asin().to_degrees();
    let lon = v.x.atan2(v.z).to_degrees();
    (lat, lon)
}

/// Peak altitude of an arc, in globe radii, per radian of great-circle
/// distance; capped so that antipodal arcs stay on screen.
pub const HEIGHT_PER_RADIAN: f64 = 0.11;
pub const MAX_HEIGHT: f64 = 0.28;

/// A great-circle arc from `start` through `tangent` over `angle` radians,
/// rising to `height` globe radii above the surface at its middle.
///
/// Stored as an orthonormal pair rather than as two endpoints so that
/// evaluating it never divides by `sin(angle)`: identical and antipodal
/// endpoints are both well defined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GreatArc {
    pub start: Vec3,
    /// Unit vector perpendicular to `start`, pointing along the arc.
    pub tangent: Vec3,
    /// Great-circle distance in radians, in [0, π].
    pub angle: f64,
    /// Peak altitude above the surface, in globe radii.
    pub height: f64,
}

impl GreatArc {
    /// The shorter great circle from `from` to `to` (both unit vectors).
    /// Antipodal endpoints go over the northern side (or, from a pole, along
    /// lon 0/180); identical endpoints give a zero-length arc.
    pub fn new(from: Vec3, to: Vec3) -> GreatArc {
        let start = from.normalized().unwrap_or(Vec3::Z);
        let to = to.normalized().unwrap_or(start);
        let cos = start.dot(to).clamp(-1.0, 1.0);
        let sin = start.cross(to).length();
        let angle = sin.atan2(cos);
        let tangent = (to - start * cos)
            .normalized()
            .unwrap_or_else(|| any_perpendicular(start));
        let height = (angle * HEIGHT_PER_RADIAN).min(MAX_HEIGHT);
        GreatArc {
            start,
            tangent,
            angle,
            height,
        }
    }

    pub fn between(from: (f64, f64), to: (f64, f64)) -> GreatArc {
        GreatArc::new(lat_lon_to_unit(from.0, from.1), lat_lon_to_unit(to.0, to.1))
    }

    /// Whether there is anything to draw between the endpoints (about 60 m).
    pub fn is_degenerate(&self) -> bool {
        self.angle < 1e-5
    }

    /// The surface point (unit vector) at `t` in [0, 1].
    pub fn surface(&self, t: f64) -> Vec3 {
        let a = t * self.angle;
        self.start * a.cos() + self.tangent * a.sin()
    }

    /// Altitude above the surface at `t`: 0 at both ends, `height` halfway.
    pub fn altitude(&self, t: f64) -> f64 {
        self.height * (PI * t.clamp(0.0, 1.0)).sin()
    }

    /// The point on the raised arc at `t` in [0, 1].
    pub fn point(&self, t: f64) -> Vec3 {
        self.surface(t) * (1.0 + self.altitude(t))
    }

    pub fn end(&self) -> Vec3 {
        self.surface(1.0)
    }
}

/// Some unit vector perpendicular to `v` (a unit vector): towards the north
/// pole where that is defined, else towards +z.
fn any_perpendicular(v: Vec3) -> Vec3 {
    let toward_north = Vec3::Y - v * v.y;
    toward_north
        .normalized()
        .or_else(|| (Vec3::Z - v * v.z).normalized())
        .unwrap_or(Vec3::X)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TORONTO: (f64, f64) = (43.65, -79.38);
    const AUSTIN: (f64, f64) = (30.27, -97.74);

    fn close(a: Vec3, b: Vec3) -> bool {
        (a - b).length() < 1e-9
    }

    #[test]
    fn lat_lon_axes() {
        assert!(close(lat_lon_to_unit(0.0, 0.0), Vec3::Z));
        assert!(close(lat_lon_to_unit(0.0, 90.0), Vec3::X));
        assert!(close(lat_lon_to_unit(90.0, 33.0), Vec3::Y));
        let (lat, lon) = unit_to_lat_lon(lat_lon_to_unit(TORONTO.0, TORONTO.1));
        assert!((lat - TORONTO.0).abs() < 1e-9 && (lon - TORONTO.1).abs() < 1e-9);
    }

    #[test]
    fn hostile_coordinates_stay_finite() {
        for (lat, lon) in [(f64::NAN, 0.0), (0.0, f64::INFINITY), (1e9, -1e9)] {
            let v = lat_lon_to_unit(lat, lon);
            assert!((v.length() - 1.0).abs() < 1e-9, "{v:?}");
        }
    }

    #[test]
    fn arc_endpoints_are_the_cities_on_the_unit_sphere() {
        let arc = GreatArc::between(TORONTO, AUSTIN);
        for (t, city) in [(0.0, TORONTO), (1.0, AUSTIN)] {
            let p = arc.point(t);
            assert!((p.length() - 1.0).abs() < 1e-9, "t={t} |p|={}", p.length());
            assert!(close(p, lat_lon_to_unit(city.0, city.1)), "t={t}");
        }
    }

    #[test]
    fn arc_peaks_halfway_in_proportion_to_distance() {
        let arc = GreatArc::between(TORONTO, AUSTIN);
        let mid = arc.point(0.5);
        assert!((mid.length() - 1.0 - arc.height).abs() < 1e-9);
        assert!((arc.height - arc.angle * HEIGHT_PER_RADIAN).abs() < 1e-12);
        // Midpoint lies on the great circle, equidistant from both cities.
        let (a, b) = (arc.point(0.0), arc.point(1.0));
        let m = mid.normalized().expect("nonzero");
        assert!((m.dot(a) - m.dot(b)).abs() < 1e-9);
        // Toronto-Austin is about 2,180 km.
        let km = arc.angle * 6371.0;
        assert!((2100.0..2260.0).contains(&km), "{km}");
        // Longer arcs rise higher, up to the cap.
        let long = GreatArc::between(TORONTO, (-33.87, 151.21));
        assert!(long.height > arc.height && long.height <= MAX_HEIGHT);
        for i in 0..=20 {
            let t = f64::from(i) / 20.0;
            assert!(arc.point(t).length() >= 1.0 - 1e-9);
        }
    }

    #[test]
    fn identical_endpoints_are_a_finite_zero_length_arc() {
        let arc = GreatArc::between(TORONTO, TORONTO);
        assert!(arc.is_degenerate());
        assert_eq!(arc.height, 0.0);
        for t in [0.0, 0.5, 1.0] {
            let p = arc.point(t);
            assert!(close(p, lat_lon_to_unit(TORONTO.0, TORONTO.1)), "{p:?}");
        }
        assert!((arc.tangent.length() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn antipodal_endpoints_do_not_nan() {
        for from in [(0.0, 0.0), (45.0, 10.0), (90.0, 0.0), (-90.0, 0.0)] {
            let to = (-from.0, from.1 + 180.0);
            let arc = GreatArc::between(from, to);
            assert!(
                (arc.angle - PI).abs() < 1e-6,
                "{from:?} angle {}",
                arc.angle
            );
            assert!(arc.start.dot(arc.tangent).abs() < 1e-9);
            for i in 0..=10 {
                let p = arc.point(f64::from(i) / 10.0);
                assert!(p.x.is_finite() && p.y.is_finite() && p.z.is_finite());
            }
            let end = lat_lon_to_unit(to.0, to.1);
            assert!((arc.point(1.0) - end).length() < 1e-6, "{from:?}");
        }
    }
}
