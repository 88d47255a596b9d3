//! Static geometry built once: the globe's sphere mesh and the star field.

use std::f64::consts::PI;

/// Latitude bands and longitude segments of the sphere. At 48x96 a segment
/// is 3.75°, so the mesh sits at most 0.06% inside the true sphere: land
/// dots and arcs at radius 1 are never hidden by it.
pub const SPHERE_BANDS: u16 = 48;
pub const SPHERE_SEGMENTS: u16 = 96;

/// A unit sphere: positions (which are also the normals) and triangles,
/// counter-clockwise seen from outside.
#[derive(Clone, Debug)]
pub struct Sphere {
    /// x, y, z per vertex.
    pub positions: Vec<f32>,
    pub indices: Vec<u16>,
}

pub fn sphere(bands: u16, segments: u16) -> Sphere {
    let (bands, segments) = (bands.max(2), segments.max(3));
    let mut positions = Vec::with_capacity(usize::from(bands + 1) * usize::from(segments + 1) * 3);
    for b in 0..=bands {
        // From the north pole down.
        let theta = PI * f64::from(b) / f64::from(bands);
        for s in 0..=segments {
            let phi = 2.0 * PI * f64::from(s) / f64::from(segments);
            positions.extend_from_slice(&[
                (theta.sin() * phi.sin()) as f32,
                theta.cos() as f32,
                (theta.sin() * phi.cos()) as f32,
            ]);
        }
    }
    let row = segments + 1;
    let mut indices = Vec::with_capacity(usize::from(bands) * usize::from(segments) * 6);
    for b in 0..bands {
        for s in 0..segments {
            let a = b * row + s;
            let below = a + row;
            indices.extend_from_slice(&[a, below, a + 1, a + 1, below, below + 1]);
        }
    }
    Sphere { positions, indices }
}

/// Floats per star: x, y (normalized device coordinates), size (CSS px),
/// brightness (0..1).
pub const STAR_FLOATS: usize = 4;

/// A fixed, sparse star field in screen space: mostly faint, a few brighter.
/// Deterministic, so every kiosk shows the same sky.
pub fn stars(count: usize) -> Vec<f32> {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(count * STAR_FLOATS);
    for _ in 0..count {
        let x = rng.next_f32() * 2.0 - 1.0;
        let y = rng.next_f32() * 2.0 - 1.0;
        let m = rng.next_f32();
        let brightness = 0.12 + 0.55 * m * m * m;
        let size = 0.9 + 1.3 * m * m;
        out.extend_from_slice(&[x, y, size, brightness]);
    }
    out
}

struct XorShift(u64);

impl XorShift {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Vec3;

    fn vertex(s: &Sphere, i: u16) -> Vec3 {
        let i = usize::from(i) * 3;
        Vec3::new(
            f64::from(s.positions[i]),
            f64::from(s.positions[i + 1]),
            f64::from(s.positions[i + 2]),
        )
    }

    #[test]
    fn sphere_is_unit_and_faces_outward() {
        let s = sphere(SPHERE_BANDS, SPHERE_SEGMENTS);
        let n_vertices = s.positions.len() / 3;
        assert!(n_vertices <= usize::from(u16::MAX));
        assert_eq!(s.indices.len(), 48 * 96 * 6);
        for i in 0..n_vertices {
            let v = vertex(&s, i as u16);
            assert!((v.length() - 1.0).abs() < 1e-6);
        }
        assert!(s.indices.iter().all(|&i| usize::from(i) < n_vertices));
        // Counter-clockwise from outside: the face normal points away from
        // the centre. One triangle per segment at each pole is degenerate.
        let mut outward = 0;
        for tri in s.indices.chunks_exact(3) {
            let [a, b, c] = [tri[0], tri[1], tri[2]].map(|i| vertex(&s, i));
            let n = (b - a).cross(c - a);
            if n.length() > 1e-9 {
                assert!(n.dot(a + b + c) > 0.0);
                outward += 1;
            }
        }
        assert_eq!(outward, s.indices.len() / 3 - 2 * 96);
    }

    #[test]
    fn stars_are_on_screen_and_deterministic() {
        let a = stars(300);
        assert_eq!(a.len(), 300 * STAR_FLOATS);
        assert_eq!(a, stars(300));
        for s in a.chunks_exact(STAR_FLOATS) {
            assert!((-1.0..=1.0).contains(&s[0]) && (-1.0..=1.0).contains(&s[1]));
            assert!(s[2] > 0.0 && (0.0..=1.0).contains(&s[3]));
        }
    }
}
