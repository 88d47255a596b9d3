#!/usr/bin/env bash
# Builds the Rust-WASM globe (wasm-viz) and its JS glue into target/web-dist/pkg,
# where the server's build script picks it up and embeds it.
#
# Uses Debian's rustc-web toolchain with build-std (rustup cannot download
# the wasm32 target on these machines); its own target directory keeps native builds from invalidating
# the wasm standard library build.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/web-dist/pkg
mkdir -p "$out"
RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-19 \
CARGO_TARGET_DIR=target/wasm \
  /usr/bin/cargo build --profile wasm --target wasm32-unknown-unknown \
  -Z build-std=std,panic_abort -p livemap-viz
# The name section is a third of the module (13 KB gzipped): the page's
# download budget has no room for it.
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$out" \
  target/wasm/wasm32-unknown-unknown/wasm/livemap_viz.wasm
if command -v wasm-opt >/dev/null; then
  wasm-opt -Os --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals \
    -o "$out/livemap_viz_bg.wasm" "$out/livemap_viz_bg.wasm"
fi
ls -l "$out" >&2
