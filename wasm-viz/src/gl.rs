//! The WebGL2 layer (wasm32 only): compiles the shaders, keeps the static
//! geometry in buffers, and each frame copies the ready-made arrays from
//! [`FrameData`] into data textures and draws. No scene logic lives here.

use std::fmt;

use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    HtmlCanvasElement, WebGl2RenderingContext as Gl, WebGlBuffer, WebGlProgram, WebGlShader,
    WebGlTexture, WebGlUniformLocation, WebGlVertexArrayObject,
};

use crate::frame::{layer, FrameData};
use crate::land;
use crate::mesh::{self, STAR_FLOATS};
use crate::shaders;

/// Stars in the sky.
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
fn attrib(gl: &Gl, location: u32, size: i32, stride_floats: usize, offset_floats: usize) {
    gl.enable_vertex_attrib_array(location);
    gl.vertex_attrib_pointer_with_i32(
        location,
        size,
        Gl::FLOAT,
        false,
        (stride_floats * 4) as i32,
        (offset_floats * 4) as i32,
    );
}

fn vao(gl: &Gl) -> Result<WebGlVertexArrayObject, GlError> {
    let vao = gl
        .create_vertex_array()
        .ok_or(GlError::Create("vertex array"))?;
    gl.bind_vertex_array(Some(&vao));
    Ok(vao)
}

/// A float texture that carries one frame's per-arc or per-ring data to
/// the vertex shaders (see `shaders.rs` for why not instancing). It grows
/// by rows as needed and never shrinks, so a kiosk's memory stays flat.
struct DataTexture {
    texture: WebGlTexture,
    rows: i32,
}

impl DataTexture {
    fn new(gl: &Gl) -> Result<DataTexture, GlError> {
        let texture = gl.create_texture().ok_or(GlError::Create("texture"))?;
        gl.bind_texture(Gl::TEXTURE_2D, Some(&texture));
        // Float textures are not filterable; texelFetch ignores filters,
        // but a texture with mipmap filtering and no mipmaps is incomplete.
        for param in [Gl::TEXTURE_MIN_FILTER, Gl::TEXTURE_MAG_FILTER] {
            gl.tex_parameteri(Gl::TEXTURE_2D, param, Gl::NEAREST as i32);
        }
        Ok(DataTexture { texture, rows: 0 })
    }

    /// Uploads `floats` (padded with zeros to whole rows, in `scratch`)
    /// through the pixel-unpack buffer `staging` and binds the texture.
    fn upload(&mut self, gl: &Gl, staging: &WebGlBuffer, floats: &[f32], scratch: &mut Vec<u8>) {
        let row_floats = shaders::DATA_TEXELS_PER_ROW * 4;
        let rows = floats.len().div_ceil(row_floats).max(1);
        gl.bind_texture(Gl::TEXTURE_2D, Some(&self.texture));
        if rows as i32 > self.rows {
            self.rows = rows.next_power_of_two() as i32;
            let _ = gl.tex_image_2d_with_i32_and_i32_and_i32_and_format_and_type_and_opt_u8_array(
                Gl::TEXTURE_2D,
                0,
                Gl::RGBA32F as i32,
                shaders::DATA_TEXELS_PER_ROW as i32,
                self.rows,
                0,
                Gl::RGBA,
                Gl::FLOAT,
                None,
            );
        }
        f32_bytes(floats, scratch);
        scratch.resize(rows * row_floats * 4, 0);
        gl.bind_buffer(Gl::PIXEL_UNPACK_BUFFER, Some(staging));
        gl.buffer_data_with_u8_array(Gl::PIXEL_UNPACK_BUFFER, scratch, Gl::STREAM_DRAW);
        let _ = gl.tex_sub_image_2d_with_i32_and_i32_and_u32_and_type_and_f64(
            Gl::TEXTURE_2D,
            0,
            0,
            0,
            shaders::DATA_TEXELS_PER_ROW as i32,
            rows as i32,
            Gl::RGBA,
            Gl::FLOAT,
            0.0,
        );
        gl.bind_buffer(Gl::PIXEL_UNPACK_BUFFER, None);
    }
}

/// Land dots in a static buffer, drawn through a per-frame index buffer
/// that lists only those facing the viewer (`land::facing`): half the
/// vertex work.
struct DotSet {
    vao: WebGlVertexArrayObject,
    indices: WebGlBuffer,
    positions: Vec<[f32; 3]>,
    facing: Vec<u32>,
}

impl DotSet {
    fn new(gl: &Gl, dots: &[land::Point], scratch: &mut Vec<u8>) -> Result<DotSet, GlError> {
        let vao = vao(gl)?;
        let positions: Vec<[f32; 3]> = dots.iter().map(|p| p.unit().to_f32()).collect();
        let floats: Vec<f32> = positions.iter().flatten().copied().collect();
        static_buffer(gl, Gl::ARRAY_BUFFER, f32_bytes(&floats, scratch))?;
        attrib(gl, 0, 3, 3, 0);
        let indices = gl.create_buffer().ok_or(GlError::Create("buffer"))?;
        // The element buffer binding is part of the vertex array's state.
        gl.bind_buffer(Gl::ELEMENT_ARRAY_BUFFER, Some(&indices));
        Ok(DotSet {
            vao,
            indices,
            positions,
            facing: Vec::new(),
        })
    }

    /// Binds the set with the indices of the dots facing `eye`; returns
    /// how many there are.
    fn bind_facing(&mut self, gl: &Gl, eye: [f32; 3], scratch: &mut Vec<u8>) -> i32 {
        land::facing(&self.positions, eye, &mut self.facing);
        gl.bind_vertex_array(Some(&self.vao));
        gl.bind_buffer(Gl::ELEMENT_ARRAY_BUFFER, Some(&self.indices));
        scratch.clear();
        scratch.extend(self.facing.iter().flat_map(|i| i.to_le_bytes()));
        gl.buffer_data_with_u8_array(Gl::ELEMENT_ARRAY_BUFFER, scratch, Gl::STREAM_DRAW);
        self.facing.len() as i32
    }
}

pub struct Renderer {
    gl: Gl,
    sky: Program,
    sky_vao: WebGlVertexArrayObject,
    sky_indices: i32,
    stars: Program,
    globe: Program,
    dots_program: Program,
    coast: Program,
    trails: Program,
    heads: Program,
    rings: Program,
    /// Heads and rings: no attributes, and [`shaders::quad_indices`] for
    /// `quads` quads.
    quad_vao: WebGlVertexArrayObject,
    quad_indices: WebGlBuffer,
    quads: usize,
    /// Trails: no attributes, no indices.
    trail_vao: WebGlVertexArrayObject,
    stars_vao: WebGlVertexArrayObject,
    globe_vao: WebGlVertexArrayObject,
    globe_indices: i32,
    /// The land's dots, and the same at half the density for the cheaper
    /// quality tiers, made the first time one of them needs it (it takes
    /// a few milliseconds the first frame need not wait for).
    dots: DotSet,
    coarse_dots: Option<DotSet>,
    land_points: Vec<land::Point>,
    coast_vao: WebGlVertexArrayObject,
    coast_vertices: i32,
    arc_data: DataTexture,
    ring_data: DataTexture,
    staging: WebGlBuffer,
    scratch: Vec<u8>,
}

impl Renderer {
    /// `antialias`: multisampling, which costs a slow (software) renderer
    /// dearly; the shaders smooth their own edges without it.
    pub fn new(canvas: &HtmlCanvasElement, antialias: bool) -> Result<Renderer, GlError> {
        let options = js_sys::Object::new();
        for (key, value) in [
            ("alpha", false),
            ("antialias", antialias),
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
        let sky = Program::new(
            &gl,
            "sky",
            shaders::SKY_VS,
            shaders::SKY_FS,
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
            &[mvp, "u_model", "u_distance", "u_sun"],
        )?;
        let land_uniforms = [mvp, "u_eye", "u_size", "u_color", "u_sun"];
        let dots_program = Program::new(
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
        let arc_uniforms = [
            mvp,
            "u_viewport",
            "u_width",
            "u_eye",
            "u_data",
            "u_segments",
        ];
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
            &shaders::ring_vs(),
            shaders::RING_FS,
            &[mvp, "u_eye", "u_data"],
        )?;

        let mut scratch = Vec::new();
        let trail_vao = vao(&gl)?;
        let quad_vao = vao(&gl)?;
        let quad_indices = gl.create_buffer().ok_or(GlError::Create("buffer"))?;
        gl.bind_buffer(Gl::ELEMENT_ARRAY_BUFFER, Some(&quad_indices));

        let (sky_vertices, sky_indices) = mesh::sky();
        let sky_vao = vao(&gl)?;
        static_buffer(
            &gl,
            Gl::ARRAY_BUFFER,
            f32_bytes(&sky_vertices, &mut scratch),
        )?;
        attrib(&gl, 0, 2, mesh::SKY_FLOATS, 0);
        attrib(&gl, 1, 3, mesh::SKY_FLOATS, 2);
        let sky_index_bytes: Vec<u8> = sky_indices.iter().flat_map(|i| i.to_le_bytes()).collect();
        static_buffer(&gl, Gl::ELEMENT_ARRAY_BUFFER, &sky_index_bytes)?;

        let stars_vao = vao(&gl)?;
        static_buffer(
            &gl,
            Gl::ARRAY_BUFFER,
            f32_bytes(&mesh::stars(STAR_COUNT), &mut scratch),
        )?;
        attrib(&gl, 0, 4, STAR_FLOATS, 0);

        let sphere = mesh::sphere(mesh::SPHERE_BANDS, mesh::SPHERE_SEGMENTS);
        let globe_vao = vao(&gl)?;
        static_buffer(
            &gl,
            Gl::ARRAY_BUFFER,
            f32_bytes(&sphere.positions, &mut scratch),
        )?;
        attrib(&gl, 0, 3, 3, 0);
        let index_bytes: Vec<u8> = sphere
            .indices
            .iter()
            .flat_map(|i| i.to_le_bytes())
            .collect();
        static_buffer(&gl, Gl::ELEMENT_ARRAY_BUFFER, &index_bytes)?;

        let dots_data = land::parse_land(land::LAND_MASK_BIN).map_err(GlError::Data)?;
        let dot_set = DotSet::new(&gl, &dots_data, &mut scratch)?;

        let coast_data = land::parse_coastlines(land::COASTLINES_BIN).map_err(GlError::Data)?;
        let coast_floats = land::coastline_segments(&coast_data);
        let coast_vao = vao(&gl)?;
        static_buffer(
            &gl,
            Gl::ARRAY_BUFFER,
            f32_bytes(&coast_floats, &mut scratch),
        )?;
        attrib(&gl, 0, 3, 3, 0);

        let arc_data = DataTexture::new(&gl)?;
        let ring_data = DataTexture::new(&gl)?;
        let staging = gl.create_buffer().ok_or(GlError::Create("buffer"))?;
        gl.bind_vertex_array(None);

        Ok(Renderer {
            globe_indices: sphere.indices.len() as i32,
            coast_vertices: (coast_floats.len() / 3) as i32,
            gl,
            sky,
            sky_vao,
            sky_indices: sky_indices.len() as i32,
            stars,
            globe,
            dots_program,
            coast,
            trails,
            heads,
            rings,
            quad_vao,
            quad_indices,
            quads: 0,
            trail_vao,
            stars_vao,
            globe_vao,
            dots: dot_set,
            coarse_dots: None,
            land_points: dots_data,
            coast_vao,
            arc_data,
            ring_data,
            staging,
            scratch,
        })
    }

    /// Binds the quads' vertex array with indices for at least `quads`.
    fn bind_quads(&mut self, quads: usize) {
        let gl = &self.gl;
        gl.bind_vertex_array(Some(&self.quad_vao));
        if quads > self.quads {
            self.quads = quads.next_power_of_two();
            self.scratch.clear();
            for i in shaders::quad_indices(self.quads) {
                self.scratch.extend_from_slice(&i.to_le_bytes());
            }
            gl.bind_buffer(Gl::ELEMENT_ARRAY_BUFFER, Some(&self.quad_indices));
            gl.buffer_data_with_u8_array(Gl::ELEMENT_ARRAY_BUFFER, &self.scratch, Gl::STATIC_DRAW);
        }
    }

    pub fn is_lost(&self) -> bool {
        self.gl.is_context_lost()
    }

    /// The sky around the globe's disc.
    fn draw_sky(&self, f: &FrameData) {
        let gl = &self.gl;
        let p = &self.sky;
        gl.use_program(Some(&p.program));
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
        gl.bind_vertex_array(Some(&self.sky_vao));
        gl.draw_elements_with_i32(Gl::TRIANGLES, self.sky_indices, Gl::UNSIGNED_SHORT, 0);
    }

    pub fn draw(&mut self, f: &FrameData) {
        let gl = &self.gl;
        if gl.is_context_lost() {
            return;
        }
        let [w, h] = f.viewport_px;
        gl.viewport(0, 0, w as i32, h as i32);
        let on = |bit: u32| f.layers & bit != 0;
        gl.depth_mask(true);
        gl.clear_color(0.006, 0.010, 0.024, 1.0);
        // A clear is far cheaper than any pass: the sky and the globe then
        // cover every pixel once.
        gl.clear(Gl::DEPTH_BUFFER_BIT | Gl::COLOR_BUFFER_BIT);
        gl.disable(Gl::BLEND);

        // The sky first, around the globe's disc (no depth test: the globe
        // is drawn over the thin band they share).
        gl.disable(Gl::DEPTH_TEST);
        if on(layer::BACKGROUND) {
            self.draw_sky(f);
        }
        // The ocean sphere, the only depth writer.
        let gl = &self.gl;
        gl.enable(Gl::DEPTH_TEST);
        gl.depth_func(Gl::LEQUAL);
        if on(layer::GLOBE) {
            let p = &self.globe;
            gl.enable(Gl::CULL_FACE);
            gl.cull_face(Gl::BACK);
            gl.use_program(Some(&p.program));
            gl.uniform_matrix4fv_with_f32_array(p.loc("u_mvp"), false, &f.mvp);
            gl.uniform_matrix4fv_with_f32_array(p.loc("u_model"), false, &f.model);
            gl.uniform1f(p.loc("u_distance"), f.distance);
            gl.uniform3fv_with_f32_array(p.loc("u_sun"), &f.sun_model);
            gl.bind_vertex_array(Some(&self.globe_vao));
            gl.draw_elements_with_i32(Gl::TRIANGLES, self.globe_indices, Gl::UNSIGNED_SHORT, 0);
            gl.disable(Gl::CULL_FACE);
        }
        gl.depth_mask(false);

        // Stars, in space only: at the far plane, behind the globe.
        gl.enable(Gl::BLEND);
        gl.blend_func(Gl::ONE, Gl::ONE);
        if on(layer::STARS) {
            gl.use_program(Some(&self.stars.program));
            gl.uniform1f(self.stars.loc("u_dpr"), f.dpr);
            gl.bind_vertex_array(Some(&self.stars_vao));
            gl.draw_arrays(Gl::POINTS, 0, STAR_COUNT as i32);
        }

        // Land: coastlines then dots, blended over the ocean.
        gl.blend_func(Gl::ONE, Gl::ONE_MINUS_SRC_ALPHA);
        let land_uniforms = |p: &Program, rgba: [f32; 4]| {
            gl.use_program(Some(&p.program));
            gl.uniform_matrix4fv_with_f32_array(p.loc("u_mvp"), false, &f.mvp);
            gl.uniform3fv_with_f32_array(p.loc("u_eye"), &f.eye_model);
            gl.uniform1f(p.loc("u_size"), f.dot_size_px);
            gl.uniform3fv_with_f32_array(p.loc("u_sun"), &f.sun_model);
            gl.uniform4f(p.loc("u_color"), rgba[0], rgba[1], rgba[2], rgba[3]);
        };
        // The coarse tiers leave the coastlines out: the dots show the
        // land, and lines cost a software renderer (ANGLE draws them with
        // a shader of its own) about 2 ms a frame.
        if on(layer::COAST) && !f.coarse_dots {
            land_uniforms(&self.coast, COAST_RGBA);
            gl.bind_vertex_array(Some(&self.coast_vao));
            gl.draw_arrays(Gl::LINES, 0, self.coast_vertices);
        }
        if on(layer::DOTS) {
            land_uniforms(&self.dots_program, DOT_RGBA);
            if f.coarse_dots && self.coarse_dots.is_none() {
                let coarse = land::coarser(
                    &self.land_points,
                    land::LATTICE_POINTS,
                    land::LATTICE_POINTS / 2,
                );
                // Without it, the full set is drawn: dearer, not wrong.
                self.coarse_dots = DotSet::new(gl, &coarse, &mut self.scratch).ok();
            }
            let set = match (&mut self.coarse_dots, f.coarse_dots) {
                (Some(coarse), true) => coarse,
                _ => &mut self.dots,
            };
            let count = set.bind_facing(gl, f.eye_model, &mut self.scratch);
            gl.draw_elements_with_i32(Gl::POINTS, count, Gl::UNSIGNED_INT, 0);
        }

        // Rings, trails and heads: additive, hidden behind the globe.
        gl.blend_func(Gl::ONE, Gl::ONE);
        gl.enable(Gl::DEPTH_TEST);
        gl.active_texture(Gl::TEXTURE0);
        let rings = f.ring_count();
        let arcs = f.trail_count();
        self.bind_quads(rings.max(arcs));
        let gl = &self.gl;
        let quad_indices = |quads: usize| (quads * shaders::QUAD_VERTICES) as i32;
        if rings > 0 && on(layer::RINGS) {
            self.ring_data
                .upload(gl, &self.staging, &f.rings, &mut self.scratch);
            let p = &self.rings;
            gl.use_program(Some(&p.program));
            gl.uniform1i(p.loc("u_data"), 0);
            gl.uniform_matrix4fv_with_f32_array(p.loc("u_mvp"), false, &f.mvp);
            gl.uniform3fv_with_f32_array(p.loc("u_eye"), &f.eye_model);
            gl.draw_elements_with_i32(Gl::TRIANGLES, quad_indices(rings), Gl::UNSIGNED_INT, 0);
        }
        if arcs > 0 && (on(layer::TRAILS) || on(layer::HEADS)) {
            self.arc_data
                .upload(gl, &self.staging, &f.trails, &mut self.scratch);
            let arc_uniforms = |p: &Program| {
                gl.use_program(Some(&p.program));
                gl.uniform1i(p.loc("u_data"), 0);
                gl.uniform_matrix4fv_with_f32_array(p.loc("u_mvp"), false, &f.mvp);
                gl.uniform2f(p.loc("u_viewport"), w, h);
                gl.uniform1f(p.loc("u_width"), f.line_width_px);
                gl.uniform3fv_with_f32_array(p.loc("u_eye"), &f.eye_model);
                gl.uniform1i(p.loc("u_segments"), f.trail_segments as i32);
            };
            if on(layer::HEADS) {
                arc_uniforms(&self.heads);
                gl.draw_elements_with_i32(Gl::TRIANGLES, quad_indices(arcs), Gl::UNSIGNED_INT, 0);
            }
            if on(layer::TRAILS) {
                arc_uniforms(&self.trails);
                gl.bind_vertex_array(Some(&self.trail_vao));
                let vertices = shaders::trail_vertices(f.trail_segments) as i32;
                gl.draw_arrays(Gl::TRIANGLE_STRIP, 0, arcs as i32 * vertices);
            }
        }
        gl.bind_vertex_array(None);
        gl.depth_mask(true);
    }
}
