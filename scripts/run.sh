#!/usr/bin/env bash
# Installs what is missing (only what the demo needs: no broker, no
# browser), builds the globe and the server, and runs the live map on its
# embedded demo source. Extra arguments go to `livemap`
# (try --help). Open the URL it prints.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
scripts/build-wasm.sh
cargo build --release -p livemap-server
exec target/release/livemap "$@"
