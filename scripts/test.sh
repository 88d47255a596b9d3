#!/usr/bin/env bash
# Installs what is missing and runs every check and test: formatting,
# lints, the generated-code check, unit and integration tests, the wasm
# build, and the end-to-end test in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s\n' "$*" >&2; }

step "setup"
scripts/setup.sh

step "generated FlatBuffers code is current"
tmp=$(mktemp -d)
flatc --rust --gen-all -o "$tmp" wire/schema/livemap.fbs
diff -u wire/src/livemap_generated.rs "$tmp/livemap_generated.rs"
rm -rf "$tmp"

step "cargo fmt"
cargo fmt --all -- --check

step "wasm build"
scripts/build-wasm.sh

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

step "page unit tests (node)"
node --test e2e/timeline.test.mjs

step "end-to-end in headless Chromium"
cargo build --release -p livemap-server
node e2e/e2e.mjs target/release/livemap
