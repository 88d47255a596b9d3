//! The WebGL2 layer (wasm32 only): compiles the shaders, keeps the static
//! geometry in buffers, and each frame copies the ready-made arrays from
//! [`FrameData`] into instance buffers and draws. No scene logic lives here.

use std::fmt;

use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    HtmlCanvasElement, WebGl2RenderingContext as Gl, WebGlBuffer, WebGlProgram, WebGlShader,
    WebGlUniformLocation, WebGlVertexArrayObject,
};

use crate::frame::{FrameData, RING_FLOATS, TRAIL_FLOATS};
use crate::land;
use crate::mesh::{self, STAR_FLOATS};
use crate::shaders;

/// Segments per arc trail ribbon.
const TRAIL_SEGMENTS: usize = 40;
const STAR_COUNT: usize = 320;
/// Land dot and coastline colours (premultiplied in the shader).
const DOT_RGBA: [f32; 4] = [0.62, 0.74, 0.92, 0.62];
const COAST_RGBA: [f32; 4] = [0.45, 0.62, 0.88, 0.30];

#[derive(Debug)]
pub enum GlError {
    /// No WebGL2 context (unsupported, blocklisted, or lost at creation).
    NoContext(String),
    Compile {
        program: &'static str,
        log: String,
    },
    Link {
        program: &'static str,
        log: String,
    },
    /// The context refused to create an object (usually: context lost).
    Create(&'static str),
    /// The land data compiled into the module did not parse.
    Data(land::ParseError),
}

impl fmt::Display for GlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlError::NoContext(why) => write!(f, "WebGL2 is not available: {why}"),
            GlError::Compile { program, log } => {
                write!(f, "shader {program} failed to compile: {log}")
            }
            GlError::Link { program, log } => {
                write!(f, "shader program {program} failed to link: {log}")
            }
            GlError::Create(what) => write!(f, "could not create WebGL {what}"),
            GlError::Data(e) => write!(f, "embedded land data: {e}"),
        }
    }
}

impl std::error::Error for GlError {}

struct Program {
    program: WebGlProgram,
    uniforms: Vec<(&'static str, WebGlUniformLocation)>,
}

impl Program {
    fn new(
        gl: &Gl,
        name: &'static str,
        vs: &str,
        fs: &str,
        uniforms: &[&'static str],
    ) -> Result<Program, GlError> {
        let vs = compile(gl, name, Gl::VERTEX_SHADER, vs)?;
        let fs = compile(gl, name, Gl::FRAGMENT_SHADER, fs)?;
        let program = gl.create_program().ok_or(GlError::Create("program"))?;
        gl.attach_shader(&program, &vs);
        gl.attach_shader(&program, &fs);
        gl.link_program(&program);
        gl.delete_shader(Some(&vs));
        gl.delete_shader(Some(&fs));
        if !gl
            .get_program_parameter(&program, Gl::LINK_STATUS)
            .as_bool()
            .unwrap_or(false)
        {
            let log = gl.get_program_info_log(&program).unwrap_or_default();
            gl.delete_program(Some(&program));
            return Err(GlError::Link { program: name, log });
        }
        // A uniform the compiler optimized away has no location; skipping
        // it is harmless.
        let uniforms = uniforms
            .iter()
            .filter_map(|u| gl.get_uniform_location(&program, u).map(|loc| (*u, loc)))
            .collect();
        Ok(Program { program, uniforms })
    }

    fn loc(&self, name: &str) -> Option<&WebGlUniformLocation> {
        self.uniforms
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, l)| l)
    }
}

fn compile(gl: &Gl, program: &'static str, kind: u32, src: &str) -> Result<WebGlShader, GlError> {
    let shader = gl.create_shader(kind).ok_or(GlError::Create("shader"))?;
    gl.shader_source(&shader, src);
    gl.compile_shader(&shader);
    if gl
        .get_shader_parameter(&shader, Gl::COMPILE_STATUS)
        .as_bool()
        .unwrap_or(false)
    {
        Ok(shader)
    } else {
        let stage = if kind == Gl::VERTEX_SHADER {
            "vertex"
        } else {
            "fragment"
        };
        let log = format!(
            "{stage}: {}",
            gl.get_shader_info_log(&shader).unwrap_or_default()
        );
        gl.delete_shader(Some(&shader));
        Err(GlError::Compile { program, log })
    }
}

/// f32s as little-endian bytes, reusing `out` (a safe stand-in for a
/// typed-array view of wasm memory).
fn f32_bytes<'a>(values: &[f32], out: &'a mut Vec<u8>) -> &'a [u8] {
    out.clear();
    out.reserve(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn static_buffer(gl: &Gl, target: u32, bytes: &[u8]) -> Result<WebGlBuffer, GlError> {
    let buffer = gl.create_buffer().ok_or(GlError::Create("buffer"))?;
    gl.bind_buffer(target, Some(&buffer));
    gl.buffer_data_with_u8_array(target, bytes, Gl::STATIC_DRAW);
    Ok(buffer)
}

/// Points a float attribute at the bound ARRAY_BUFFER.
fn attrib(
    gl: &Gl,
    location: u32,
    size: i32,
    stride_floats: usize,
    offset_floats: usize,
    divisor: u32,
) {
    gl.enable_vertex_attrib_array(location);
    gl.vertex_attrib_pointer_with_i32(
        location,
        size,
        Gl::FLOAT,
        false,
        (stride_floats * 4) as i32,
        (offset_floats * 4) as i32,
    );
    gl.vertex_attrib_divisor(location, divisor);
}

fn vao(gl: &Gl) -> Result<WebGlVertexArrayObject, GlError> {
    let vao = gl
        .create_vertex_array()
        .ok_or(GlError::Create("vertex array"))?;
    gl.bind_vertex_array(Some(&vao));
    Ok(vao)
}

/// Binds the arc instance layout ([`TRAIL_FLOATS`]) at locations 2..=6.
fn arc_instance_attribs(gl: &Gl) {
    attrib(gl, 2, 3, TRAIL_FLOATS, 0, 1);
    attrib(gl, 3, 3, TRAIL_FLOATS, 3, 1);
    attrib(gl, 4, 4, TRAIL_FLOATS, 6, 1);
    attrib(gl, 5, 3, TRAIL_FLOATS, 10, 1);
    attrib(gl, 6, 3, TRAIL_FLOATS, 13, 1);
}

pub struct Renderer {
    gl: Gl,
    background: Program,
    stars: Program,
    globe: Program,
    dots: Program,
    coast: Program,
    glow: Program,
    trails: Program,
    heads: Program,
    rings: Program,
    empty_vao: WebGlVertexArrayObject,
    stars_vao: WebGlVertexArrayObject,
    globe_vao: WebGlVertexArrayObject,
    globe_indices: i32,
    dots_vao: WebGlVertexArrayObject,
    dot_count: i32,
    coast_vao: WebGlVertexArrayObject,
    coast_vertices: i32,
    trail_vao: WebGlVertexArrayObject,
    head_vao: WebGlVertexArrayObject,
    arc_instances: WebGlBuffer,
    ring_vao: WebGlVertexArrayObject,
    ring_instances: WebGlBuffer,
    scratch: Vec<u8>,
}

impl Renderer {
    pub fn new(canvas: &HtmlCanvasElement) -> Result<Renderer, GlError> {
        let options = js_sys::Object::new();
        for (key, value) in [
            ("alpha", false),
            ("antialias", true),
            ("depth", true),
            ("premultipliedAlpha", true),
            ("preserveDrawingBuffer", false),
        ] {
            // Setting a property on a fresh plain object cannot fail.
            let _ = js_sys::Reflect::set(
                &options,
                &JsValue::from_str(key),
                &JsValue::from_bool(value),
            );
        }
        let gl: Gl = canvas
            .get_context_with_context_options("webgl2", &options)
            .map_err(|e| {
                GlError::NoContext(e.as_string().unwrap_or_else(|| "getContext threw".into()))
            })?
            .ok_or_else(|| GlError::NoContext("this browser or device has no WebGL2".into()))?
            .dyn_into::<Gl>()
            .map_err(|_| GlError::NoContext("unexpected context type".into()))?;

        let mvp = "u_mvp";
        let background = Program::new(
            &gl,
            "background",
            shaders::BACKGROUND_VS,
            shaders::BACKGROUND_FS,
            &["u_center", "u_radius"],
        )?;
        let stars = Program::new(
            &gl,
            "stars",
            shaders::STARS_VS,
            shaders::STARS_FS,
            &["u_dpr"],
        )?;
        let globe = Program::new(
            &gl,
            "globe",
            shaders::GLOBE_VS,
            shaders::GLOBE_FS,
            &[mvp, "u_model", "u_distance"],
        )?;
        let land_uniforms = [mvp, "u_eye", "u_size", "u_color"];
        let dots = Program::new(
            &gl,
            "dots",
            shaders::LAND_VS,
            shaders::DOTS_FS,
            &land_uniforms,
        )?;
        let coast = Program::new(
            &gl,
            "coast",
            shaders::LAND_VS,
            shaders::COAST_FS,
            &land_uniforms,
        )?;
        let glow = Program::new(
            &gl,
            "glow",
            shaders::GLOW_VS,
            shaders::GLOW_FS,
            &["u_view_proj", "u_extent", "u_rsil"],
        )?;
        let arc_uniforms = [mvp, "u_viewport", "u_width", "u_eye"];
        let trails = Program::new(
            &gl,
            "trails",
            &shaders::trail_vs(),
            shaders::TRAIL_FS,
            &arc_uniforms,
        )?;
        let heads = Program::new(
            &gl,
            "heads",
            &shaders::head_vs(),
            shaders::HEAD_FS,
            &arc_uniforms,
        )?;
        let rings = Program::new(
            &gl,
            "rings",
            shaders::RING_VS,
            shaders::RING_FS,
            &[mvp, "u_eye"],
        )?;

        let mut scratch = Vec::new();
        let empty_vao = vao(&gl)?;

        let stars_vao = vao(&gl)?;
        static_buffer(
            &gl,
            Gl::ARRAY_BUFFER,
            f32_bytes(&mesh::stars(STAR_COUNT), &mut scratch),
        )?;
        attrib(&gl, 0, 4, STAR_FLOATS, 0, 0);

        let sphere = mesh::sphere(mesh::SPHERE_BANDS, mesh::SPHERE_SEGMENTS);
        let globe_vao = vao(&gl)?;
        static_buffer(
            &gl,
            Gl::ARRAY_BUFFER,
            f32_bytes(&sphere.positions, &mut scratch),
        )?;
        attrib(&gl, 0, 3, 3, 0, 0);
        let index_bytes: Vec<u8> = sphere
            .indices
            .iter()
            .flat_map(|i| i.to_le_bytes())
            .collect();
        static_buffer(&gl, Gl::ELEMENT_ARRAY_BUFFER, &index_bytes)?;

        let dots_data = land::parse_dots(land::LAND_DOTS_BIN).map_err(GlError::Data)?;
        let dots_vao = vao(&gl)?;
        static_buffer(
            &gl,
            Gl::ARRAY_BUFFER,
            f32_bytes(&land::dot_vertices(&dots_data), &mut scratch),
        )?;
        attrib(&gl, 0, 3, 3, 0, 0);

        let coast_data = land::parse_coastlines(land::COASTLINES_BIN).map_err(GlError::Data)?;
        let coast_floats = land::coastline_segments(&coast_data);
        let coast_vao = vao(&gl)?;
        static_buffer(
            &gl,
            Gl::ARRAY_BUFFER,
            f32_bytes(&coast_floats, &mut scratch),
        )?;
        attrib(&gl, 0, 3, 3, 0, 0);

        // Trail template: (s, side) pairs along the ribbon, a triangle strip.
        let template: Vec<f32> = (0..=TRAIL_SEGMENTS)
            .flat_map(|i| {
                let s = i as f32 / TRAIL_SEGMENTS as f32;
                [s, -1.0, s, 1.0]
            })
            .collect();
        let arc_instances = gl.create_buffer().ok_or(GlError::Create("buffer"))?;
        let trail_vao = vao(&gl)?;
        static_buffer(&gl, Gl::ARRAY_BUFFER, f32_bytes(&template, &mut scratch))?;
        attrib(&gl, 0, 1, 2, 0, 0);
        attrib(&gl, 1, 1, 2, 1, 0);
        gl.bind_buffer(Gl::ARRAY_BUFFER, Some(&arc_instances));
        arc_instance_attribs(&gl);
        let head_vao = vao(&gl)?;
        gl.bind_buffer(Gl::ARRAY_BUFFER, Some(&arc_instances));
        arc_instance_attribs(&gl);

        let ring_instances = gl.create_buffer().ok_or(GlError::Create("buffer"))?;
        let ring_vao = vao(&gl)?;
        gl.bind_buffer(Gl::ARRAY_BUFFER, Some(&ring_instances));
        attrib(&gl, 2, 3, RING_FLOATS, 0, 1);
        attrib(&gl, 3, 3, RING_FLOATS, 3, 1);
        attrib(&gl, 4, 2, RING_FLOATS, 6, 1);
        gl.bind_vertex_array(None);

        Ok(Renderer {
            globe_indices: sphere.indices.len() as i32,
            dot_count: dots_data.len() as i32,
            coast_vertices: (coast_floats.len() / 3) as i32,
            gl,
            background,
            stars,
            globe,
            dots,
            coast,
            glow,
            trails,
            heads,
            rings,
            empty_vao,
            stars_vao,
            globe_vao,
            dots_vao,
            coast_vao,
            trail_vao,
            head_vao,
            arc_instances,
            ring_vao,
            ring_instances,
            scratch,
        })
    }

    pub fn is_lost(&self) -> bool {
        self.gl.is_context_lost()
    }

    pub fn draw(&mut self, f: &FrameData) {
        let gl = &self.gl;
        if gl.is_context_lost() {
            return;
        }
        let [w, h] = f.viewport_px;
        gl.viewport(0, 0, w as i32, h as i32);
        gl.depth_mask(true);
        gl.clear(Gl::DEPTH_BUFFER_BIT);
        gl.disable(Gl::DEPTH_TEST);
        gl.disable(Gl::BLEND);
        gl.disable(Gl::CULL_FACE);

        // Space.
        gl.use_program(Some(&self.background.program));
        let p = &self.background;
        gl.uniform2f(
            p.loc("u_center"),
            f.globe_center_ndc[0],
            f.globe_center_ndc[1],
        );
        gl.uniform2f(
            p.loc("u_radius"),
            f.globe_radius_ndc[0],
            f.globe_radius_ndc[1],
        );
        gl.bind_vertex_array(Some(&self.empty_vao));
        gl.draw_arrays(Gl::TRIANGLES, 0, 3);

        gl.enable(Gl::BLEND);
        gl.blend_func(Gl::ONE, Gl::ONE);
        gl.use_program(Some(&self.stars.program));
        gl.uniform1f(self.stars.loc("u_dpr"), f.dpr);
        gl.bind_vertex_array(Some(&self.stars_vao));
        gl.draw_arrays(Gl::POINTS, 0, STAR_COUNT as i32);

        // The ocean sphere, the only depth writer.
        gl.disable(Gl::BLEND);
        gl.enable(Gl::DEPTH_TEST);
        gl.depth_func(Gl::LEQUAL);
        gl.enable(Gl::CULL_FACE);
        gl.cull_face(Gl::BACK);
        let p = &self.globe;
        gl.use_program(Some(&p.program));
        gl.uniform_matrix4fv_with_f32_array(p.loc("u_mvp"), false, &f.mvp);
        gl.uniform_matrix4fv_with_f32_array(p.loc("u_model"), false, &f.model);
        gl.uniform1f(p.loc("u_distance"), f.distance);
        gl.bind_vertex_array(Some(&self.globe_vao));
        gl.draw_elements_with_i32(Gl::TRIANGLES, self.globe_indices, Gl::UNSIGNED_SHORT, 0);
        gl.disable(Gl::CULL_FACE);

        // Land: coastlines then dots, blended over the ocean.
        gl.depth_mask(false);
        gl.enable(Gl::BLEND);
        gl.blend_func(Gl::ONE, Gl::ONE_MINUS_SRC_ALPHA);
        for (p, vao, mode, count, rgba) in [
            (
                &self.coast,
                &self.coast_vao,
                Gl::LINES,
                self.coast_vertices,
                COAST_RGBA,
            ),
            (
                &self.dots,
                &self.dots_vao,
                Gl::POINTS,
                self.dot_count,
                DOT_RGBA,
            ),
        ] {
            gl.use_program(Some(&p.program));
            gl.uniform_matrix4fv_with_f32_array(p.loc("u_mvp"), false, &f.mvp);
            gl.uniform3fv_with_f32_array(p.loc("u_eye"), &f.eye_model);
            gl.uniform1f(p.loc("u_size"), f.dot_size_px);
            gl.uniform4f(p.loc("u_color"), rgba[0], rgba[1], rgba[2], rgba[3]);
            gl.bind_vertex_array(Some(vao));
            gl.draw_arrays(mode, 0, count);
        }

        // Atmosphere, over everything on the globe.
        gl.disable(Gl::DEPTH_TEST);
        gl.blend_func(Gl::ONE, Gl::ONE);
        let p = &self.glow;
        let d = f.distance.max(1.01);
        let rsil = d / (d * d - 1.0).sqrt();
        gl.use_program(Some(&p.program));
        gl.uniform_matrix4fv_with_f32_array(p.loc("u_view_proj"), false, &f.view_proj);
        gl.uniform1f(p.loc("u_rsil"), rsil);
        gl.uniform1f(p.loc("u_extent"), rsil * 1.6);
        gl.bind_vertex_array(Some(&self.empty_vao));
        gl.draw_arrays(Gl::TRIANGLE_STRIP, 0, 4);

        // Rings, trails and heads: additive, hidden behind the globe.
        gl.enable(Gl::DEPTH_TEST);
        let rings = f.ring_count() as i32;
        if rings > 0 {
            let p = &self.rings;
            gl.use_program(Some(&p.program));
            gl.uniform_matrix4fv_with_f32_array(p.loc("u_mvp"), false, &f.mvp);
            gl.uniform3fv_with_f32_array(p.loc("u_eye"), &f.eye_model);
            gl.bind_buffer(Gl::ARRAY_BUFFER, Some(&self.ring_instances));
            gl.buffer_data_with_u8_array(
                Gl::ARRAY_BUFFER,
                f32_bytes(&f.rings, &mut self.scratch),
                Gl::STREAM_DRAW,
            );
            gl.bind_vertex_array(Some(&self.ring_vao));
            gl.draw_arrays_instanced(Gl::TRIANGLE_STRIP, 0, 4, rings);
        }
        let arcs = f.trail_count() as i32;
        if arcs > 0 {
            gl.bind_buffer(Gl::ARRAY_BUFFER, Some(&self.arc_instances));
            gl.buffer_data_with_u8_array(
                Gl::ARRAY_BUFFER,
                f32_bytes(&f.trails, &mut self.scratch),
                Gl::STREAM_DRAW,
            );
            for (p, vao, vertices) in [
                (
                    &self.trails,
                    &self.trail_vao,
                    (TRAIL_SEGMENTS as i32 + 1) * 2,
                ),
                (&self.heads, &self.head_vao, 4),
            ] {
                gl.use_program(Some(&p.program));
                gl.uniform_matrix4fv_with_f32_array(p.loc("u_mvp"), false, &f.mvp);
                gl.uniform2f(p.loc("u_viewport"), w, h);
                gl.uniform1f(p.loc("u_width"), f.line_width_px);
                gl.uniform3fv_with_f32_array(p.loc("u_eye"), &f.eye_model);
                gl.bind_vertex_array(Some(vao));
                gl.draw_arrays_instanced(Gl::TRIANGLE_STRIP, 0, vertices, arcs);
            }
        }
        gl.bind_vertex_array(None);
        gl.depth_mask(true);
    }
}
