//! GLSL ES 3.00 sources. Attribute locations are fixed with `layout`.
//! All colour outputs are premultiplied: additive passes blend ONE, ONE.
//!
//! Arcs, heads and rings are not instanced: each is one plain draw whose
//! vertex shader finds its arc or ring from `gl_VertexID` and reads it
//! from a float texture (`u_data`, [`DATA_TEXELS_PER_ROW`] RGBA32F texels
//! a row) holding `frame.rs`'s arrays as they are (`TRAIL_FLOATS`,
//! `RING_FLOATS`). Software WebGL (SwiftShader, what a machine without a
//! GPU has) runs an instanced draw one instance at a time, at about 8 µs
//! each; 5,000 arcs would cost 40 ms a layer before drawing a pixel.

/// The sky: deep space with a faint halo behind the globe and the
/// atmosphere's outer glow, as `mesh::sky`'s rings around the globe's disc,
/// whose vertices carry the colour; the fragment shader only adds a dither
/// so the gradients do not band on large screens. On a software renderer
/// (SwiftShader) a pixel that reads a texture or works out exponentials
/// costs several times one that takes an interpolated colour, and the sky
/// is most of the screen; the disc itself is left out (the globe covers
/// it).
pub const SKY_VS: &str = r#"#version 300 es
layout(location = 0) in vec2 a_offset;
layout(location = 1) in vec3 a_color;
uniform vec2 u_center;
uniform vec2 u_radius;
out vec3 v_color;
void main() {
  v_color = a_color;
  gl_Position = vec4(u_center + u_radius * a_offset, 0.9999, 1.0);
}
"#;

/// The dither is a 2x4 ordered pattern from the pixel's position: one
/// multiply-add (interleaved gradient noise cost a software renderer 3 ms a
/// frame at 720p).
pub const SKY_FS: &str = r#"#version 300 es
precision mediump float;
in vec3 v_color;
out vec4 o_color;
void main() {
  float dither = fract(dot(gl_FragCoord.xy, vec2(0.5, 0.25))) - 0.5;
  o_color = vec4(v_color + dither / 255.0, 1.0);
}
"#;

/// Star points in screen space: x, y, size (CSS px), brightness.
pub const STARS_VS: &str = r#"#version 300 es
layout(location = 0) in vec4 a_star;
uniform float u_dpr;
out float v_b;
void main() {
  v_b = a_star.w;
  gl_PointSize = a_star.z * u_dpr;
  gl_Position = vec4(a_star.xy, 0.9999, 1.0);
}
"#;

pub const STARS_FS: &str = r#"#version 300 es
precision mediump float;
in float v_b;
out vec4 o_color;
void main() {
  float r = length(gl_PointCoord - 0.5) * 2.0;
  float a = v_b * (1.0 - smoothstep(0.3, 1.0, r));
  o_color = vec4(vec3(0.75, 0.82, 1.0) * a, 1.0);
}
"#;

/// The ocean sphere: navy, lit from the upper left, brighter towards the
/// limb (Fresnel) so the globe reads as a ball on a dark screen. Shaded per
/// vertex (the sphere's mesh is fine enough for these smooth terms),
/// so a pixel only takes its interpolated colour: the globe covers a
/// third of the screen, and per-pixel lighting cost a software renderer
/// about 10 ms a frame at 720p.
pub const GLOBE_VS: &str = r#"#version 300 es
layout(location = 0) in vec3 a_pos;
const float GLOBE_SCALE = 0.997;
uniform mat4 u_mvp;
uniform mat4 u_model;
uniform float u_distance;
uniform vec3 u_sun;
out vec3 v_color;
// 1 in daylight, 0 at night, with a soft terminator; day everywhere when
// the time is unknown (u_sun is zero).
float daylight(vec3 p) {
  return dot(u_sun, u_sun) < 0.5 ? 1.0 : smoothstep(-0.12, 0.18, dot(p, u_sun));
}
void main() {
  gl_Position = u_mvp * vec4(a_pos * GLOBE_SCALE, 1.0);
  vec3 n = mat3(u_model) * a_pos;
  vec3 v = normalize(vec3(0.0, 0.0, u_distance) - n);
  // The far side is culled: its vertices (past those of the triangles
  // across the limb, a band away) need no light.
  if (dot(n, v) < -0.2) {
    v_color = vec3(0.0);
    return;
  }
  vec3 l = normalize(vec3(-0.55, 0.6, 0.75));
  float ndl = max(dot(n, l), 0.0);
  float ndv = max(dot(n, v), 0.0);
  float edge = 1.0 - ndv;
  float fres = edge * edge * sqrt(edge);
  vec3 c = mix(vec3(0.012, 0.032, 0.075), vec3(0.040, 0.100, 0.210), ndl);
  c += vec3(0.08, 0.28, 0.62) * fres * 0.55;
  // The atmosphere's inner rim: r^18, r being the distance from the
  // disc's centre in silhouette radii (r^2 = 1 - ndv^2).
  float r2 = 1.0 - ndv * ndv;
  float r8 = r2 * r2 * r2 * r2;
  c += vec3(0.28, 0.58, 1.0) * (r8 * r8 * r2 * 0.38);
  vec3 h = normalize(l + v);
  float spec = max(dot(n, h), 0.0);
  spec *= spec; spec *= spec; spec *= spec; spec *= spec; spec *= spec; spec *= spec;
  c += vec3(0.45, 0.65, 1.0) * spec * 0.06;
  // Night falls on the ocean, but the rim light stays: the globe keeps
  // its shape.
  v_color = c * mix(0.55, 1.0, daylight(a_pos));
}
"#;

pub const GLOBE_FS: &str = r#"#version 300 es
precision mediump float;
in vec3 v_color;
out vec4 o_color;
void main() {
  o_color = vec4(v_color, 1.0);
}
"#;

/// Land dots (points) and coastlines (lines): the same vertex stage, fading
/// out towards the limb and dropped on the far side.
pub const LAND_VS: &str = r#"#version 300 es
layout(location = 0) in vec3 a_pos;
uniform mat4 u_mvp;
uniform vec3 u_eye;
uniform float u_size;
uniform vec3 u_sun;
out float v_a;
out float v_day;
void main() {
  vec3 n = normalize(a_pos);
  float facing = dot(n, normalize(u_eye - a_pos));
  v_a = smoothstep(0.06, 0.55, facing);
  v_day = dot(u_sun, u_sun) < 0.5 ? 1.0 : smoothstep(-0.12, 0.18, dot(n, u_sun));
  gl_PointSize = u_size * mix(0.6, 1.0, v_a);
  gl_Position = facing > 0.0 ? u_mvp * vec4(a_pos * 1.001, 1.0) : vec4(2.0, 2.0, 2.0, 1.0);
}
"#;

pub const DOTS_FS: &str = r#"#version 300 es
precision mediump float;
in float v_a;
in float v_day;
uniform vec4 u_color;
out vec4 o_color;
void main() {
  float r = length(gl_PointCoord - 0.5) * 2.0;
  float a = u_color.a * v_a * mix(0.4, 1.0, v_day) * (1.0 - smoothstep(0.55, 1.0, r));
  o_color = vec4(u_color.rgb * a, a);
}
"#;

pub const COAST_FS: &str = r#"#version 300 es
precision mediump float;
in float v_a;
in float v_day;
uniform vec4 u_color;
out vec4 o_color;
void main() {
  float a = u_color.a * v_a * mix(0.5, 1.0, v_day);
  o_color = vec4(u_color.rgb * a, a);
}
"#;

/// Shared arc maths: the same formula as `geo::GreatArc::point`.
/// Width of the data textures, in RGBA texels: 256 arcs (4 texels each)
/// or 512 rings (2 each) a row.
pub const DATA_TEXELS_PER_ROW: usize = 1024;
/// Segments per trail at full quality; the quality governor uses fewer.
pub const TRAIL_SEGMENTS: u32 = 16;

/// Vertices per trail of `segments`: a strip of `2 * (segments + 1)` plus
/// a repeated first and last vertex, so that one strip carries every
/// trail (the repeats make degenerate triangles between them). An indexed
/// strip restarted between trails has fewer vertices but cost SwiftShader
/// half as much again.
pub fn trail_vertices(segments: u32) -> u32 {
    2 * (segments + 1) + 2
}
/// Indices per head or ring: two triangles.
pub const QUAD_VERTICES: usize = 6;
/// Vertices per head or ring: heads and rings are drawn indexed
/// ([`quad_indices`]), so that each corner's vertex shader runs once, not
/// once per triangle (a third fewer runs; vertex work is most of their
/// cost on a software renderer).
pub const QUAD_CORNERS: usize = 4;

/// The index buffer for `quads` quads: corners 0, 1, 2 and 2, 1, 3.
pub fn quad_indices(quads: usize) -> Vec<u32> {
    (0..quads as u32)
        .flat_map(|q| [0, 1, 2, 2, 1, 3].map(|c| q * QUAD_CORNERS as u32 + c))
        .collect()
}

/// The corner (-1/+1, -1/+1) of a quad, `k` being 0..3.
const QUAD_CORNER: &str = r#"
vec2 quad_corner(int k) {
  return vec2(float(k & 1), float((k >> 1) & 1)) * 2.0 - 1.0;
}
"#;

const ARC_COMMON: &str = r#"
uniform highp sampler2D u_data;
vec3 i_start;
vec3 i_tangent;
vec4 i_arc;    // angle, height, head_t, tail_t
vec3 i_color;
vec3 i_style;  // width, head_alpha, intensity
// Arc `id`'s 16 floats: start.xyz, tangent.xyz, arc, rgb, style.
void load_arc(int id) {
  ivec2 at = ivec2((id % 256) * 4, id / 256);
  vec4 a = texelFetch(u_data, at, 0);
  vec4 b = texelFetch(u_data, at + ivec2(1, 0), 0);
  vec4 c = texelFetch(u_data, at + ivec2(2, 0), 0);
  vec4 d = texelFetch(u_data, at + ivec2(3, 0), 0);
  i_start = a.xyz;
  i_tangent = vec3(a.w, b.xy);
  i_arc = vec4(b.zw, c.xy);
  i_color = vec3(c.zw, d.x);
  i_style = d.yzw;
}
uniform mat4 u_mvp;
uniform vec2 u_viewport;
uniform float u_width;
uniform vec3 u_eye;
const float PI = 3.14159265;
// Dimmer on the far side of the globe, where only the raised part of an
// arc peeks out past the limb: it hints at activity without clutter.
float near_side(vec3 p) {
  return mix(0.25, 1.0, smoothstep(-0.3, 0.1, dot(normalize(p), normalize(u_eye))));
}
vec3 arc_point(float t) {
  float a = t * i_arc.x;
  vec3 dir = i_start * cos(a) + i_tangent * sin(a);
  return dir * (1.0 + i_arc.y * sin(PI * clamp(t, 0.0, 1.0)));
}
// The point at `t` and the direction the arc runs there, sharing one set
// of sines and cosines (vertex work is most of a trail's cost).
void arc_point_and_direction(float t, out vec3 p, out vec3 dir) {
  float a = t * i_arc.x;
  float ca = cos(a);
  float sa = sin(a);
  vec3 up = i_start * ca + i_tangent * sa;
  vec3 along = (i_tangent * ca - i_start * sa) * i_arc.x;
  float h = 1.0 + i_arc.y * sin(PI * t);
  p = up * h;
  dir = along * h + up * (i_arc.y * PI * cos(PI * t));
}
"#;

/// Across a trail, its light is a flat core and a linear ramp on each
/// side: the core is [`TRAIL_CORE`] of the trail's width, each ramp
/// [`TRAIL_SOFT`] of it but never less than [`MIN_SOFT_PX`] device pixel
/// along the pixel grid's nearer axis. That is a line of the core's width
/// seen through a box filter one pixel wide across the columns (or rows)
/// it crosses, so every column sums the same light wherever the line falls
/// between pixel centres. A trail thinner than a pixel is drawn a pixel or
/// more wide and dimmer, with the same light per length. (Drawn at its own
/// width, a ribbon under a pixel wide misses most pixel centres and breaks
/// into dots: that is what the cheaper quality tiers, at a pixel ratio of
/// 0.5 or 0.75, did.)
pub const TRAIL_CORE: f32 = 0.675;
pub const TRAIL_SOFT: f32 = 0.325;
pub const MIN_SOFT_PX: f32 = 1.0;
/// A tail is this share of the head's width.
pub const TAIL_WIDTH: f32 = 0.3;

/// The profile of a trail `width_px` wide running at `axis_cos` (the
/// cosine of its angle to the nearer of the pixel grid's axes, 0.71..1):
/// (core, ramp) in device pixels across the trail.
pub fn trail_profile(width_px: f32, axis_cos: f32) -> (f32, f32) {
    (
        TRAIL_CORE * width_px,
        (TRAIL_SOFT * width_px).max(MIN_SOFT_PX * axis_cos),
    )
}

/// The light at `d` device pixels from a trail's centre line, 0..1, as
/// [`TRAIL_FS`] works it out: the ribbon is drawn `(core + ramp) / 2` to
/// each side.
pub fn trail_light(d: f32, core: f32, ramp: f32) -> f32 {
    ((0.5 * (core + ramp) - d.abs()) / ramp).clamp(0.0, core.min(ramp) / ramp)
}

/// Arc trails: ribbons, extruded in screen space so they keep the same
/// pixel width everywhere; `a_s` runs 0 (tail) .. 1 (head), `a_side` is
/// -1/+1 across. All trails are one triangle strip.
pub fn trail_vs() -> String {
    format!(
        "#version 300 es\n{ARC_COMMON}{}",
        r#"
uniform int u_segments;
out vec3 v_color;
out float v_edge;
out vec2 v_light;
void main() {
  int vertices = 2 * (u_segments + 1) + 2;
  int id = gl_VertexID / vertices;
  int j = clamp(gl_VertexID - id * vertices - 1, 0, vertices - 3);
  load_arc(id);
  float a_s = float(j / 2) / float(u_segments);
  float a_side = (j % 2 == 0) ? -1.0 : 1.0;
  float t = mix(i_arc.w, i_arc.z, a_s);
  vec3 p;
  vec3 vel;
  arc_point_and_direction(t, p, vel);
  vec4 cp = u_mvp * vec4(p, 1.0);
  // The arc's direction on screen: the derivative of the projection.
  vec4 cv = u_mvp * vec4(vel, 0.0);
  vec2 d = (cv.xy * cp.w - cp.xy * cv.w) * u_viewport;
  float dl = length(d);
  d = dl > 1e-9 ? d / dl : vec2(1.0, 0.0);
  // The profile (see trail_profile in shaders.rs): core and ramp in
  // device pixels, the ribbon reaching (core + ramp) / 2 to each side.
  float w = u_width * i_style.x * mix(TAIL_WIDTH, 1.0, a_s);
  // The ramp is at least a pixel along the nearer axis: columns (or
  // rows) of pixels a pixel apart then each sum the same light.
  float axis_cos = max(abs(d.x), abs(d.y));
  vec2 profile = vec2(TRAIL_CORE * w, max(TRAIL_SOFT * w, MIN_SOFT_PX * axis_cos));
  float half_px = 0.5 * (profile.x + profile.y);
  cp.xy += vec2(-d.y, d.x) * a_side * (2.0 * half_px) / u_viewport * cp.w;
  gl_Position = cp;
  // Brighter towards the head (about s^1.3), white-hot at the very head
  // (s^10), without pow().
  float s2 = a_s * a_s;
  float s8 = s2 * s2 * s2 * s2;
  float a = a_s * sqrt(sqrt(a_s)) * i_style.z * 1.25 * near_side(p);
  v_color = mix(i_color, vec3(1.0), 0.5 * s8 * s2) * a;
  // In ramps from the centre line: the light is then
  // clamp(v_light.x - |v_edge|, 0, v_light.y) (trail_light).
  v_edge = a_side * half_px / profile.y;
  v_light = vec2(half_px / profile.y, min(profile.x, profile.y) / profile.y);
}
"#
    )
    .replace("TRAIL_CORE", &format!("{TRAIL_CORE:?}"))
    .replace("TRAIL_SOFT", &format!("{TRAIL_SOFT:?}"))
    .replace("MIN_SOFT_PX", &format!("{MIN_SOFT_PX:?}"))
    .replace("TAIL_WIDTH", &format!("{TAIL_WIDTH:?}"))
}

/// `v_edge`: distance from the centre line in ramps; `v_light`: the
/// edge's distance and the peak (see [`trail_light`]).
pub const TRAIL_FS: &str = r#"#version 300 es
precision mediump float;
in vec3 v_color;
in float v_edge;
in vec2 v_light;
out vec4 o_color;
void main() {
  o_color = vec4(v_color * clamp(v_light.x - abs(v_edge), 0.0, v_light.y), 1.0);
}
"#;

/// Arc heads: a glowing camera-facing sprite at the head, from the same
/// data as the trails.
pub fn head_vs() -> String {
    format!(
        "#version 300 es\n{ARC_COMMON}{QUAD_CORNER}{}",
        r#"
out vec2 v_uv;
out vec3 v_color;
void main() {
  int id = gl_VertexID / 4;
  load_arc(id);
  vec2 c = quad_corner(gl_VertexID - id * 4);
  vec3 p = arc_point(i_arc.z);
  // No head (it has landed), or one the globe hides: the line from the
  // eye passes inside the globe on the way. Left out before the rest of
  // the work (a head's four corners run side by side).
  vec3 to = p - u_eye;
  float k = clamp(-dot(u_eye, to) / dot(to, to), 0.0, 1.0);
  vec3 nearest = u_eye + to * k;
  if (i_style.y <= 0.0 || (k < 1.0 && dot(nearest, nearest) < 0.98)) {
    gl_Position = vec4(2.0, 2.0, 2.0, 1.0);
    v_uv = c;
    v_color = vec3(0.0);
    return;
  }
  float vis = near_side(p);
  p += normalize(u_eye - p) * 0.01;
  vec4 cp = u_mvp * vec4(p, 1.0);
  // The sprite's light is all but gone past 0.65 of the radius its
  // falloff is drawn for, so the quad stops there (a third of the area).
  float radius = u_width * i_style.x * 4.5 * 0.65;
  cp.xy += c * radius * 2.0 / u_viewport * cp.w;
  gl_Position = cp;
  v_uv = c * 0.65;
  v_color = i_color * i_style.y * i_style.z * vis;
}
"#
    )
}

pub const HEAD_FS: &str = r#"#version 300 es
precision mediump float;
in vec2 v_uv;
in vec3 v_color;
out vec4 o_color;
void main() {
  float r2 = dot(v_uv, v_uv);
  float core = exp(-r2 * 22.0);
  float halo = exp(-r2 * 5.0) * 0.45;
  vec3 c = mix(v_color, vec3(length(v_color) * 0.8), core * 0.7) * (core * 1.4 + halo);
  o_color = vec4(c * (1.0 - smoothstep(0.25, 0.4225, r2)), 1.0);
}
"#;

/// Landing rings: quads lying on the surface at the landing point,
/// expanding and fading, with a brief flash at the centre.
pub fn ring_vs() -> String {
    format!(
        "#version 300 es\n{QUAD_CORNER}{}",
        r#"
uniform highp sampler2D u_data;
uniform mat4 u_mvp;
uniform vec3 u_eye;
out vec2 v_uv;
out vec3 v_color;
out float v_flash;
void main() {
  // Ring `id`'s 8 floats: center.xyz, rgb, progress, size.
  int id = gl_VertexID / 4;
  ivec2 at = ivec2((id % 512) * 2, id / 512);
  vec4 a = texelFetch(u_data, at, 0);
  vec4 b = texelFetch(u_data, at + ivec2(1, 0), 0);
  vec3 i_center = a.xyz;
  vec3 i_color = vec3(a.w, b.xy);
  vec2 i_ring = b.zw;
  vec2 c = quad_corner(gl_VertexID - id * 4);
  vec3 n = normalize(i_center);
  float facing = dot(n, normalize(u_eye - n));
  // A ring on the far side is left out before the rest of the work (its
  // four corners run side by side on a software renderer).
  if (facing <= 0.0) {
    gl_Position = vec4(2.0, 2.0, 2.0, 1.0);
    v_uv = c;
    v_color = vec3(0.0);
    v_flash = 0.0;
    return;
  }
  vec3 up = abs(n.y) < 0.99 ? vec3(0.0, 1.0, 0.0) : vec3(1.0, 0.0, 0.0);
  vec3 t1 = normalize(cross(up, n));
  vec3 t2 = cross(n, t1);
  float e = 1.0 - (1.0 - i_ring.x) * (1.0 - i_ring.x) * (1.0 - i_ring.x);
  float radius = i_ring.y * (0.2 + 0.8 * e);
  vec3 p = n * 1.002 + (t1 * c.x + t2 * c.y) * radius;
  gl_Position = u_mvp * vec4(p, 1.0);
  v_uv = c;
  // What depends on the ring's age alone is worked out once per corner.
  float left = 1.0 - i_ring.x;
  v_color = i_color * smoothstep(0.0, 0.25, facing) * (left * sqrt(left));
  v_flash = left * left * left * left * 1.5;
}
"#
    )
}

/// Ring: a bright band at 0.84 of the radius over a faint fill, and a
/// flash at the centre while it is young; polynomials rather than
/// exponentials, as each ring covers hundreds of pixels.
pub const RING_FS: &str = r#"#version 300 es
precision mediump float;
in vec2 v_uv;
in vec3 v_color;
in float v_flash;
out vec4 o_color;
void main() {
  float r2 = dot(v_uv, v_uv);
  float r = sqrt(r2);
  float ring = smoothstep(0.62, 0.84, r) * (1.0 - smoothstep(0.84, 1.0, r)) * 1.3;
  float fill = 0.18 * (1.0 - smoothstep(0.0, 0.9, r));
  float q = max(1.0 - r2 * 10.0, 0.0);
  o_color = vec4(v_color * (ring + fill + q * q * q * v_flash), 1.0);
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{RING_FLOATS, TRAIL_FLOATS};

    #[test]
    fn every_shader_is_glsl_es_300_with_one_output() {
        let trail = trail_vs();
        let head = head_vs();
        let ring = ring_vs();
        let all = [
            SKY_VS, SKY_FS, STARS_VS, STARS_FS, GLOBE_VS, GLOBE_FS, LAND_VS, DOTS_FS, COAST_FS,
            &trail, TRAIL_FS, &head, HEAD_FS, &ring, RING_FS,
        ];
        for src in all {
            assert!(src.starts_with("#version 300 es\n"), "{src}");
            assert_eq!(src.matches("void main()").count(), 1);
        }
        for fs in [
            SKY_FS, STARS_FS, GLOBE_FS, DOTS_FS, COAST_FS, TRAIL_FS, HEAD_FS, RING_FS,
        ] {
            assert!(fs.contains("precision ") && fs.contains("out vec4 o_color;"));
        }
    }

    #[test]
    fn the_globe_is_drawn_at_the_mesh_scale() {
        let line = format!("const float GLOBE_SCALE = {:?};", crate::mesh::GLOBE_SCALE);
        assert!(GLOBE_VS.contains(&line));
    }

    #[test]
    fn data_texels_cover_the_frame_layouts() {
        // 4 texels of 4 floats an arc, 2 a ring, whole numbers a row.
        assert_eq!(TRAIL_FLOATS, 16);
        assert_eq!(RING_FLOATS, 8);
        assert_eq!(DATA_TEXELS_PER_ROW % 4, 0);
        let arcs_a_row = DATA_TEXELS_PER_ROW / (TRAIL_FLOATS / 4);
        let rings_a_row = DATA_TEXELS_PER_ROW / (RING_FLOATS / 4);
        assert!(ARC_COMMON.contains(&format!("(id % {arcs_a_row}) * 4, id / {arcs_a_row}")));
        assert!(ring_vs().contains(&format!("(id % {rings_a_row}) * 2, id / {rings_a_row}")));
        assert!(head_vs().contains(&format!("gl_VertexID / {QUAD_CORNERS}")));
        assert!(ring_vs().contains(&format!("gl_VertexID / {QUAD_CORNERS}")));
        let quads = quad_indices(3);
        assert_eq!(quads.len(), 3 * QUAD_VERTICES);
        assert_eq!(&quads[12..], &[8, 9, 10, 10, 9, 11]);
        assert!(trail_vs().contains("int vertices = 2 * (u_segments + 1) + 2;"));
        assert_eq!(trail_vertices(TRAIL_SEGMENTS), 2 * (TRAIL_SEGMENTS + 1) + 2);
    }
}
