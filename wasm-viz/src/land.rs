//! The land data (dotted lattice and coastlines) and their parsers.
//!
//! Formats are described in `wasm-viz/data/README.md`: little-endian, a
//! 4-byte magic, `u32` counts, points as `i16` lat then lon in
//! centidegrees. The files are compiled in; the parsers still treat them as
//! untrusted bytes (no panics, no allocation beyond what the input holds).

use std::fmt;

use crate::geo::{lat_lon_to_unit, Vec3};

pub const LAND_DOTS_BIN: &[u8] = include_bytes!("../data/land-dots.bin");
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

/// Parses `land-dots.bin`.
pub fn parse_dots(buf: &[u8]) -> Result<Vec<Point>, ParseError> {
    let mut r = Reader { buf };
    r.magic(b"LDOT")?;
    let count = r.u32()?;
    let points = r.points(count)?;
    r.finish()?;
    Ok(points)
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

    fn dots_file(points: &[(i16, i16)]) -> Vec<u8> {
        let mut b = b"LDOT".to_vec();
        b.extend_from_slice(&(points.len() as u32).to_le_bytes());
        for (lat, lon) in points {
            b.extend_from_slice(&lat.to_le_bytes());
            b.extend_from_slice(&lon.to_le_bytes());
        }
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
    fn parses_constructed_dots() {
        let pts = parse_dots(&dots_file(&[(4365, -7938), (-9000, 18000)])).expect("parses");
        assert_eq!(
            pts,
            vec![
                Point {
                    lat: 43.65,
                    lon: -79.38
                },
                Point {
                    lat: -90.0,
                    lon: 180.0
                }
            ]
        );
        assert_eq!(parse_dots(&dots_file(&[])).expect("empty is fine"), vec![]);
    }

    #[test]
    fn rejects_truncated_foreign_and_padded_dots() {
        let good = dots_file(&[(100, 200), (300, 400)]);
        for cut in 0..good.len() {
            assert!(parse_dots(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            parse_dots(b"LCST\0\0\0\0"),
            Err(ParseError::BadMagic { .. })
        ));
        let mut padded = good.clone();
        padded.push(0);
        assert_eq!(parse_dots(&padded), Err(ParseError::TrailingBytes(1)));
        assert!(matches!(
            parse_dots(&dots_file(&[(9001, 0)])),
            Err(ParseError::OutOfRange { .. })
        ));
        // A huge announced count fails on length, without allocating.
        let mut huge = b"LDOT".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse_dots(&huge),
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
        let dots = parse_dots(LAND_DOTS_BIN).expect("land-dots.bin");
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
}
