//! The land data (dotted lattice and coastlines) and their parsers.
//!
//! Formats are described in `wasm-viz/data/README.md`: little-endian, a
//! 4-byte magic, `u32` counts; the land is one bit per point of a
//! Fibonacci lattice (the lattice itself is computed, which is why the file
//! is 11 KB instead of 103 KB), coastlines are `i16` lat then lon in
//! centidegrees. The files are compiled in; the parsers still treat them as
//! untrusted bytes (no panics, no allocation beyond what the input holds).

use std::fmt;

use crate::geo::{lat_lon_to_unit, Vec3};

pub const LAND_MASK_BIN: &[u8] = include_bytes!("../data/land-mask.bin");
/// The size of the lattice [`LAND_MASK_BIN`] covers (checked by a test).
pub const LATTICE_POINTS: usize = 90_000;
pub const COASTLINES_BIN: &[u8] = include_bytes!("../data/coastlines.bin");

/// A point of the land data, in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

impl Point {
    pub fn unit(self) -> Vec3 {
        lat_lon_to_unit(self.lat, self.lon)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    BadMagic {
        expected: [u8; 4],
    },
    /// The input ends before the data it announces.
    Truncated {
        needed: usize,
        available: usize,
    },
    /// Bytes left over after the last record.
    TrailingBytes(usize),
    OutOfRange {
        lat: i16,
        lon: i16,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::BadMagic { expected } => {
                write!(
                    f,
                    "bad magic, expected {:?}",
                    String::from_utf8_lossy(expected)
                )
            }
            ParseError::Truncated { needed, available } => {
                write!(f, "truncated: needed {needed} bytes, {available} left")
            }
            ParseError::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
            ParseError::OutOfRange { lat, lon } => {
                write!(f, "point out of range: lat {lat} lon {lon} centidegrees")
            }
        }
    }
}

impl std::error::Error for ParseError {}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if self.buf.len() < n {
            return Err(ParseError::Truncated {
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn magic(&mut self, expected: &[u8; 4]) -> Result<(), ParseError> {
        if self.buf.get(..4) != Some(&expected[..]) {
            return Err(ParseError::BadMagic {
                expected: *expected,
            });
        }
        self.buf = &self.buf[4..];
        Ok(())
    }

    fn u32(&mut self) -> Result<usize, ParseError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// `count` points; checks the length before allocating anything.
    fn points(&mut self, count: usize) -> Result<Vec<Point>, ParseError> {
        let needed = count.checked_mul(4).ok_or(ParseError::Truncated {
            needed: usize::MAX,
            available: self.buf.len(),
        })?;
        let bytes = self.take(needed)?;
        bytes
            .chunks_exact(4)
            .map(|c| {
                let lat = i16::from_le_bytes([c[0], c[1]]);
                let lon = i16::from_le_bytes([c[2], c[3]]);
                if !(-9000..=9000).contains(&lat) || !(-18000..=18000).contains(&lon) {
                    return Err(ParseError::OutOfRange { lat, lon });
                }
                Ok(Point {
                    lat: f64::from(lat) / 100.0,
                    lon: f64::from(lon) / 100.0,
                })
            })
            .collect()
    }

    fn finish(self) -> Result<(), ParseError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(ParseError::TrailingBytes(n)),
        }
    }
}

/// Point `i` of the `n`-point Fibonacci (golden-spiral) lattice: equal-area
/// steps in latitude from north to south, the golden angle in longitude.
/// `tools/derive_land.py` uses the same formula to decide which are land.
pub fn lattice_point(i: usize, n: usize) -> Point {
    let golden = (1.0 + 5f64.sqrt()) / 2.0;
    let z = 1.0 - (2.0 * i as f64 + 1.0) / n as f64;
    Point {
        lat: z.clamp(-1.0, 1.0).asin().to_degrees(),
        lon: (i as f64 * 360.0 / golden) % 360.0 - 180.0,
    }
}

/// How many land points `land-mask.bin` holds, without computing them.
pub fn count_land(buf: &[u8]) -> Result<usize, ParseError> {
    let mut r = Reader { buf };
    r.magic(b"LMSK")?;
    let n = r.u32()?;
    let bits = r.take(n.div_ceil(8))?;
    r.finish()?;
    Ok((0..n).filter(|i| bits[i / 8] & (1 << (i % 8)) != 0).count())
}

/// Parses `land-mask.bin` into the land points of its lattice, north to
/// south.
pub fn parse_land(buf: &[u8]) -> Result<Vec<Point>, ParseError> {
    let mut r = Reader { buf };
    r.magic(b"LMSK")?;
    let n = r.u32()?;
    let bits = r.take(n.div_ceil(8))?;
    r.finish()?;
    Ok((0..n)
        .filter(|i| bits[i / 8] & (1 << (i % 8)) != 0)
        .map(|i| lattice_point(i, n))
        .collect())
}

/// Parses `coastlines.bin` into polylines (to be drawn as line strips).
pub fn parse_coastlines(buf: &[u8]) -> Result<Vec<Vec<Point>>, ParseError> {
    let mut r = Reader { buf };
    r.magic(b"LCST")?;
    let rings = r.u32()?;
    // Each ring needs at least its 4-byte count: bound the allocation.
    let mut out = Vec::with_capacity(rings.min(r.buf.len() / 4));
    for _ in 0..rings {
        let n = r.u32()?;
        out.push(r.points(n)?);
    }
    r.finish()?;
    Ok(out)
}

/// The land points of a coarser `n`-point lattice, from the land points of
/// a finer one (`fine`, from an `fine_n`-point lattice): a coarse point is
/// land when a fine land point lies within 0.6 of the fine spacing, about
/// the radius of a fine point's own patch. Slow screens draw these
/// (`quality.rs`): half the dots, still evenly spread, where taking every
/// other fine point would draw spiral streaks.
pub fn coarser(fine: &[Point], fine_n: usize, n: usize) -> Vec<Point> {
    if fine_n == 0 || n == 0 {
        return Vec::new();
    }
    let spacing_deg = (4.0 * std::f64::consts::PI / fine_n as f64)
        .sqrt()
        .to_degrees();
    let reach_deg = 0.6 * spacing_deg;
    let cos_reach = reach_deg.to_radians().cos();
    // Fine land points by 1° latitude band, sorted by longitude.
    let band = |lat: f64| (lat + 90.0).floor().clamp(0.0, 179.0) as usize;
    let mut bands: Vec<Vec<Point>> = vec![Vec::new(); 180];
    for &p in fine {
        bands[band(p.lat)].push(p);
    }
    bands
        .iter_mut()
        .for_each(|b| b.sort_by(|x, y| x.lon.total_cmp(&y.lon)));
    (0..n)
        .map(|i| lattice_point(i, n))
        .filter(|q| {
            let centre = q.unit();
            // Longitude degrees shrink towards the poles.
            let lon_reach = (reach_deg / q.lat.to_radians().cos().max(0.02)).min(180.0);
            let b = band(q.lat);
            (b.saturating_sub(1)..=(b + 1).min(179)).any(|b| {
                let points = &bands[b];
                // Looked for at the longitude and across the antimeridian.
                [q.lon, q.lon - 360.0, q.lon + 360.0].iter().any(|&lon| {
                    let from = points.partition_point(|p| p.lon < lon - lon_reach);
                    points[from..]
                        .iter()
                        .take_while(|p| p.lon <= lon + lon_reach)
                        .any(|p| p.unit().dot(centre) >= cos_reach)
                })
            })
        })
        .collect()
}

/// The indices of the `dots` (unit vectors) on the side of the globe
/// that faces `eye`, into `out`: about half of them, the only ones worth
/// sending through the vertex shader. A unit-sphere point p is seen from E
/// when p·E > 1 (the same test the land shader fades by).
pub fn facing(dots: &[[f32; 3]], eye: [f32; 3], out: &mut Vec<u32>) {
    out.clear();
    out.extend(
        dots.iter()
            .enumerate()
            .filter(|(_, p)| p[0] * eye[0] + p[1] * eye[1] + p[2] * eye[2] > 1.0)
            .map(|(i, _)| i as u32),
    );
}

/// Land dots as x, y, z floats on the unit sphere.
pub fn dot_vertices(dots: &[Point]) -> Vec<f32> {
    dots.iter().flat_map(|p| p.unit().to_f32()).collect()
}

/// Coastline polylines as independent segments (x, y, z pairs) for one
/// `LINES` draw call, lifted a hair above the surface.
pub fn coastline_segments(rings: &[Vec<Point>]) -> Vec<f32> {
    const LIFT: f64 = 1.0015;
    let mut out = Vec::new();
    for ring in rings {
        for pair in ring.windows(2) {
            for p in pair {
                out.extend_from_slice(&(p.unit() * LIFT).to_f32());
            }
        }
    }
    out
}

/// Great-circle spacing between neighbouring dots, in radians, assuming
/// they cover about 29% of the sphere (Earth's land share) evenly.
pub fn dot_spacing(dot_count: usize) -> f64 {
    const LAND_SHARE_STERADIANS: f64 = 0.29 * 4.0 * std::f64::consts::PI;
    (LAND_SHARE_STERADIANS / dot_count.max(1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_file(n: u32, land: &[usize]) -> Vec<u8> {
        let mut bits = vec![0u8; (n as usize).div_ceil(8)];
        for &i in land {
            bits[i / 8] |= 1 << (i % 8);
        }
        let mut b = b"LMSK".to_vec();
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&bits);
        b
    }

    fn coast_file(rings: &[&[(i16, i16)]]) -> Vec<u8> {
        let mut b = b"LCST".to_vec();
        b.extend_from_slice(&(rings.len() as u32).to_le_bytes());
        for ring in rings {
            b.extend_from_slice(&(ring.len() as u32).to_le_bytes());
            for (lat, lon) in *ring {
                b.extend_from_slice(&lat.to_le_bytes());
                b.extend_from_slice(&lon.to_le_bytes());
            }
        }
        b
    }

    #[test]
    fn the_lattice_covers_the_sphere_evenly_from_north_to_south() {
        let n = 1_000;
        let points: Vec<Point> = (0..n).map(|i| lattice_point(i, n)).collect();
        assert!(points.windows(2).all(|w| w[0].lat > w[1].lat));
        assert!(points[0].lat > 87.0 && points[n - 1].lat < -87.0);
        assert!(points.iter().all(|p| (-180.0..180.0).contains(&p.lon)));
        // Equal area: a tenth of the points in each tenth of the sphere's
        // height (z = sin lat).
        for band in 0..10 {
            let z0 = -1.0 + 0.2 * f64::from(band);
            let inside = points
                .iter()
                .filter(|p| (z0..z0 + 0.2).contains(&p.lat.to_radians().sin()))
                .count();
            assert_eq!(inside, 100, "band {band}");
        }
    }

    #[test]
    fn parses_constructed_masks() {
        let land = parse_land(&mask_file(20, &[0, 9, 19])).expect("parses");
        assert_eq!(
            land,
            vec![
                lattice_point(0, 20),
                lattice_point(9, 20),
                lattice_point(19, 20)
            ]
        );
        assert_eq!(
            parse_land(&mask_file(0, &[])).expect("empty is fine"),
            vec![]
        );
    }

    #[test]
    fn rejects_truncated_foreign_and_padded_masks() {
        let good = mask_file(20, &[1, 2]);
        for cut in 0..good.len() {
            assert!(parse_land(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            parse_land(b"LCST\0\0\0\0"),
            Err(ParseError::BadMagic { .. })
        ));
        let mut padded = good.clone();
        padded.push(0);
        assert_eq!(parse_land(&padded), Err(ParseError::TrailingBytes(1)));
        // A huge announced count fails on length, without allocating.
        let mut huge = b"LMSK".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse_land(&huge),
            Err(ParseError::Truncated { .. })
        ));
    }

    #[test]
    fn parses_and_rejects_constructed_coastlines() {
        let file = coast_file(&[
            &[(0, 0), (0, 100), (100, 100), (0, 0)],
            &[(5000, -17999), (5000, 18000)],
        ]);
        let rings = parse_coastlines(&file).expect("parses");
        assert_eq!(rings.len(), 2);
        assert_eq!(rings[0].len(), 4);
        assert_eq!(
            rings[1][1],
            Point {
                lat: 50.0,
                lon: 180.0
            }
        );
        // 3 + 1 segments, 2 vertices of 3 floats each.
        assert_eq!(coastline_segments(&rings).len(), 4 * 2 * 3);
        for cut in 0..file.len() {
            assert!(parse_coastlines(&file[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = b"LCST".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_coastlines(&huge).is_err());
    }

    #[test]
    fn embedded_data_parses_and_looks_like_earth() {
        let dots = parse_land(LAND_MASK_BIN).expect("land-mask.bin");
        assert_eq!(dots.len(), 25_866);
        assert_eq!(count_land(LAND_MASK_BIN), Ok(25_866));
        assert!(dots.len() > 5_000, "{}", dots.len());
        let rings = parse_coastlines(COASTLINES_BIN).expect("coastlines.bin");
        assert!(rings.len() > 50);
        // Some land near Toronto, none in the middle of the Pacific.
        let near = |lat: f64, lon: f64| {
            let c = lat_lon_to_unit(lat, lon);
            dots.iter()
                .any(|p| p.unit().dot(c) > (2.0f64).to_radians().cos())
        };
        assert!(near(43.65, -79.38));
        assert!(!near(0.0, -140.0));
        let spacing_km = dot_spacing(dots.len()) * 6371.0;
        assert!((50.0..120.0).contains(&spacing_km), "{spacing_km}");
        let v = dot_vertices(&dots);
        assert_eq!(v.len(), dots.len() * 3);
        for xyz in v.chunks_exact(3) {
            let len = (xyz[0] * xyz[0] + xyz[1] * xyz[1] + xyz[2] * xyz[2]).sqrt();
            assert!((len - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn a_coarser_lattice_keeps_the_land_at_half_the_dots() {
        let fine = parse_land(LAND_MASK_BIN).expect("land");
        assert_eq!(LAND_MASK_BIN[4..8], (LATTICE_POINTS as u32).to_le_bytes());
        let coarse = coarser(&fine, LATTICE_POINTS, LATTICE_POINTS / 2);
        let ratio = coarse.len() as f64 / fine.len() as f64;
        assert!(
            (0.45..0.56).contains(&ratio),
            "{} of {}",
            coarse.len(),
            fine.len()
        );
        // Every coarse dot is near a fine one, and the continents are there.
        let near = |dots: &[Point], lat: f64, lon: f64, deg: f64| {
            let c = lat_lon_to_unit(lat, lon);
            dots.iter()
                .any(|p| p.unit().dot(c) > deg.to_radians().cos())
        };
        for (lat, lon) in [
            (43.65, -79.38),
            (-23.5, -46.6),
            (51.5, 0.0),
            (-33.9, 151.2),
            (64.0, 100.0),
        ] {
            assert!(near(&coarse, lat, lon, 2.0), "land near {lat}, {lon}");
        }
        assert!(!near(&coarse, 0.0, -140.0, 5.0), "no land mid-Pacific");
        assert!(coarser(&[], 90_000, 100).is_empty());
        assert!(coarser(&fine, 0, 100).is_empty());
    }

    #[test]
    fn only_the_dots_facing_the_eye_are_kept() {
        let dots: Vec<[f32; 3]> = parse_land(LAND_MASK_BIN)
            .expect("land")
            .iter()
            .map(|p| p.unit().to_f32())
            .collect();
        let eye = [0.0, 0.0, 3.0];
        let mut out = Vec::new();
        facing(&dots, eye, &mut out);
        let share = out.len() as f64 / dots.len() as f64;
        // A third of the sphere is seen from three radii away (1 - 1/3
        // of its height, over 2).
        assert!((0.2..0.5).contains(&share), "{share}");
        assert!(out.iter().all(|&i| dots[i as usize][2] > 1.0 / 3.0));
        assert!(out.windows(2).all(|w| w[0] < w[1]));
    }
}
