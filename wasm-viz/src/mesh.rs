//! Static geometry built once: the globe's sphere mesh, the sky around it
//! and the star field.

use std::f64::consts::PI;

/// Latitude bands and longitude segments of the sphere. At 32x64 a segment
/// is 5.6°, and a triangle's corners lie up to 0.25% of the radius outside
/// the sphere through its middle: the globe is drawn at [`GLOBE_SCALE`],
/// so that land dots and arcs at radius 1 are never hidden by it. (Every
/// vertex costs a software renderer: 48x96 cost about 1.5 ms a frame
/// more.)
pub const SPHERE_BANDS: u16 = 32;
pub const SPHERE_SEGMENTS: u16 = 64;
/// The drawn globe's radius: the mesh's flat triangles then stay inside
/// the unit sphere.
pub const GLOBE_SCALE: f32 = 0.997;

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

/// Rings of the sky mesh, as distances from the globe's centre in
/// silhouette radii: dense where the glow falls off fast, the last one past
/// any screen. The first sits a little inside the silhouette, so that no
/// gap opens between the sky and the globe's polygon, drawn over it.
pub const SKY_RINGS: [f64; 18] = [
    0.97, 1.02, 1.045, 1.075, 1.11, 1.15, 1.2, 1.27, 1.35, 1.45, 1.6, 1.8, 2.1, 2.5, 3.0, 4.0, 6.0,
    40.0,
];
/// Sectors around each ring.
pub const SKY_SECTORS: u16 = 64;
/// Floats per sky vertex: offset from the globe's centre in silhouette
/// radii (x, y), then its colour (r, g, b).
pub const SKY_FLOATS: usize = 5;

/// The sky's colour at `x` silhouette radii outside the globe: deep space,
/// a faint halo, and the atmosphere's outer glow (its inner rim is in the
/// globe's shader).
pub fn sky_color(x: f64) -> [f32; 3] {
    let x = x.max(0.0);
    let deep = [0.006, 0.010, 0.024];
    let halo = [0.020, 0.046, 0.105];
    let glow = [0.28, 0.58, 1.0];
    let h = (-x * 1.35).exp();
    let g = 0.38 * (-x * 18.0).exp() + 0.12 * (-x * 4.5).exp();
    [0, 1, 2].map(|i| (deep[i] + (halo[i] - deep[i]) * h + glow[i] * g) as f32)
}

/// The sky as rings around the globe's disc, each vertex carrying its
/// colour: on a software renderer an interpolated colour is the cheapest
/// pixel there is, and the sky is most of the screen.
pub fn sky() -> (Vec<f32>, Vec<u16>) {
    let row = SKY_SECTORS + 1;
    let mut vertices = Vec::with_capacity(SKY_RINGS.len() * usize::from(row) * SKY_FLOATS);
    for &r in &SKY_RINGS {
        let c = sky_color(r - 1.0);
        for k in 0..=SKY_SECTORS {
            let a = 2.0 * PI * f64::from(k) / f64::from(SKY_SECTORS);
            vertices.extend_from_slice(&[(r * a.cos()) as f32, (r * a.sin()) as f32]);
            vertices.extend_from_slice(&c);
        }
    }
    let mut indices = Vec::new();
    for ring in 0..SKY_RINGS.len() as u16 - 1 {
        for k in 0..SKY_SECTORS {
            let a = ring * row + k;
            let out = a + row;
            indices.extend_from_slice(&[a, out, a + 1, a + 1, out, out + 1]);
        }
    }
    (vertices, indices)
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
        let (bands, segments) = (usize::from(SPHERE_BANDS), usize::from(SPHERE_SEGMENTS));
        assert_eq!(s.indices.len(), bands * segments * 6);
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
        assert_eq!(outward, s.indices.len() / 3 - 2 * segments);
    }

    #[test]
    fn the_drawn_globe_stays_inside_the_unit_sphere() {
        // The middle of the largest triangle (at the equator) lies within
        // GLOBE_SCALE's margin of the true sphere.
        let s = sphere(SPHERE_BANDS, SPHERE_SEGMENTS);
        let scale = f64::from(GLOBE_SCALE);
        let mut deepest = 1.0f64;
        for tri in s.indices.chunks_exact(3) {
            let [a, b, c] = [tri[0], tri[1], tri[2]].map(|i| vertex(&s, i));
            let mid = (a + b + c) * (1.0 / 3.0);
            deepest = deepest.min(mid.length());
        }
        assert!(deepest * (1.0 / scale) > 1.0, "{deepest}");
        assert!(
            scale > 0.99,
            "the silhouette stays within the sky's first ring"
        );
    }

    #[test]
    fn the_sky_covers_the_screen_around_the_globe_and_glows_at_its_edge() {
        let (v, idx) = sky();
        let n = v.len() / SKY_FLOATS;
        assert_eq!(n, SKY_RINGS.len() * (usize::from(SKY_SECTORS) + 1));
        assert!(idx.iter().all(|&i| usize::from(i) < n));
        assert_eq!(
            idx.len(),
            (SKY_RINGS.len() - 1) * usize::from(SKY_SECTORS) * 6
        );
        // Inside the silhouette where it starts, past any screen where it
        // ends (a globe a tenth of the screen high still leaves it behind).
        assert!(SKY_RINGS[0] < 1.0 && SKY_RINGS[SKY_RINGS.len() - 1] > 30.0);
        assert!(SKY_RINGS.windows(2).all(|w| w[0] < w[1]));
        // Brightest at the globe's edge, fading to deep space.
        let edge = sky_color(0.0);
        let far = sky_color(39.0);
        assert!(edge[2] > 0.5 && far[2] < 0.03);
        // Where the glow falls off fastest, rings are close enough that the
        // straight lines between them stay within a level or two of 255.
        for w in SKY_RINGS.windows(2) {
            let (a, b) = (w[0].max(1.0) - 1.0, w[1] - 1.0);
            let mid = sky_color((a + b) / 2.0)[2];
            let lerp = (sky_color(a)[2] + sky_color(b)[2]) / 2.0;
            assert!(
                (mid - lerp).abs() * 255.0 < 6.0,
                "{a}..{b}: {mid} vs {lerp}"
            );
        }
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
