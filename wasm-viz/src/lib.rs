//! The live sales globe.
//!
//! Everything that decides what is on screen is plain Rust, tested
//! natively: [`geo`] (great-circle arcs), [`camera`] (matrices, layout,
//! spin and drag), [`mesh`] and [`land`] (static geometry), [`arcs`]
//! (arcs in flight, pacing and caps), [`counters`] (the headline numbers),
//! [`moments`] (first sales and milestones: marks and announcements),
//! [`board`] (the panels' lists, as JSON for the page), [`frame`] (the
//! arrays a frame uploads) and [`scene`], which ties them together. On wasm32 only, `gl` turns frame data into WebGL2 draw calls
//! and `Globe` is the JavaScript API.
//!
//! Invariant: this crate never touches the network. The page fetches
//! snapshots and hands the bytes to [`Globe::ingest`] (wasm) /
//! [`scene::Scene::ingest`], which decode them with `livemap_wire::decode`.

pub mod arcs;
pub mod attention;
pub mod bench;
pub mod board;
pub mod camera;
pub mod counters;
pub mod flat;
pub mod frame;
pub mod geo;
pub mod land;
pub mod mesh;
pub mod moments;
pub mod quality;
pub mod scene;
pub mod shaders;
pub mod sun;

#[cfg(target_arch = "wasm32")]
mod gl;
#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(target_arch = "wasm32")]
pub use web::Globe;

#[cfg(test)]
mod tests {
    use crate::arcs::PALETTE;

    /// The page's channel legend repeats the arc colours; keep them equal.
    #[test]
    fn legend_colours_match_the_arc_palette() {
        let css = include_str!("../../web/style.css").to_ascii_lowercase();
        for (channel, hex) in PALETTE {
            let var = format!("--ch-{}: #{hex:06x};", channel.as_str().replace('_', "-"));
            assert!(css.contains(&var), "web/style.css lacks `{var}`");
        }
    }
}
