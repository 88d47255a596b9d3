//! The flat map for screens without WebGL2: land and arcs on an
//! equirectangular projection, as plain numbers the page draws on a 2D
//! canvas. Map coordinates run from (0, 0) at 180°W 90°N to (1, 1) at
//! 180°E 90°S.

use crate::arcs::ArcField;
use crate::geo::{unit_to_lat_lon, Vec3};
use crate::land::Point;

/// Points per drawn arc: enough for a smooth curve on a small map.
const ARC_POINTS: usize = 16;

pub fn project(lat: f64, lon: f64) -> (f64, f64) {
    ((lon + 180.0) / 360.0, (90.0 - lat) / 180.0)
}

fn project_unit(v: Vec3) -> (f64, f64) {
    let (lat, lon) = unit_to_lat_lon(v);
    project(lat, lon)
}

/// Land dots as x, y pairs.
pub fn land(points: &[Point]) -> Vec<f32> {
    points
        .iter()
        .flat_map(|p| {
            let (x, y) = project(p.lat, p.lon);
            [x as f32, y as f32]
        })
        .collect()
}

/// The drawn part (tail to head) of every arc in flight at `now_ms`, along
/// the ground, as polylines: `[n, r, g, b, alpha, x0, y0, .., x(n-1),
/// y(n-1)]` one after another. A line that crosses the map's edge (the
/// antimeridian) is split in two rather than drawn across the map.
pub fn arcs(field: &ArcField, now_ms: f64, out: &mut Vec<f32>) {
    out.clear();
    for a in field.active() {
        let (head, tail) = a.head_tail(now_ms);
        if head - tail < 1e-4 {
            continue;
        }
        let alpha = (0.35 + 0.65 * a.head_alpha(now_ms)) as f32 * a.weight.min(1.0);
        let mut start = out.len();
        let mut prev: Option<(f64, f64)> = None;
        for i in 0..ARC_POINTS {
            let t = tail + (head - tail) * i as f64 / (ARC_POINTS - 1) as f64;
            let (x, y) = project_unit(a.arc.surface(t));
            if prev.is_some_and(|(px, _)| (x - px).abs() > 0.5) {
                finish(out, start);
                start = out.len();
            }
            if out.len() == start {
                out.extend_from_slice(&[0.0, a.color[0], a.color[1], a.color[2], alpha]);
            }
            out.extend_from_slice(&[x as f32, y as f32]);
            out[start] += 1.0;
            prev = Some((x, y));
        }
        finish(out, start);
    }
}

/// Drops a polyline of fewer than two points (nothing to draw).
fn finish(out: &mut Vec<f32>, start: usize) {
    if out.len() > start && out[start] < 2.0 {
        out.truncate(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arcs::tests::order;
    use livemap_wire::Channel;

    fn lines(out: &[f32]) -> Vec<Vec<(f32, f32)>> {
        let mut lines = Vec::new();
        let mut i = 0;
        while i < out.len() {
            let n = out[i] as usize;
            let pts = &out[i + 5..i + 5 + 2 * n];
            lines.push(pts.chunks_exact(2).map(|p| (p[0], p[1])).collect());
            i += 5 + 2 * n;
        }
        lines
    }

    fn field_with(from: (f32, f32), to: (f32, f32)) -> ArcField {
        let mut field = ArcField::new();
        field.schedule(&[order(from, to, Channel::OnlineStore)], 0.0, 200.0);
        field.update(500.0);
        field
    }

    #[test]
    fn corners_and_centre_of_the_map() {
        assert_eq!(project(90.0, -180.0), (0.0, 0.0));
        assert_eq!(project(-90.0, 180.0), (1.0, 1.0));
        assert_eq!(project(0.0, 0.0), (0.5, 0.5));
        let dots = land(&[Point {
            lat: 45.0,
            lon: 90.0,
        }]);
        assert_eq!(dots, vec![0.75, 0.25]);
    }

    #[test]
    fn an_arc_is_one_line_between_its_ends() {
        // Toronto to Austin, half way through its flight.
        let field = field_with((43.65, -79.38), (30.27, -97.74));
        let mut out = Vec::new();
        arcs(&field, 1_500.0, &mut out);
        let lines = lines(&out);
        assert_eq!(lines.len(), 1);
        let (toronto, austin) = (project(43.65, -79.38), project(30.27, -97.74));
        for &(x, y) in &lines[0] {
            assert!(
                (austin.0 as f32 - 0.01..toronto.0 as f32 + 0.01).contains(&x),
                "{x}"
            );
            assert!(
                (toronto.1 as f32 - 0.01..austin.1 as f32 + 0.01).contains(&y),
                "{y}"
            );
        }
        assert!(out[1..4].iter().all(|c| (0.0..=1.0).contains(c)));
    }

    #[test]
    fn an_arc_across_the_pacific_is_split_at_the_edge() {
        // Tokyo to Vancouver crosses 180°.
        let field = field_with((35.68, 139.69), (49.28, -123.12));
        let live = field.active()[0];
        let mut out = Vec::new();
        let mut splits = 0;
        for step in 0..=26 {
            let now = live.born_ms + live.travel_ms * f64::from(step) * 0.05;
            arcs(&field, now, &mut out);
            let lines = lines(&out);
            for line in &lines {
                assert!(line.len() >= 2);
                assert!(line.windows(2).all(|w| (w[1].0 - w[0].0).abs() < 0.5));
            }
            splits += usize::from(lines.len() == 2);
        }
        assert!(splits > 3, "the trail spans the edge for a while: {splits}");
    }
}
