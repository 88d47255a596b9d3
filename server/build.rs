//! Embeds the page (`web/`) and the built wasm (`target/web-dist/pkg/`, made
//! by `scripts/build-wasm.sh`) into the binary, so that one file is all a
//! kiosk's server needs.
//!
//! When the wasm has not been built, the server still builds (tests and
//! clippy do not need the globe) and the page says the renderer is missing.
//! `LIVEMAP_WEB_DIST` points at another build output if needed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let root = manifest.join("..");
    let web = root.join("web");
    let dist = std::env::var("LIVEMAP_WEB_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/web-dist"));
    println!("cargo:rerun-if-env-changed=LIVEMAP_WEB_DIST");
    println!("cargo:rerun-if-changed={}", web.display());
    println!("cargo:rerun-if-changed={}", dist.display());

    let mut files = Vec::new();
    collect(&web, &web, &mut files);
    let pkg = dist.join("pkg");
    collect(&dist, &dist, &mut files);
    let wasm = pkg.join("livemap_viz_bg.wasm").is_file();
    if !wasm {
        println!(
            "cargo:warning=the globe is not built ({} missing): run scripts/build-wasm.sh before building the server",
            pkg.display()
        );
    }

    let mut out = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (route, path) in &files {
        let _ = writeln!(
            out,
            "    Asset {{ path: {route:?}, mime: {:?}, bytes: include_bytes!({:?}) }},",
            mime(path),
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let _ = writeln!(out, "pub const WASM_EMBEDDED: bool = {wasm};");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    if let Err(e) = std::fs::write(out_dir.join("assets.rs"), out) {
        panic!("cannot write assets.rs: {e}");
    }
}

fn collect(base: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(base, &path, files);
        } else if let Ok(rel) = path.strip_prefix(base) {
            let route = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
            let abs = path.canonicalize().unwrap_or(path);
            files.push((route, abs));
        }
    }
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
