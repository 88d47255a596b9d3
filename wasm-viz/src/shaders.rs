//! GLSL ES 3.00 sources. Attribute locations are fixed with `layout`, and
//! the instance layouts match `frame.rs` (`TRAIL_FLOATS`, `RING_FLOATS`).
//! All colour outputs are premultiplied: additive passes blend ONE, ONE.

/// Full-screen triangle: deep space with a faint halo behind the globe,
/// dithered so the gradient does not band on large screens.
pub const BACKGROUND_VS: &str = r#"#version 300 es
out vec2 v_ndc;
void main() {
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2)) * 2.0 - 1.0;
  v_ndc = p;
  gl_Position = vec4(p, 0.0, 1.0);
}
"#;

pub const BACKGROUND_FS: &str = r#"#version 300 es
precision highp float;
in vec2 v_ndc;
uniform vec2 u_center;
uniform vec2 u_radius;
out vec4 o_color;
float hash(vec2 p) {
  return fract(sin(dot(p, vec2(12.9898, 78.233))) * 43758.5453);
}
void main() {
  float r = length((v_ndc - u_center) / u_radius);
  vec3 deep = vec3(0.006, 0.010, 0.024);
  vec3 halo = vec3(0.020, 0.046, 0.105);
  float k = exp(-max(r - 1.0, 0.0) * 1.35);
  vec3 c = mix(deep, halo, k);
  c += (hash(gl_FragCoord.xy) - 0.5) / 255.0;
  o_color = vec4(c, 1.0);
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
  gl_Position = vec4(a_star.xy, 0.0, 1.0);
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
/// limb (Fresnel) so the globe reads as a ball on a dark screen.
pub const GLOBE_VS: &str = r#"#version 300 es
layout(location = 0) in vec3 a_pos;
uniform mat4 u_mvp;
uniform mat4 u_model;
out vec3 v_n;
void main() {
  v_n = mat3(u_model) * a_pos;
  gl_Position = u_mvp * vec4(a_pos, 1.0);
}
"#;

pub const GLOBE_FS: &str = r#"#version 300 es
precision highp float;
in vec3 v_n;
uniform float u_distance;
out vec4 o_color;
void main() {
  vec3 n = normalize(v_n);
  vec3 v = normalize(vec3(0.0, 0.0, u_distance) - n);
  vec3 l = normalize(vec3(-0.55, 0.6, 0.75));
  float ndl = max(dot(n, l), 0.0);
  float fres = pow(1.0 - max(dot(n, v), 0.0), 2.6);
  vec3 c = mix(vec3(0.012, 0.032, 0.075), vec3(0.040, 0.100, 0.210), ndl);
  c += vec3(0.08, 0.28, 0.62) * fres * 0.55;
  vec3 h = normalize(l + v);
  c += vec3(0.45, 0.65, 1.0) * pow(max(dot(n, h), 0.0), 60.0) * 0.06;
  o_color = vec4(c, 1.0);
}
"#;

/// Land dots (points) and coastlines (lines): the same vertex stage, fading
/// out towards the limb and dropped on the far side.
pub const LAND_VS: &str = r#"#version 300 es
layout(location = 0) in vec3 a_pos;
uniform mat4 u_mvp;
uniform vec3 u_eye;
uniform float u_size;
out float v_a;
void main() {
  vec3 n = normalize(a_pos);
  float facing = dot(n, normalize(u_eye - a_pos));
  v_a = smoothstep(0.06, 0.55, facing);
  gl_PointSize = u_size * mix(0.6, 1.0, v_a);
  gl_Position = facing > 0.0 ? u_mvp * vec4(a_pos * 1.001, 1.0) : vec4(2.0, 2.0, 2.0, 1.0);
}
"#;

pub const DOTS_FS: &str = r#"#version 300 es
precision mediump float;
in float v_a;
uniform vec4 u_color;
out vec4 o_color;
void main() {
  float r = length(gl_PointCoord - 0.5) * 2.0;
  float a = u_color.a * v_a * (1.0 - smoothstep(0.55, 1.0, r));
  o_color = vec4(u_color.rgb * a, a);
}
"#;

pub const COAST_FS: &str = r#"#version 300 es
precision mediump float;
in float v_a;
uniform vec4 u_color;
out vec4 o_color;
void main() {
  float a = u_color.a * v_a;
  o_color = vec4(u_color.rgb * a, a);
}
"#;

/// Atmosphere: a camera-facing quad through the globe centre. `u_rsil` is
/// the silhouette radius on that plane; inside it the rim brightens,
/// outside a halo falls off.
pub const GLOW_VS: &str = r#"#version 300 es
uniform mat4 u_view_proj;
uniform float u_extent;
out vec2 v_p;
void main() {
  vec2 c = vec2(float(gl_VertexID & 1), float((gl_VertexID >> 1) & 1)) * 2.0 - 1.0;
  v_p = c * u_extent;
  gl_Position = u_view_proj * vec4(v_p, 0.0, 1.0);
}
"#;

pub const GLOW_FS: &str = r#"#version 300 es
precision highp float;
in vec2 v_p;
uniform float u_rsil;
out vec4 o_color;
void main() {
  float r = length(v_p) / u_rsil;
  float g;
  if (r < 1.0) {
    g = pow(r, 18.0) * 0.38;
  } else {
    float x = r - 1.0;
    g = 0.38 * exp(-x * 18.0) + 0.12 * exp(-x * 4.5);
  }
  o_color = vec4(vec3(0.28, 0.58, 1.0) * g, 1.0);
}
"#;

/// Shared arc maths: the same formula as `geo::GreatArc::point`.
const ARC_COMMON: &str = r#"
layout(location = 2) in vec3 i_start;
layout(location = 3) in vec3 i_tangent;
layout(location = 4) in vec4 i_arc;    // angle, height, head_t, tail_t
layout(location = 5) in vec3 i_color;
layout(location = 6) in vec3 i_style;  // width, head_alpha, intensity
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
vec3 arc_velocity(float t) {
  float a = t * i_arc.x;
  vec3 dir = i_start * cos(a) + i_tangent * sin(a);
  vec3 ddir = (i_tangent * cos(a) - i_start * sin(a)) * i_arc.x;
  float h = 1.0 + i_arc.y * sin(PI * t);
  return ddir * h + dir * (i_arc.y * PI * cos(PI * t));
}
"#;

/// Arc trails: instanced ribbons, extruded in screen space so they keep
/// the same pixel width everywhere. Template: `a_s` 0 (tail) .. 1 (head),
/// `a_side` -1/+1, drawn as a triangle strip.
pub fn trail_vs() -> String {
    format!(
        "#version 300 es\nlayout(location = 0) in float a_s;\nlayout(location = 1) in float a_side;\n{ARC_COMMON}{}",
        r#"
out vec3 v_color;
out float v_edge;
void main() {
  float t = mix(i_arc.w, i_arc.z, a_s);
  vec3 p = arc_point(t);
  vec3 vel = arc_velocity(t);
  float vl = length(vel);
  vec3 q = p + (vl > 1e-6 ? vel / vl : vec3(0.0, 1.0, 0.0)) * 0.01;
  vec4 cp = u_mvp * vec4(p, 1.0);
  vec4 cq = u_mvp * vec4(q, 1.0);
  vec2 d = (cq.xy / cq.w - cp.xy / cp.w) * u_viewport;
  float dl = length(d);
  d = dl > 1e-6 ? d / dl : vec2(1.0, 0.0);
  float w = u_width * i_style.x * mix(0.3, 1.0, a_s);
  cp.xy += vec2(-d.y, d.x) * a_side * w / u_viewport * cp.w;
  gl_Position = cp;
  float a = pow(a_s, 1.3) * i_style.z * 1.25 * near_side(p);
  v_color = mix(i_color, vec3(1.0), 0.5 * pow(a_s, 10.0)) * a;
  v_edge = a_side;
}
"#
    )
}

pub const TRAIL_FS: &str = r#"#version 300 es
precision mediump float;
in vec3 v_color;
in float v_edge;
out vec4 o_color;
void main() {
  float e = 1.0 - smoothstep(0.35, 1.0, abs(v_edge));
  o_color = vec4(v_color * e, 1.0);
}
"#;

/// Arc heads: a glowing camera-facing sprite at the head, from the same
/// instance buffer as the trails.
pub fn head_vs() -> String {
    format!(
        "#version 300 es\n{ARC_COMMON}{}",
        r#"
out vec2 v_uv;
out vec3 v_color;
void main() {
  vec2 c = vec2(float(gl_VertexID & 1), float((gl_VertexID >> 1) & 1)) * 2.0 - 1.0;
  vec3 p = arc_point(i_arc.z);
  float vis = near_side(p);
  p += normalize(u_eye - p) * 0.01;
  vec4 cp = u_mvp * vec4(p, 1.0);
  float radius = u_width * i_style.x * 4.5;
  cp.xy += c * radius * 2.0 / u_viewport * cp.w;
  gl_Position = i_style.y > 0.0 ? cp : vec4(2.0, 2.0, 2.0, 1.0);
  v_uv = c;
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
  o_color = vec4(c * (1.0 - smoothstep(0.8, 1.0, sqrt(r2))), 1.0);
}
"#;

/// Landing rings: quads lying on the surface at the landing point,
/// expanding and fading, with a brief flash at the centre.
pub const RING_VS: &str = r#"#version 300 es
layout(location = 2) in vec3 i_center;
layout(location = 3) in vec3 i_color;
layout(location = 4) in vec2 i_ring;   // progress, size
uniform mat4 u_mvp;
uniform vec3 u_eye;
out vec2 v_uv;
out vec3 v_color;
out float v_progress;
void main() {
  vec2 c = vec2(float(gl_VertexID & 1), float((gl_VertexID >> 1) & 1)) * 2.0 - 1.0;
  vec3 n = normalize(i_center);
  vec3 up = abs(n.y) < 0.99 ? vec3(0.0, 1.0, 0.0) : vec3(1.0, 0.0, 0.0);
  vec3 t1 = normalize(cross(up, n));
  vec3 t2 = cross(n, t1);
  float e = 1.0 - pow(1.0 - i_ring.x, 3.0);
  float radius = i_ring.y * (0.2 + 0.8 * e);
  vec3 p = n * 1.002 + (t1 * c.x + t2 * c.y) * radius;
  float facing = dot(n, normalize(u_eye - n));
  gl_Position = facing > 0.0 ? u_mvp * vec4(p, 1.0) : vec4(2.0, 2.0, 2.0, 1.0);
  v_uv = c;
  v_progress = i_ring.x;
  v_color = i_color * smoothstep(0.0, 0.25, facing);
}
"#;

pub const RING_FS: &str = r#"#version 300 es
precision mediump float;
in vec2 v_uv;
in vec3 v_color;
in float v_progress;
out vec4 o_color;
void main() {
  float r = length(v_uv);
  float fade = pow(1.0 - v_progress, 1.6);
  float ring = smoothstep(0.62, 0.84, r) * (1.0 - smoothstep(0.84, 1.0, r)) * 1.3;
  float fill = 0.18 * (1.0 - smoothstep(0.0, 0.9, r));
  float flash = exp(-r * r * 30.0) * pow(1.0 - v_progress, 4.0) * 1.5;
  o_color = vec4(v_color * (ring + fill + flash) * fade, 1.0);
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
        let all = [
            BACKGROUND_VS,
            BACKGROUND_FS,
            STARS_VS,
            STARS_FS,
            GLOBE_VS,
            GLOBE_FS,
            LAND_VS,
            DOTS_FS,
            COAST_FS,
            GLOW_VS,
            GLOW_FS,
            &trail,
            TRAIL_FS,
            &head,
            HEAD_FS,
            RING_VS,
            RING_FS,
        ];
        for src in all {
            assert!(src.starts_with("#version 300 es\n"), "{src}");
            assert_eq!(src.matches("void main()").count(), 1);
        }
        for fs in [
            BACKGROUND_FS,
            STARS_FS,
            GLOBE_FS,
            DOTS_FS,
            COAST_FS,
            GLOW_FS,
            TRAIL_FS,
            HEAD_FS,
            RING_FS,
        ] {
            assert!(fs.contains("precision ") && fs.contains("out vec4 o_color;"));
        }
    }

    #[test]
    fn instance_attributes_cover_the_frame_layouts() {
        // vec3 + vec3 + vec4 + vec3 + vec3 = 16 floats.
        assert_eq!(3 + 3 + 4 + 3 + 3, TRAIL_FLOATS);
        assert!(ARC_COMMON.contains("location = 6) in vec3 i_style"));
        // vec3 + vec3 + vec2 = 8 floats.
        assert_eq!(3 + 3 + 2, RING_FLOATS);
        assert!(RING_VS.contains("location = 4) in vec2 i_ring"));
    }
}
